"""The fault suite, continued: a hostile participant (issue 16).

Each test writes the tiny submission or file that got through before, and checks that the run finishes, records the
failure in one line, and leaves the harness and later runs unharmed. Tests that need bubblewrap skip where it
cannot run; tests of a non-root harness fork a child that drops to an unprivileged uid (skipped when not root).
"""

from __future__ import annotations

import csv
import ctypes
import hashlib
import json
import os
import random
import struct
import sys
import warnings
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from harness import cgroups
from harness.cleanup import remove_tree
from harness.competition import CompetitionError, run_competition
from harness.dataset import DatasetError, load_dataset
from harness.defense_output import Answer, parse_predictions
from harness.instance import Instance
from harness.limits import LimitPolicy, Limits
from harness.names import one_line
from harness.privilege import reachable
from harness.records import RunRecord
from harness.sandboxes import bwrap, factory
from harness.sandboxes.base import Protections, RunRequest, SandboxKind
from harness.sandboxes.factory import probe, sandbox_for
from harness.secret import SECRET_FILE
from harness.submission import discover, parse_submission
from machine import needs_bwrap, needs_root
from submission_kit import contract
from tiny_world import BUCKET_DEFENSE, NOOP, PLUS, TOWARD_TARGET, config_for, fork_bomb, write_dataset, write_submission


def _quiet(_: str) -> None:
    pass


def _leaderboard(results: Path) -> dict[str, dict[str, str]]:
    with open(results / "leaderboard.csv") as handle:
        return {row["name"]: row for row in csv.DictReader(handle)}


def _logs(result, results: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {r.name: (results / r.log).read_text(errors="replace") for r in result.runs}


_CLONE_NEWNS = 0x00020000
_MS_BIND, _MS_REC, _MS_PRIVATE = 4096, 16384, 1 << 18


def _mount(libc: ctypes.CDLL, source: bytes, target: bytes, fstype: bytes | None, flags: int,
           data: bytes | None = None) -> None:
    if libc.mount(source, target, fstype, ctypes.c_ulong(flags), data) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"mount {target.decode()}: {os.strerror(error)}")


def _python_folders() -> list[str]:
    """The folders a user's own Python needs: the installation, the venv, the interpreter's real folder."""
    executable = os.path.realpath(sys.executable)
    return sorted({os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, os.path.dirname(
        os.path.dirname(executable)))})


def _give_python_to(uid: int) -> None:
    """In the child's private mount namespace (root, before dropping to ``uid``): make the Python installation reachable
    by ``uid``, as a real user's own Python always is. Each topmost folder on the way that ``uid`` cannot
    traverse (``/root``, mode 700, holding a pyenv Python) is covered by an empty world-traversable tmpfs,
    and the installation's folders are bind-mounted back at their own paths: the user sees them and nothing
    else of that folder (no /root/.local, no other files of root)."""
    libc = ctypes.CDLL(None, use_errno=True)
    needed = _python_folders()
    covers = set()
    for folder in needed:
        parts = Path(folder).parts
        for depth in range(2, len(parts) + 1):
            ancestor = Path(*parts[:depth])
            if not reachable(ancestor, uid=uid, gid=uid):
                covers.add(str(ancestor))
                break
    handles = {folder: os.open(folder, os.O_PATH | os.O_DIRECTORY) for folder in needed
               if any(Path(folder).is_relative_to(c) for c in covers)}
    for cover in sorted(covers):
        _mount(libc, b"tmpfs", cover.encode(), b"tmpfs", 0, b"mode=0755")
    for folder, handle in handles.items():
        os.makedirs(folder, mode=0o755, exist_ok=True)
        _mount(libc, f"/proc/self/fd/{handle}".encode(), folder.encode(), None, _MS_BIND | _MS_REC)
        os.close(handle)


def _as_unprivileged(work: Callable[[], str], uid: int = 65534, *, own_python: bool = True,
                     hide: Path | None = None) -> str:
    """Run ``work`` in a forked child that became a fresh non-root harness of ``uid``; return its string result.

    The child drops every id to ``uid`` with HOME ``/nonexistent`` (uid 65534's) and a cleared sandbox probe
    cache (a new harness probes afresh; the folders a root harness made stay). With ``own_python`` the Python
    installation is made reachable first (:func:`_give_python_to`), as a real user's own Python is; without it
    the child sees the machine as it is (e.g. root's pyenv Python below a mode-700 /root). ``hide`` is covered
    by an empty mode-700 tmpfs of root's in the child's mount namespace (a folder that user cannot read)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(read_end)
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(_CLONE_NEWNS) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
            _mount(libc, b"none", b"/", None, _MS_REC | _MS_PRIVATE)
            if own_python:
                _give_python_to(uid)
            if hide is not None:
                _mount(libc, b"tmpfs", str(hide).encode(), b"tmpfs", 0, b"mode=0700")
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            os.environ["HOME"] = "/nonexistent"
            probe.cache_clear()
            text = "ok:" + work()
        except BaseException as exc:  # noqa: BLE001 - report anything, including RecursionError
            text = f"raised:{type(exc).__name__}: {exc}"
        os.write(write_end, text.encode()[:60000])
        os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


# -- 1. a run never has real uid 0 -----------------------------------------------------------------------------
ROOT_PROBE = """
import ctypes
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
outside = open("/proc/self/uid_map").read().split()
print("UID_MAP", outside[:3], "STATUS_UID", status["Uid"].split())
try:
    open("/etc/shadow").read(1)
    print("SHADOW READ")
