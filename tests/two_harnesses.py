"""Harnesses side by side on one machine: a gated attack the test holds and releases, each competition's own
leftovers, and running two competitions at once (threads) or a harness that is SIGKILLed mid-run (a child)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

from harness.cgroups import CGROUP_PREFIX
from harness.cleanup import owner_of
from harness.competition import CompetitionConfig, CompetitionResult, run_competition
from harness.instance import Instance
from harness.privilege import RUN_GID, RUN_UID, STAGING_PREFIX, staging_parent
from harness.sandboxes import docker as sandbox_docker
from harness.sandboxes.factory import probe
from harness.workspace import SCRATCH_PREFIX, scratch_folders, scratch_parent

#: Attack that writes ``gate.started`` (holding a nonce) to its output folder and waits for ``gate.open`` there,
#: then copies its input (a no-op attack).
GATED = """
import time
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
(out / "gate.started").write_text("{nonce}")
while not (out / "gate.open").exists():
    time.sleep(0.05)
(out / "gate.started").unlink()
(out / "gate.open").unlink()
for p in sorted(inp.glob("*.png")):
    Image.open(p).save(out / p.name)
"""

#: Seconds a test waits for a gated run to start before it fails (a generous bound, not a timing claim).
PATIENCE = 300.0


def gated_attack(nonce: str) -> str:
    return GATED.replace("{nonce}", nonce)


def new_nonce() -> str:
    return uuid.uuid4().hex


def waiting_gates(results: Path, nonce: str) -> dict[str, Path]:
    """Output folders of the gated runs with ``nonce`` now waiting, by the tag of the instance whose scratch
    folder holds them."""
    waiting = {}
    for started in scratch_parent(results).glob(f"{SCRATCH_PREFIX}*/*/output/gate.started"):
        try:
            if started.read_text() != nonce:
                continue
        except OSError:
            continue
        owner = owner_of(started.parents[2].name, SCRATCH_PREFIX)
        if owner is not None:
            waiting[owner.tag] = started.parent
    return waiting


def wait_for_gates(results: Path, nonce: str, count: int, *, running: Callable[[], bool]) -> dict[str, Path]:
    """Wait until ``count`` gated runs wait (see :func:`waiting_gates`); fails when ``running()`` turns false
    first or after :data:`PATIENCE` seconds."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        waiting = waiting_gates(results, nonce)
        if len(waiting) >= count:
            return waiting
        assert running(), "a competition ended before its gated run started"
        time.sleep(0.05)
    raise AssertionError(f"{count} gated run(s) did not start within {PATIENCE} s")


def open_gate(output: Path) -> None:
    (output / "gate.open").write_text("")


class Competition(threading.Thread):
    """``run_competition(config)`` in a thread; :attr:`result` or :attr:`error` once it ends."""

    def __init__(self, config: CompetitionConfig) -> None:
        super().__init__(daemon=True)
        self.config = config
        self.result: CompetitionResult | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = run_competition(self.config, echo=lambda _: None)
        except BaseException as exc:  # handed to the test
            self.error = exc

    def outcome(self) -> CompetitionResult:
        self.join(PATIENCE)
        assert not self.is_alive(), "the competition did not end"
        assert self.error is None, repr(self.error)
        assert self.result is not None
        return self.result


def things_of(instance: Instance, results: Path) -> list[str]:
    """What carries ``instance``'s identity on this machine now: containers of its competition, its scratch
    folder, its staging folders, its cgroup folders."""
    found = [f"container {name}" for name in sandbox_docker.leftover_containers(instance)]
    found += [str(p) for p in scratch_folders(results, instance)]
    parent = staging_parent(uid=RUN_UID, gid=RUN_GID)  # where a root harness stages
    found += [str(p) for p in parent.glob(f"{STAGING_PREFIX}{instance.tag}-*")]
    for root in set(probe_cgroups().values()):
        found += [str(p) for p in root.glob(f"{CGROUP_PREFIX}{instance.tag}-*")]
    return sorted(found)


def probe_cgroups() -> dict[str, Path]:
    from harness.sandboxes.base import SandboxKind
    return probe(SandboxKind.NONE).cgroup


#: A harness in a child process: run_competition(CompetitionConfig(**json)).
_CHILD = """
import json, sys
from pathlib import Path
from harness.competition import CompetitionConfig, run_competition
from harness.sandboxes.base import SandboxKind
from harness.limits import LimitPolicy
args = json.loads(sys.argv[1])
run_competition(CompetitionConfig(
    input_dir=Path(args["input_dir"]), attacks_dirs=(Path(args["attacks"]),), defenses_dirs=(Path(args["defenses"]),),
    output_dir=Path(args["output_dir"]), epsilons=(16,), batch_size=100, jobs=1,
    policy=LimitPolicy(seconds_per_image=5.0, minimum_seconds=300.0), sandbox=SandboxKind(args["sandbox"])),
    echo=lambda _: None)
"""


def kill_a_harness_mid_run(*, data: Path, attacks: Path, defenses: Path, results: Path, sandbox: str,
                           nonce: str) -> Instance:
    """Start a harness in a child process whose ``attacks`` hold :func:`gated_attack` with ``nonce``; SIGKILL it
    while that run waits. Returns the dead harness's instance."""
    argument = json.dumps({"input_dir": str(data), "attacks": str(attacks), "defenses": str(defenses),
                           "output_dir": str(results), "sandbox": sandbox})
    root = Path(__file__).resolve().parent.parent
    child = subprocess.Popen([sys.executable, "-c", _CHILD, argument], cwd=root,
                             env={**os.environ, "PYTHONPATH": str(root)}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        waiting = wait_for_gates(results, nonce, 1, running=lambda: child.poll() is None)
    finally:
        child.send_signal(signal.SIGKILL)
        _, errors = child.communicate()
    assert child.returncode == -signal.SIGKILL, errors.decode(errors="replace")
    (tag,) = waiting
    return Instance.parse(tag)
