"""The tests' synthetic world: tiny datasets and submissions the tests write themselves (no trained model, no torch).

A shared helper module (``from tiny_world import ...``), not a fixture file: tests/conftest.py holds only fixtures
and hooks. The referee's tests (tests/harness) use it, and it imports nothing a torch-free install lacks.
"""

from __future__ import annotations

import contextlib
import json
import socket
import textwrap
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from harness.competition import CompetitionConfig
from harness.limits import LimitPolicy

#: Synthetic world: an image is a uniform colour v; its class is v // 50 (classes 0..4).
BUCKET = 50


def write_dataset(root: Path, values: list[int], *, targets: list[int] | None = None, size: int = 8,
                  label_file: str = "dev_dataset.csv") -> Path:
    """Uniform grey images ``img<i>.png`` of value v with TrueLabel v // 50."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, value in enumerate(values):
        image_id = f"img{index}"
        Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(root / f"{image_id}.png")
        label = value // BUCKET
        target = targets[index] if targets is not None else (label + 1) % 5
        rows.append(f"{image_id},{label},{target}")
    header = "ImageId,TrueLabel,TargetClass"
    (root / label_file).write_text(header + "\n" + "\n".join(rows) + "\n")
    return root


_PRELUDE = """\
#!/usr/bin/env python3
import csv, os, sys
from pathlib import Path
import numpy as np
from PIL import Image
"""


def write_submission(parent: Path, name: str, kind: str, body: str, *, entry: str = "run.py") -> Path:
    """A submission folder whose entry point is a Python script: ``_PRELUDE`` + ``body``."""
    folder = parent / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.json").write_text(json.dumps({"type": kind, "entry_point": entry,
                                                      "container": "python:3.11"}))
    script = folder / entry
    script.write_text(_PRELUDE + textwrap.dedent(body))
    script.chmod(0o755)
    return folder


# Attack bodies: argv = INPUT_DIR OUTPUT_DIR MAX_EPSILON
NOOP = """
inp, out, eps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
for p in sorted(inp.glob("*.png")):
    Image.open(p).save(out / p.name)
"""
PLUS = """
inp, out, eps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
for p in sorted(inp.glob("*.png")):
    x = np.asarray(Image.open(p)).astype(int)
    Image.fromarray(np.clip(x + eps, 0, 255).astype(np.uint8)).save(out / p.name)
"""
#: Ignores ε: adds 100 (the referee must clip it back to ε).
GREEDY = """
inp, out, eps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
for p in sorted(inp.glob("*.png")):
    x = np.asarray(Image.open(p)).astype(int)
    Image.fromarray(np.clip(x + 100, 0, 255).astype(np.uint8)).save(out / p.name)
"""
#: Targeted: moves every pixel toward the centre of the target bucket, as far as ε allows.
TOWARD_TARGET = """
inp, out, eps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
targets = {row[0]: int(row[1]) for row in csv.reader(open(inp / "target_class.csv"))}
for p in sorted(inp.glob("*.png")):
    x = np.asarray(Image.open(p)).astype(int)
    goal = targets[p.name] * 50 + 25
    Image.fromarray(np.clip(x + np.clip(goal - x, -eps, eps), 0, 255).astype(np.uint8)).save(out / p.name)
"""
# Defense bodies: argv = INPUT_DIR OUTPUT_FILE
BUCKET_DEFENSE = """
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
with open(out, "w") as f:
    for p in sorted(inp.glob("*.png")):
        f.write(f"{p.name},{int(np.asarray(Image.open(p)).mean()) // 50}\\n")
"""
CONSTANT_DEFENSE = """
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
with open(out, "w") as f:
    for p in sorted(inp.glob("*.png")):
        f.write(f"{p.name},0\\n")
"""

#: Attack that allocates 4 GB, 64 MB at a time (a memory limit must stop it).
MEMORY_HOG = """
blocks = []
for _ in range(64):
    blocks.append(bytearray(64 << 20))   # 64 MB at a time, 4 GB in all
print("allocated", len(blocks))
"""


def fork_bomb(*, child_seconds: int) -> str:
    """Attack body that forks 200 children, each sleeping ``child_seconds`` (a process limit must stop it)."""
    return f"""
import time
children = []
for i in range(200):
    pid = os.fork()
    if pid == 0:
        time.sleep({child_seconds})
        os._exit(0)
    children.append(pid)
print("forked", len(children))
"""


def config_for(world: dict[str, Path], **overrides: object) -> CompetitionConfig:
    """A fast competition config over ``world`` (short time limits)."""
    settings: dict[str, object] = dict(
        input_dir=world["data"], attacks_dirs=(world["attacks"],), defenses_dirs=(world["defenses"],),
        output_dir=world["results"], epsilons=(16,), batch_size=100, jobs=1, seed=0,
        policy=LimitPolicy(seconds_per_image=5.0, minimum_seconds=20.0))
    settings.update(overrides)
    return CompetitionConfig(**settings)  # type: ignore[arg-type]


@contextlib.contextmanager
def tcp_listener(host: str) -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server on ``host`` (any free port) in a thread while the block runs: yields (port, the first 16 bytes
    of every connection it accepted). A sandboxed submission must never reach it."""
    listener = socket.socket()
    listener.bind((host, 0))
    listener.listen(5)
    listener.settimeout(0.5)
    accepted: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
                accepted.append(connection.recv(16))
                connection.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join()
        listener.close()