except OSError as exc:
    print("shadow refused", type(exc).__name__)
for knob in ("/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches", "/proc/sys/kernel/pid_max"):
    try:
        with open(knob, "w") as handle:
            handle.write(open(knob).read() if "drop" not in knob else "1")
        print("SYSCTL WRITTEN", knob)
    except OSError as exc:
        print("sysctl refused", knob, type(exc).__name__)
libc = ctypes.CDLL(None, use_errno=True)
print("USERNS", "CREATED" if libc.unshare(0x10000000) == 0 else "refused")
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
for p in sorted(inp.glob("*.png")):
    Image.open(p).save(out / p.name)
"""


def _run_alone(tmp_path: Path, name: str, body: str, *, kind: str = "attack", limits: Limits | None = None,
               keep: Callable[[Path], object] | None = None) -> tuple[str, object]:
    """Run one submission once under bubblewrap, outside a competition; return its log and ``keep(outputs)``."""
    write_submission(tmp_path / "subs", name, kind, body)
    scratch = Path("/dev/shm") / f"hostile-test-{os.getpid()}-{name}"
    remove_tree(scratch)
    for folder in ("input", "output", "work"):
        (scratch / folder).mkdir(parents=True)
    Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(scratch / "input" / "img0.png")
    try:
        sandbox_for(SandboxKind.BWRAP).run(RunRequest(
            submission=parse_submission(tmp_path / "subs" / name), args=["{input}", "{output}", "16"],
            inputs=scratch / "input", outputs=scratch / "output", workdir=scratch / "work",
            limits=limits or Limits(wall_seconds=60), log_path=tmp_path / f"{name}.log",
            log_name=f"{name}.log", gpu=None, instance=Instance.create(), protections=probe(SandboxKind.BWRAP)))
        kept = keep(scratch / "output") if keep else None
    finally:
        remove_tree(scratch)
    return (tmp_path / f"{name}.log").read_text(errors="replace"), kept


@needs_bwrap
def test_sandbox_never_has_real_uid_0(tmp_path: Path) -> None:
    body = ROOT_PROBE + "\n(out / 'owner_probe').write_text('x')\n"
    log, owner = _run_alone(tmp_path, "rootcheck", body, keep=lambda out: (out / "owner_probe").stat().st_uid)
    assert owner != 0, log  # the file the run wrote belongs to its real (host) uid
    assert "SHADOW READ" not in log and "shadow refused" in log
    assert "SYSCTL WRITTEN" not in log and log.count("sysctl refused") == 3
    if bwrap.bwrap_disables_userns():  # bubblewrap >= 0.8; the manifest notes it otherwise
        assert "USERNS refused" in log
    assert "STATUS_UID ['65534'" in log


# -- 2. targets come from a secret -----------------------------------------------------------------------------
ENV_DUMP = """
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
print("ENV", sorted(os.environ.items()))
for p in sorted(inp.iterdir()):
    print("INPUT", p.name, p.read_bytes().hex()[:20000])
