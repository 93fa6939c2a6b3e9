"""Runner pieces: batching, defense packing, opaque names, device assignment, the process sandbox."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from harness.devices import DevicePool
from harness.instance import Instance
from harness.limits import Limits
from harness.planning import batches, opaque_name, pack_versions
from harness.process import run_process
from harness.sandboxes.base import RunRequest, SandboxKind
from harness.sandboxes.factory import probe, sandbox_for
from harness.submission import parse_submission
from tiny_world import write_submission


def test_batches_split_in_order() -> None:
    items = tuple(range(7))
    assert batches(items, 3) == [(0, 1, 2), (3, 4, 5), (6,)]  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1"):
        batches(items, 0)  # type: ignore[arg-type]


def test_pack_versions_never_puts_two_versions_of_one_image_together() -> None:
    # 4 originals × 3 versions each; one version is shared by two originals (identical pixels).
    originals = {f"{img}-{v}": {img} for img in "abcd" for v in range(3)}
    originals["shared"] = {"a", "b"}
    packed = pack_versions(sorted(originals), originals, size=100, seed=1)
    assert sorted(v for batch in packed for v in batch) == sorted(originals)
    for batch in packed:
        owners = [o for v in batch for o in originals[v]]
        assert len(owners) == len(set(owners))
    # 'a' has 4 versions (3 own + shared), so at least 4 batches are needed, and the packer finds 4.
    assert len(packed) == 4


def test_pack_versions_respects_size_and_seed() -> None:
    originals = {f"v{i}": {f"img{i}"} for i in range(10)}
    packed = pack_versions(sorted(originals), originals, size=3, seed=0)
    assert [len(b) for b in packed] == [3, 3, 3, 1]
    assert packed == pack_versions(sorted(originals), originals, size=3, seed=0)
    assert packed != pack_versions(sorted(originals), originals, size=3, seed=1)


def test_opaque_names_are_keyed() -> None:
    version = "ab" * 32
    one = opaque_name(version, secret=b"k1")
    assert one == opaque_name(version, secret=b"k1")
    assert one != opaque_name(version, secret=b"k2")
    assert version[:8] not in one and one.endswith(".png") and len(one) == 28


def test_device_pool_round_robin() -> None:
    pool = DevicePool(["0", "1"], jobs=4)
    taken = []
    with pool.acquire() as a, pool.acquire() as b, pool.acquire() as c, pool.acquire() as d:
        taken = [a.gpu, b.gpu, c.gpu, d.gpu]
    assert sorted(taken) == ["0", "0", "1", "1"]
    with DevicePool([], jobs=2).acquire() as none:
        assert none.gpu is None


def _gone(pid: int, *, patience: float = 30.0) -> bool:
    """Whether process ``pid`` is dead (absent or a zombie) within ``patience`` seconds: a killed process is gone
    at once; one that was not killed sleeps 300 s, so no machine load blurs the two."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "child_alive"
    script = tmp_path / "parent.sh"
    pid_file = tmp_path / "child.pid"
    script.write_text(f"#!/bin/bash\n(echo $BASHPID > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; sleep 300; "
                      f"touch {marker}) &\nwhile [ ! -e {pid_file} ]; do sleep 0.01; done\nsleep 300\n")
    script.chmod(0o755)
    start = time.monotonic()
    record = run_process([str(script)], cwd=tmp_path, env={"PATH": os.environ["PATH"]}, limits=Limits(5.0),
                         log_path=tmp_path / "log.txt", log_name="log.txt")
    assert time.monotonic() - start < 120  # far below the script's 300 s, far above any load
    assert record.timed_out and record.problem == "timed out after 5 s"
    assert _gone(int(pid_file.read_text())), "a child of the timed-out run survived"
    assert not marker.exists()


def test_children_do_not_outlive_a_clean_exit(tmp_path: Path) -> None:
    marker = tmp_path / "orphan_alive"
    script = tmp_path / "parent.sh"
    pid_file = tmp_path / "orphan.pid"
    script.write_text(f"#!/bin/bash\n(echo $BASHPID > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; sleep 300; "
                      f"touch {marker}) &\nwhile [ ! -e {pid_file} ]; do sleep 0.01; done\nexit 0\n")
    script.chmod(0o755)
    record = run_process([str(script)], cwd=tmp_path, env={"PATH": os.environ["PATH"]}, limits=Limits(120.0),
                         log_path=tmp_path / "log.txt", log_name="log.txt")
    assert record.exit_code == 0 and record.problem == ""
    assert _gone(int(pid_file.read_text())), "a child outlived its run's clean exit"
    assert not marker.exists()


def test_exit_codes_signals_and_unstartable_entries(tmp_path: Path) -> None:
    cases = {
        "exit4": ("#!/bin/bash\necho out; echo err >&2; exit 4\n", "exit code 4"),
        "selfkill": ("#!/bin/bash\nkill -SEGV $$\n", "killed by SIGSEGV"),
        "noshebang": ("echo hi\n", "entry point could not be started: Exec format error (add a #! line "
                                   "to the entry point)"),
    }
    for name, (text, problem) in cases.items():
        script = tmp_path / name
        script.write_text(text)
        script.chmod(0o755)
        record = run_process([str(script)], cwd=tmp_path, env={"PATH": os.environ["PATH"]},
                             limits=Limits(10.0), log_path=tmp_path / f"{name}.log", log_name=f"{name}.log")
        assert record.problem == problem, name
        assert problem in (tmp_path / f"{name}.log").read_text()
    assert "out\nerr\n" in (tmp_path / "exit4.log").read_text()


def test_run_submission_plain_uses_a_fresh_copy_and_private_home(tmp_path: Path) -> None:
    body = """
    Path("scribble.txt").write_text("changed")
    print("HOME=" + os.environ["HOME"])
    print("TMPDIR=" + os.environ["TMPDIR"])
    print("CWD=" + os.getcwd())
    print("ARGS=" + " ".join(sys.argv[1:]))
    """
    folder = write_submission(tmp_path / "subs", "writer", "attack", body)
    (folder / "run.py").chmod(0o644)  # not executable: the harness marks its copy executable
    submission = parse_submission(folder)
    assert submission.warnings
    work, inputs, outputs = tmp_path / "work", tmp_path / "in", tmp_path / "out"
    for folder_ in (work, inputs, outputs):
        folder_.mkdir()
    record = sandbox_for(SandboxKind.NONE).run(RunRequest(
        submission=submission, args=["{input}", "{output}", "16"], inputs=inputs, outputs=outputs,
        workdir=work, limits=Limits(20.0), log_path=tmp_path / "w.log", log_name="w.log",
        gpu=None, instance=Instance.create(), protections=probe(SandboxKind.NONE)))
    assert record.problem == ""
    log = (tmp_path / "w.log").read_text()
    assert f"HOME={work / 'home'}" in log and f"TMPDIR={work / 'tmp'}" in log
    assert f"CWD={work / 'submission'}" in log
    assert f"ARGS={inputs} {outputs} 16" in log
    assert not (folder / "scribble.txt").exists()


def test_thread_counts_follow_parallel_jobs(tmp_path: Path) -> None:
    from harness.sandboxes.staging import scrubbed_environment
    env = scrubbed_environment(home="/h", tmp="/t", gpu=None, threads=3)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "3"
    assert "CUDA_VISIBLE_DEVICES" not in env
    assert scrubbed_environment(home="/h", tmp="/t", gpu="1")["CUDA_VISIBLE_DEVICES"] == "1"
