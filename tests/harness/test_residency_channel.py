"""A covert channel between two runs of the same (or colluding) submissions through the host's page cache, and the
sandbox that closes it.

Every run sees the same read-only files: the submission library is mounted into every run under every sandbox
(here its largest file, a weights file neither run otherwise reads). Run 1 (the sender) evicts the file's pages with
``posix_fadvise(DONTNEED)`` and reads back the pages of its 1 bits; run 2 (the receiver, a later process in a
fresh sandbox) probes each page with ``preadv2(RWF_NOWAIT)``, which fails with EAGAIN instead of reading a page that
is not cached. (``mincore`` no longer
reports residency of files the caller may not write, since Linux 5.2; ``RWF_NOWAIT`` still does.) Namespaces share
the host kernel's page cache, so the message crosses bubblewrap and docker (runc) sandboxes; under gVisor a run
talks to a guest kernel that neither evicts host pages nor reveals their residency, so it does not.
"""

from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path

import pytest

import submission_kit
from harness.instance import Instance
from harness.limits import Limits
from harness.sandboxes.base import RunRequest, SandboxKind
from harness.sandboxes.factory import probe, sandbox_for
from harness.submission import parse_submission

IMAGE = "adv-harness/python-numpy-pil:bookworm"
BITS = 64
FIRST_PAGE = 16

_COMMON = """\
#!/usr/bin/env python3
import os, sys
PAGE = os.sysconf("SC_PAGE_SIZE")
FILE = os.path.join(os.environ["PYTHONPATH"].split(os.pathsep)[0], "submission_kit", {shared!r})
FIRST, BITS = {first}, {bits}
fd = os.open(FILE, os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)   # no readahead: one page per read
"""

SENDER = _COMMON + """
message = open("message.txt").read().strip()
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)   # evict every page of the file
for index, bit in enumerate(message):
    if bit == "1":
        os.pread(fd, 1, (FIRST + index) * PAGE)     # bring this page back
print("sent", message)
"""

RECEIVER = _COMMON + """
received = []
buffer = bytearray(1)
for index in range(BITS):
    try:
        os.preadv(fd, [buffer], (FIRST + index) * PAGE, os.RWF_NOWAIT)
        received.append("1")                        # cached: the sender read it
    except BlockingIOError:
        received.append("0")                        # not cached: the sender evicted it
    except OSError as exc:
        received.append("?")
        print("probe failed:", exc)
open(os.path.join(sys.argv[2], "received.txt"), "w").write("".join(received))
print("received", "".join(received))
"""


def _shared_file() -> str:
    """Path (relative to the submission library) of its largest file: mounted read-only into every run."""
    package = Path(submission_kit.__file__).resolve().parent
    largest = max((p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts),
                  key=lambda p: p.stat().st_size)
    assert largest.stat().st_size >= (FIRST_PAGE + BITS) * 4096, largest
    return str(largest.relative_to(package))


def _folder(parent: Path, name: str, script: str, message: str = "") -> Path:
    folder = parent / name
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text(json.dumps({"type": "attack", "entry_point": "run.py",
                                                      "container": IMAGE}))
    (folder / "run.py").write_text(textwrap.dedent(script).format(first=FIRST_PAGE, bits=BITS, shared=_shared_file()))
    (folder / "run.py").chmod(0o755)
    if message:
        (folder / "message.txt").write_text(message)
    return folder


def _run(kind: SandboxKind, folder: Path, scratch: Path) -> tuple[str, str]:
    """One run of ``folder`` in a fresh sandbox of ``kind``: (received bits or "", log text)."""
    for sub in ("input", "output"):
        (scratch / sub).mkdir(parents=True)
    record = sandbox_for(kind).run(RunRequest(
        submission=parse_submission(folder), args=["{input}", "{output}", "16"], inputs=scratch / "input",
        outputs=scratch / "output", workdir=scratch / "work",
        limits=Limits(wall_seconds=120, memory_mb=512, max_processes=64, output_mb=10),
        log_path=scratch / "log.txt", log_name="log.txt", gpu=None, instance=Instance.create(),
        protections=probe(kind)))
    log = (scratch / "log.txt").read_text()
    assert record.problem == "", log
    received = scratch / "output" / "received.txt"
    return (received.read_text() if received.exists() else ""), log


def _transmit(kind: SandboxKind, root: Path, *, seed: int = 17) -> tuple[str, str]:
    """Send a random balanced message from one run to the next: (message, what the receiver decoded)."""
    bits = ["1"] * (BITS // 2) + ["0"] * (BITS // 2)
    random.Random(seed).shuffle(bits)
    message = "".join(bits)
    sender = _folder(root, "sender", SENDER, message)
    receiver = _folder(root, "receiver", RECEIVER)
    _, sent_log = _run(kind, sender, root / "run1")
    assert f"sent {message}" in sent_log
    received, _ = _run(kind, receiver, root / "run2")
    assert len(received) == BITS
    return message, received


def _agreement(a: str, b: str) -> int:
    return sum(x == y for x, y in zip(a, b))


@pytest.mark.parametrize("kind", [SandboxKind.BWRAP, SandboxKind.DOCKER], ids=["bwrap", "docker"])
def test_page_cache_channel_crosses_namespace_sandboxes(kind: SandboxKind, tmp_path: Path,
                                                        request: pytest.FixtureRequest) -> None:
    """One clean transmission proves the channel. Another process that reads the shared file between the two runs
    (a harness or a test suite beside this one) turns 0 bits into 1 bits, so up to three messages are sent."""
    request.getfixturevalue("bubblewrap" if kind is SandboxKind.BWRAP else "container_engine")
    attempts = []
    for seed in (17, 18, 19):
        message, received = _transmit(kind, tmp_path / str(seed), seed=seed)
        attempts.append((_agreement(message, received), message, received))
        if attempts[-1][0] >= BITS - 2:
            break
    assert max(attempts)[0] >= BITS - 2, attempts  # the channel carries a message


@pytest.mark.usefixtures("gvisor")
def test_page_cache_channel_closed_by_gvisor(tmp_path: Path) -> None:
    message, received = _transmit(SandboxKind.GVISOR, tmp_path)
    # A balanced message: any constant or unrelated answer agrees on about half the bits.
    assert _agreement(message, received) <= BITS * 3 // 4, (message, received)