""" + TOWARD_TARGET.split("\n", 2)[2]


def test_drawn_targets_come_from_a_secret_that_submissions_never_see(tmp_path: Path) -> None:
    values = [10, 45, 90, 120, 180, 240, 15, 60, 110, 200]
    data = tmp_path / "data"
    data.mkdir()
    for index, value in enumerate(values):
        Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(data / f"img{index}.png")
    (data / "labels.csv").write_text("ImageId,TrueLabel\n" + "".join(
        f"img{i},{v // 50}\n" for i, v in enumerate(values)))
    attacks, defenses = tmp_path / "attacks", tmp_path / "defenses"
    write_submission(attacks, "snoop", "targeted_attack", ENV_DUMP)
    write_submission(defenses, "bucket", "defense", BUCKET_DEFENSE)
    world = {"data": data, "attacks": attacks, "defenses": defenses}
    targets = {}
    for run in ("a", "b"):
        results = tmp_path / f"results_{run}"
        result = run_competition(config_for({**world, "results": results}, num_classes=5), echo=_quiet)
        secret_text = (results / SECRET_FILE).read_text().strip()
        assert len(secret_text) == 64 and (results / SECRET_FILE).stat().st_mode & 0o077 == 0
        manifest_text = (results / "manifest.json").read_text()
        manifest = json.loads(manifest_text)
        assert manifest["secret_sha256"] == hashlib.sha256(bytes.fromhex(secret_text)).hexdigest()
        assert manifest["dataset"]["targets_from_secret"] is True
        assert secret_text not in manifest_text
        log = _logs(result, results)["snoop"]
        assert "ENV" in log and "INPUT target_class.csv" in log
        for piece in (secret_text, secret_text[:16], secret_text[-16:]):
            assert piece not in log
        targets[run] = [r.target_class for r in result.dataset.images]
        assert all(t != r.true_label for t, r in zip(targets[run], result.dataset.images))
        # A rerun on the same folder keeps its secret, and so its targets.
        again = run_competition(config_for({**world, "results": results}, num_classes=5), echo=_quiet)
        assert [r.target_class for r in again.dataset.images] == targets[run]
    # The public seed (the same in both runs) no longer decides the targets: the folder's secret does.
    assert targets["a"] != targets["b"]
    secret_a = bytes.fromhex((tmp_path / "results_a" / SECRET_FILE).read_text().strip())
    assert [r.target_class for r in load_dataset(data, num_classes=5, secret=secret_a).images] == targets["a"]


# -- 3. a two-run page-cache residency channel: tests/test_residency_channel.py -----------------------------------


# -- 4. cleanup cannot crash the harness ----------------------------------------------------------------------
DEEP_CHAIN = """
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
for p in sorted(inp.glob("*.png")):
    Image.open(p).save(out / p.name)
os.chdir(out)
for _ in range(3000):
    os.mkdir("d")
    os.chdir("d")
"""


def test_deep_folder_chain_in_an_output_is_removed_and_later_runs_work(world: dict[str, Path]) -> None:
    write_submission(world["attacks"], "deep", "attack", DEEP_CHAIN)
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    first = run_competition(config_for(world), echo=_quiet)
    board = _leaderboard(world["results"])
    assert board["deep"]["failed_images"] == "0" and board["plus"]["failed_images"] == "0"
    from harness.workspace import scratch_folders
    assert scratch_folders(world["results"], first.instance) == []
    forced = run_competition(config_for(world, force=True), echo=_quiet)
    assert forced.predictions == first.predictions


def test_remove_tree_survives_depth_and_permissions_of_a_non_root_harness(open_tmp: Path) -> None:
    tmp_path = open_tmp
    top = tmp_path / "out"
    top.mkdir()
    here = os.getcwd()
    try:
        os.chdir(top)
        for _ in range(5000):  # 10,000 characters of path: beyond PATH_MAX
            os.mkdir("d")
            os.chdir("d")
        Path("f").write_text("x")
        os.chmod(".", 0)
    finally:
        os.chdir(here)
    locked = top / "locked"
    locked.mkdir()
    (locked / "result.csv").write_text("a.png,1\n")
    (locked / "result.csv").chmod(0)
    locked.chmod(0)
    if os.geteuid() == 0:
        os.chmod(tmp_path, 0o755)
        os.system(f"chown -R 65534:65534 {tmp_path}")  # the harness's uid owns the scratch folder; too deep for os.walk
        outcome = _as_unprivileged(lambda: remove_tree(top))
    else:
        outcome = "ok:" + remove_tree(top)
    assert outcome == "ok:", outcome
    assert not top.exists()


@needs_root
def test_unreadable_outputs_are_failures_not_crashes_for_a_non_root_harness(open_tmp: Path) -> None:
    tmp_path = open_tmp
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.csv").write_text("a.png,1\n")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(out / "img0.png")
    for path in (out / "result.csv", out / "img0.png", out):
        os.chown(path, 65534, 65534)
        path.chmod(0)
    clean = np.zeros((8, 8, 3), np.uint8)

    def work() -> str:
        parsed = parse_predictions(out / "result.csv", expected={"a.png"})
        verdict = contract.referee(out / "img0.png", clean, 16)
        return f"{parsed.answers['a.png'].problem}|{verdict.problem}"

    outcome = _as_unprivileged(work)
    assert outcome == "ok:output file unreadable (Permission denied)|output unreadable (Permission denied)", outcome


def test_failed_cleanup_is_recorded_as_a_run_failure(world: dict[str, Path],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from harness import execution

    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    monkeypatch.setattr(execution, "remove_tree", lambda path: f"cleanup of {path} left 1 entry (x: Operation not "
                                                             "permitted)")
    result = run_competition(config_for(world), echo=_quiet)
    problems = {r.name: r.problem for r in result.runs}
    assert "left 1 entry" in problems["plus"] and "left 1 entry" in problems["bucket"]
    assert "1 run: cleanup of" in _leaderboard(world["results"])["plus"]["failures"]


# -- 5. identical submissions ---------------------------------------------------------------------------------
def test_identical_submissions_each_run_and_score_alike(world: dict[str, Path]) -> None:
    for name in ("plus_team_a", "plus_team_b"):
        write_submission(world["attacks"], name, "attack", PLUS)
    for name in ("bucket_team_a", "bucket_team_b"):
        write_submission(world["defenses"], name, "defense", BUCKET_DEFENSE)
    result = run_competition(config_for(world, jobs=2), echo=_quiet)
    board = _leaderboard(world["results"])
    assert not any(r.problem for r in result.runs)
    keep = ("raw", "normalized", "all_or_nothing", "clean_accuracy", "failed_runs", "failed_images", "failures")
    for a, b in (("plus_team_a", "plus_team_b"), ("bucket_team_a", "bucket_team_b")):
        assert {k: v for k, v in board[a].items() if k in keep} == {k: v for k, v in board[b].items() if k in keep}
    assert int(board["bucket_team_a"]["raw"]) > 0 and int(board["plus_team_a"]["raw"]) > 0


# -- 6. RAM-backed folders are bounded, / and /dev read-only -------------------------------------------------
RAM_HOG = """
import errno
for target in ("/tmp/fill", os.path.expanduser("~/fill"), "/dev/shm/fill", "/dev/fill", "/fill"):
    written = 0
    try:
        with open(target, "wb") as handle:
            for _ in range(200):
                handle.write(b"x" * (1 << 20))
                handle.flush()
                written += 1
    except OSError as exc:
        print("STOPPED", target, written, errno.errorcode.get(exc.errno, exc.errno))
    else:
        print("WROTE", target, written)
    try:
        os.unlink(target)
    except OSError:
        pass
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
for p in sorted(inp.glob("*.png")):
    Image.open(p).save(out / p.name)
"""


@needs_bwrap
def test_ram_backed_folders_are_bounded_by_the_memory_limit(world: dict[str, Path]) -> None:
    write_submission(world["attacks"], "ram_hog", "attack", RAM_HOG)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    policy = LimitPolicy(seconds_per_image=1.0, minimum_seconds=30.0, memory_mb=100, output_mb=500)
    result = run_competition(config_for(world, policy=policy, sandbox=SandboxKind.BWRAP), echo=_quiet)
    log = _logs(result, world["results"])["ram_hog"]
    assert "WROTE" not in log, log
    stopped = {line.split()[1]: (int(line.split()[2]), line.split()[3]) for line in log.splitlines()
               if line.startswith("STOPPED")}
    assert stopped["/tmp/fill"][0] <= 75 and stopped["/tmp/fill"][1] == "ENOSPC"
    assert stopped["/dev/shm/fill"][0] <= 25 and stopped["/dev/shm/fill"][1] == "ENOSPC"
    home = [v for k, v in stopped.items() if k.endswith("/fill") and k not in ("/tmp/fill", "/dev/shm/fill",
                                                                                 "/dev/fill", "/fill")]
    assert home and home[0][0] <= 75
    assert stopped["/dev/fill"] == (0, "EROFS") and stopped["/fill"] == (0, "EROFS")


# -- 7. file count -------------------------------------------------------------------------------------------
INODE_HOG = """
out = Path(sys.argv[2])
for i in range(300000):
    open(out / f"f{i}", "wb").close()
print("CREATED ALL")
"""


def test_output_file_count_is_limited(world: dict[str, Path]) -> None:
    write_submission(world["attacks"], "inode_hog", "attack", INODE_HOG)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    policy = LimitPolicy(seconds_per_image=1.0, minimum_seconds=60.0, output_files=1000)
    result = run_competition(config_for(world, policy=policy), echo=_quiet)
    problem = {r.name: r.problem for r in result.runs}["inode_hog"]
    assert problem == "output folder holds more than 1000 files; run stopped"
    assert "CREATED ALL" not in _logs(result, world["results"])["inode_hog"]


# -- 8, 9. PNG declared size, bomb warning, bit depth ----------------------------------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(width: int, height: int, *, depth: int = 8, text_first: bool = False, rows: int | None = None) -> bytes:
    """A hand-made RGB PNG (zero pixels), optionally with a tEXt chunk before IHDR and only ``rows`` rows."""
    row = b"\0" + bytes(width * 3 * depth // 8)
    data = zlib.compress(row * (height if rows is None else rows))
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, 2, 0, 0, 0))
    text = _chunk(b"tEXt", b"Comment\0hello")
    body = (text + header) if text_first else header
    return b"\x89PNG\r\n\x1a\n" + body + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def test_declared_size_is_checked_before_decoding_and_no_bomb_warning(tmp_path: Path) -> None:
    bomb = tmp_path / "img0.png"
    bomb.write_bytes(_png(13000, 13000, rows=40))
    clean = np.zeros((8, 8, 3), np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not even be raised
        verdict = contract.referee(bomb, clean, 16)
        with pytest.raises(contract.ImageError, match=r"declares 13000x13000 pixels"):
            contract.decode_png(bomb.read_bytes(), what="bomb")
    assert verdict.problem == "wrong size 13000x13000, expected 8x8"


def test_16_bit_png_with_text_before_header_is_rejected(tmp_path: Path) -> None:
    data = _png(8, 8, depth=16, text_first=True)
    with pytest.raises(contract.ImageError) as info:
        contract.decode_png(data, what="x.png")
    assert str(info.value) == "x.png: 16-bit PNG, expected 8-bit RGB"
    path = tmp_path / "x.png"
    path.write_bytes(data)
    assert contract.referee(path, np.zeros((8, 8, 3), np.uint8), 16).problem == "16-bit PNG, expected 8-bit RGB"
    assert contract.decode_png(_png(8, 8, text_first=True)).shape == (8, 8, 3)  # 8-bit with tEXt first is fine


# -- 10. labels ------------------------------------------------------------------------------------------------
HOSTILE_LABELS = ["\u0663", "\uff13", "1_0", "9" * 4300, " 1", "+1", "1.0", "\u00b9"]


@pytest.mark.parametrize("label", HOSTILE_LABELS, ids=["arabic_indic", "fullwidth", "underscore", "4300_digits",
                                                        "space", "plus", "decimal", "superscript"])
def test_labels_are_ascii_digits_in_range(tmp_path: Path, label: str) -> None:
    root = write_dataset(tmp_path / "data", [10, 60])
    (root / "dev_dataset.csv").write_text(f"ImageId,TrueLabel,TargetClass\nimg0,{label},1\nimg1,1,2\n",
                                          encoding="utf-8")
    if label.strip() == label or label.strip() not in ("1",):
        with pytest.raises(DatasetError) as info:
            load_dataset(root)
        assert len(str(info.value).splitlines()) == 1 and len(str(info.value)) < 400
    csv_path = tmp_path / "result.csv"
    csv_path.write_text(f"a.png,{label}\n", encoding="utf-8")
    answer = parse_predictions(csv_path, expected={"a.png"}, num_classes=10).answers["a.png"]
    if label.strip() == "1":  # surrounding spaces are trimmed in a defense's CSV
        assert answer == Answer(1, "")
    else:
        assert answer.label is None and answer.problem.startswith("non-integer label") and len(answer.problem) < 80


def test_labels_outside_the_class_range_are_rejected(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "data", [10, 60])
    (root / "dev_dataset.csv").write_text("ImageId,TrueLabel,TargetClass\nimg0,12,1\nimg1,1,2\n")
    with pytest.raises(DatasetError, match=r"TrueLabel 12 is outside the classes 0..9"):
        load_dataset(root, num_classes=10)
    csv_path = tmp_path / "result.csv"
    csv_path.write_text("a.png,10\nb.png,9\n")
    answers = parse_predictions(csv_path, expected={"a.png", "b.png"}, num_classes=10).answers
    assert answers == {"a.png": Answer(None, "label 10 outside the classes 0..9"), "b.png": Answer(9, "")}


# -- 11, 13. names and one-line messages ---------------------------------------------------------------------
def test_hostile_names_are_refused_with_the_rule_and_never_reach_the_terminal_raw(
        world: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    write_submission(world["attacks"], "evil\x1b[2Jname", "attack", NOOP)
    write_submission(world["attacks"], "clean", "attack", NOOP)
    write_submission(world["attacks"], "CLEAN", "attack", NOOP)
    write_submission(world["attacks"], "escentry", "attack", NOOP, entry="run\x1b]0;owned\x07.py")
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    discovery = discover([world["attacks"]])
    assert [s.name for s in discovery.submissions] == ["plus"]
    messages = {p.path.name: p.message for p in discovery.problems}
    assert "must use letters, digits" in messages["evil\x1b[2Jname"]
    assert "reserved" in messages["clean"] and "reserved" in messages["CLEAN"]
    assert "entry_point" in messages["escentry"]
    for message in messages.values():
        assert "\x1b" not in message and "\x07" not in message and "\n" not in message
    args = ["run", "--input_dir", str(world["data"]), "--attacks_dir", str(world["attacks"]), "--defenses_dir",
            str(world["defenses"]), "--output_dir", str(world["results"]), "--quiet", "--min_seconds", "20"]
    assert main(args) == 0
    captured = capsys.readouterr()
    for text in (captured.out, captured.err):
        assert "\x1b" not in text and "\x07" not in text
    assert "reserved" in captured.err and "must use letters, digits" in captured.err
    with open(world["results"] / "accuracy_matrix.csv") as handle:
        header = next(csv.reader(handle))
    assert header.count("clean") == 1


def test_one_line_escapes_controls_and_bounds_length() -> None:
    assert one_line("a\nb\x1b[31mc\u202ed") == "a\\nb\\x1b[31mc\\u202ed"
    assert len(one_line("x" * 10_000)) == 501


# -- 12. log limit -------------------------------------------------------------------------------------------
CHATTY = """
chunk = "y" * 65535 + "\\n"
for _ in range(300 * 16):     # 300 MB
    sys.stdout.write(chunk)
print("FINISHED")
"""


def test_log_limit_is_named_and_bounds_the_log(world: dict[str, Path]) -> None:
    write_submission(world["attacks"], "chatty", "attack", CHATTY)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    policy = LimitPolicy(seconds_per_image=1.0, minimum_seconds=60.0, output_mb=100, log_mb=4)
    result = run_competition(config_for(world, policy=policy), echo=_quiet)
    run = next(r for r in result.runs if r.name == "chatty")
    assert run.problem == "log reached the 4 MB limit; run stopped"
    log = world["results"] / run.log
    assert (4 << 20) <= log.stat().st_size <= (4 << 20) + 4096
    assert log.read_text().rstrip().endswith("[harness] log reached the 4 MB limit; run stopped")


def test_shell_exit_code_of_a_file_size_signal_is_explained(world: dict[str, Path]) -> None:
    folder = world["attacks"] / "sh_hog"
    folder.mkdir()
    (folder / "metadata.json").write_text('{"type": "attack", "entry_point": "run.sh"}')
    (folder / "run.sh").write_text("#!/bin/sh\nsh -c 'kill -s XFSZ $$'\nexit $?\n")  # exit code 153
    (folder / "run.sh").chmod(0o755)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    policy = LimitPolicy(seconds_per_image=1.0, minimum_seconds=60.0, output_mb=10)
    result = run_competition(config_for(world, policy=policy), echo=_quiet)
    problem = next(r.problem for r in result.runs if r.name == "sh_hog")
    assert "file size limit of 10 MB reached" in problem, problem


# -- 14. no sandbox: refuse unless asked ---------------------------------------------------------------------
def test_without_a_sandbox_the_harness_refuses_unless_sandbox_none(world: dict[str, Path],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    monkeypatch.setattr(bwrap, "bwrap_works",
                        lambda: (False, "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"))
    factory.probe.cache_clear()
    try:
        with pytest.raises(CompetitionError) as info:
            run_competition(config_for(world), echo=_quiet)
        message = str(info.value)
        assert len(message.splitlines()) == 1
        assert "apt-get install bubblewrap" in message and "--sandbox none" in message
        assert not (world["results"] / "leaderboard.csv").exists()
        result = run_competition(config_for(world, sandbox=SandboxKind.NONE), echo=_quiet)
        assert result.manifest.to_json()["protections"]["sandbox"] == "none"
    finally:
        factory.probe.cache_clear()


def test_messages_about_mutated_pngs_are_one_escaped_line() -> None:
    """Item 13 as a whole kind: whatever bytes an attack writes, the referee's reason is one short printable line."""
    rng = random.Random(13)
    base = bytearray(_png(8, 8, text_first=True))
    seen = set()
    for _ in range(400):
        data = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            position = rng.randrange(8, len(data))
            data[position] = rng.choice([0, 10, 13, 27, 7, 255, rng.randrange(256)])
        if rng.random() < 0.3:
            data = data[:rng.randrange(8, len(data))]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                contract.decode_png(bytes(data), what="x.png", expected_size=(8, 8))
                continue
            except contract.ImageError as exc:
                message = str(exc)
        seen.add(message[:45])
        assert message.startswith("x.png: ") and len(message) < 300, message
        assert message.isprintable(), repr(message)
    assert len(seen) >= 3  # the mutations reached several kinds of failure


NON_ROOT_PROBE = ROOT_PROBE + """
(out / "owner_probe").write_text("x")
try:
    with open("/tmp/fill", "wb") as handle:
        for _ in range(200):
            handle.write(b"x" * (1 << 20))
            handle.flush()
    print("TMP UNBOUNDED")
except OSError as exc:
    print("tmp bounded", exc.errno)
"""


def _run_in(folder: Path, name: str, *, limits: Limits, protections: Protections | None = None,
            image: bool = False) -> RunRecord:
    """Run ``folder/subs/name`` once in ``folder/scratch`` (made here, as the calling uid), logging to
    ``folder/NAME.log``; ``image``: one 8×8 input image."""
    scratch = folder / "scratch"
    for sub in ("input", "output", "work"):
        (scratch / sub).mkdir(parents=True)
    if image:
        Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(scratch / "input" / "img0.png")
    return sandbox_for(SandboxKind.BWRAP).run(RunRequest(
        submission=parse_submission(folder / "subs" / name), args=["{input}", "{output}", "16"],
        inputs=scratch / "input", outputs=scratch / "output", workdir=scratch / "work",
        limits=limits, log_path=folder / f"{name}.log", log_name=f"{name}.log", gpu=None,
        instance=Instance.create(), protections=protections or probe(SandboxKind.BWRAP)))


@needs_bwrap
@needs_root
def test_a_non_root_harness_gives_the_same_sandbox(open_tmp: Path) -> None:
    """Items 1 and 6 with the harness itself unprivileged (uid 65534): the run is that uid, /proc/sys read-only,
    no nested user namespaces, /tmp bounded."""
    os.chown(open_tmp, 65534, 65534)
    write_submission(open_tmp / "subs", "probe", "attack", NON_ROOT_PROBE)
    os.system(f"chown -R 65534:65534 {open_tmp}")

    def work() -> str:
        record = _run_in(open_tmp, "probe", limits=Limits(wall_seconds=60, memory_mb=100))
        owner = (open_tmp / "scratch" / "output" / "owner_probe").stat().st_uid
        return f"{record.problem}|{owner}"

    outcome = _as_unprivileged(work)
    assert outcome == "ok:|65534", outcome
    log = (open_tmp / "probe.log").read_text(errors="replace")
    assert "STATUS_UID ['65534'" in log and "shadow refused" in log
    assert "SYSCTL WRITTEN" not in log and log.count("sysctl refused") == 3 and "USERNS refused" in log
    assert "tmp bounded" in log and "TMP UNBOUNDED" not in log


@needs_root
@pytest.mark.parametrize("what", ["python", "library"])
def test_a_non_root_harness_that_cannot_read_the_installation_refuses_in_one_line(what: str) -> None:
    """A non-root harness runs bubblewrap as itself: a Python installation or submission library it cannot read
    (e.g. a pyenv Python below root's mode-700 /root) is named in one line with what to do, not a crash later."""
    from harness.library import library_dir

    folder = Path(os.path.realpath(sys.base_prefix)) if what == "python" else library_dir()
    outcome = _as_unprivileged(lambda: probe(SandboxKind.BWRAP).kind.value, hide=folder)
    assert outcome.startswith(f"raised:RuntimeError: --sandbox bwrap: {folder} "), outcome
    assert "not readable by uid 65534" in outcome and "or as root" in outcome and "\n" not in outcome


HIDDEN_OUTPUT = """
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
for p in sorted(inp.glob("*.png")):
    Image.open(p).save(out / p.name)
hidden = out / "hidden"
hidden.mkdir()
hidden.chmod(0o300)     # the harness's own uid may no longer list it
for i in range(5):
    (hidden / f"blob{i}").write_bytes(b"x" * (4 << 20))
hidden.chmod(0)
print("HID 20 MB")
"""


@needs_bwrap
@needs_root
def test_a_non_root_harness_counts_output_its_run_made_unreadable(open_tmp: Path) -> None:
    """Issue 28 item 6: the run writes as the harness's own uid, so it could hide output from the size limit in
    a folder it made unreadable (5 × 49 MB passed a 50 MB limit); the harness opens such folders and counts."""
    write_submission(open_tmp / "subs", "hider", "attack", HIDDEN_OUTPUT)
    os.system(f"chown -R 65534:65534 {open_tmp}")

    def work() -> str:
        return _run_in(open_tmp, "hider", limits=Limits(wall_seconds=60, output_mb=10), image=True).problem

    outcome = _as_unprivileged(work)
    assert outcome == "ok:output reached the 10 MB limit; run stopped", (outcome, (open_tmp / "hider.log").read_text())


@needs_bwrap
@needs_root
def test_a_non_root_run_does_not_start_outside_the_cgroup_its_protections_claim(open_tmp: Path) -> None:
    """Issue 28 item 6: with cgroup folders it may not create runs in (a root harness made them), the jail was
    silently empty and 405 processes ran under --max_processes 100. Each run's limits are now written and read
    back; a run whose limits cannot be set does not start, and its record says why."""
    made_by_root = open_tmp / "cgroup"
    made_by_root.mkdir(mode=0o755)
    protections = Protections(SandboxKind.BWRAP, namespaces=True, network=True,
                                        cgroup={"pids": made_by_root, "memory": made_by_root})
    write_submission(open_tmp / "subs", "bomb", "attack", fork_bomb(child_seconds=1))
    os.system(f"chown -R 65534:65534 {open_tmp / 'subs'}")
    os.chown(open_tmp, 65534, 65534)

    def work() -> str:
        record = _run_in(open_tmp, "bomb", limits=Limits(wall_seconds=60, max_processes=20, memory_mb=500),
                         protections=protections)
        return f"{record.exit_code}|{record.problem}"

    outcome = _as_unprivileged(work)
    log = (open_tmp / "bomb.log").read_text()
    assert outcome.startswith(f"ok:None|not started: its limits could not be set (cannot create cgroup "
                              f"{made_by_root}/run-"), (outcome, log)
    assert "Permission denied" in outcome and "forked" not in log and "[harness] not started" in log


def test_cgroup_v2_folder_gets_both_limits_read_back(tmp_path: Path) -> None:
    """cgroup v2 has one folder for both controllers: the jail skipped the second one, so the memory limit was
    never written (and RLIMIT_DATA was dropped in its favour). Here a plain folder stands in for the v2 root."""
    jail = cgroups.CgroupJail({"pids": tmp_path, "memory": tmp_path},
                              Limits(wall_seconds=1, max_processes=7, memory_mb=3), instance=Instance.create())
    assert len(jail.folders) == 1
    assert (jail.folders[0] / "pids.max").read_text() == "7"
    assert (jail.folders[0] / "memory.limit_in_bytes").read_text() == str(3 << 20)
    assert not jail.problems and jail.applied == ["max_processes", "memory_mb"] and jail.memory_enforced


@needs_bwrap
@needs_root
def test_a_non_root_harness_after_a_root_one_claims_no_cgroup_and_refuses_without_allow(open_tmp: Path) -> None:
    """Issue 28 item 6: after a root harness made the cgroup folders, a non-root harness recorded memory and
    pids in its manifest without creating any jail. It now claims no cgroup, refuses to start naming the limits it
    cannot enforce and the option to accept that, and with the option its manifest lists them."""
    probe.cache_clear()
    probe(SandboxKind.BWRAP)  # as root: the cgroup folders exist afterwards, wherever root may create them
    world = {"data": write_dataset(open_tmp / "data", [10, 45, 90]), "attacks": open_tmp / "attacks",
             "defenses": open_tmp / "defenses", "results": open_tmp / "results"}
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    os.system(f"chown -R 65534:65534 {open_tmp}")

    def work() -> str:
        policy = LimitPolicy(seconds_per_image=5.0, minimum_seconds=30.0, memory_mb=2000, max_processes=100)
        try:
            first = run_competition(config_for(world, policy=policy, sandbox=SandboxKind.BWRAP), echo=_quiet)
            return json.dumps({"refusal": "none", "protections": first.manifest.to_json()["protections"]})
        except CompetitionError as exc:
            refusal = str(exc)
        result = run_competition(config_for(world, policy=policy, sandbox=SandboxKind.BWRAP,
                                            allow_unenforced=("max_processes", "memory_mb")), echo=_quiet)
        return json.dumps({"refusal": refusal, "protections": result.manifest.to_json()["protections"],
                           "unenforced": result.manifest.to_json()["unenforced_limits"],
                           "problems": [r.problem for r in result.runs]})

    outcome = _as_unprivileged(work)
    assert outcome.startswith("ok:"), outcome
    found = json.loads(outcome[3:])
    refusal = found["refusal"]
    assert refusal.startswith("this non-root harness cannot enforce memory_mb, max_processes here"), refusal
    assert refusal.endswith("--allow_unenforced memory_mb,max_processes") and "\n" not in refusal
    assert found["protections"]["cgroup_controllers"] == []
    assert found["unenforced"] == ["memory_mb", "max_processes"]
    assert found["protections"]["run_uid"] == 65534
    assert found["problems"] and not any(found["problems"])


def test_a_starting_run_keeps_its_cgroup_while_another_harness_probes() -> None:
    """Two harnesses (or Dask workers) at once: the second one's probe swept the first one's new, still empty run
    cgroup before the run entered it (the run then ran unjailed; with the per-run check it fails to start)."""
    protections = probe(SandboxKind.NONE)
    jail = cgroups.CgroupJail(protections.cgroup, Limits(wall_seconds=1, max_processes=5),
                                instance=Instance.create())
    try:
        probe.cache_clear()
        probe(SandboxKind.NONE)  # another harness starting up
        assert len(jail.folders) == len(set(protections.cgroup.values()))
        assert all(folder.is_dir() for folder in jail.folders)
    finally:
        jail.remove()
        probe.cache_clear()
