"""Cgroups: the folders a harness may create runs in, and the cgroup that holds one run's processes.

A run's processes are placed in a cgroup of their own under each controller the harness may use (cgroup v1: one
folder per controller hierarchy; cgroup v2: one folder), named for the harness instance (``run-TAG-RANDOM``):

- ``pids``: at most ``max_processes`` processes and threads at once;
- ``memory``: at most ``memory_mb`` for the whole run;
- ``cpu``: at most its CPU share's quota (``cpu.cfs_quota_us`` / ``cpu.max``) per 100 ms period;
- ``cpuset``: only its CPU share's cores (``cpuset.cpus``);
- ``cpuacct`` (v1) / ``cpu.stat`` (v2): the CPU seconds the whole run used (:meth:`CgroupJail.cpu_seconds`).

Each limit is written and read back; a run whose limits cannot all be set is not started (:mod:`harness.process`).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable

from harness.cleanup import owner_of
from harness.instance import Instance
from harness.limits import Limits
from harness.parallelism import QUOTA_PERIOD_US, usable_cores

__all__ = ["CGROUP_LIMITS", "CGROUP_PREFIX", "CgroupJail", "cgroup_roots", "parse_cpu_list", "sweep_dead_cgroups",
           "weigh_runs"]

#: Limits (named as their :class:`harness.limits.Limits` fields and command-line options) that hold for a whole run
#: only through a cgroup controller; without it ``memory_mb`` is RLIMIT_DATA per process (a run of many processes,
#: or of many files in its RAM-backed /tmp, exceeds it), ``max_processes`` is not enforced at all, and a run's
#: ``cpu_share`` is not enforced (a run that forks many busy processes slows the runs beside it).
CGROUP_LIMITS = {"memory_mb": "memory", "max_processes": "pids", "cpu_share": "cpu"}
#: Controllers the harness places runs under: the limits' ones, ``cpuset`` (a run's own cores) and ``cpuacct``
#: (cgroup v1's CPU-time accounting; cgroup v2 accounts CPU time in every folder).
CONTROLLERS = ("pids", "memory", "cpu", "cpuset", "cpuacct")
#: A run's cgroup folder is ``<controller root>/run-<instance tag>-<random>``.
CGROUP_PREFIX = "run-"
_BASE = Path("/sys/fs/cgroup")


def parse_cpu_list(text: str) -> set[int]:
    """The cores of a cpuset list such as ``"0-2,5"``.

    Raises:
        ValueError: ``text`` is not a cpu list.
    """
    cores: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        cores.update(range(int(first), int(last or first) + 1))
    return cores


def _usable(folder: Path) -> str:
    """"" when this process may create cgroups in ``folder``, else why not (a folder another user made)."""
    if os.access(folder, os.W_OK | os.X_OK):
        return ""
    try:
        owner = f"belongs to uid {folder.stat().st_uid}"
    except OSError:
        owner = "is not accessible"
    return f"{folder} {owner} and is not writable by uid {os.geteuid()}"


def _inherit_cpuset(folder: Path) -> None:
    """cgroup v1: give a new ``cpuset`` folder its parent's cores and memory nodes (it starts with none, and a
    folder without them refuses processes), and let its children inherit them on creation."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        own = folder / name
        if not own.read_text().strip():
            own.write_text((folder.parent / name).read_text().strip())
    (folder / "cgroup.clone_children").write_text("1")


def weigh_runs(folder: Path, cores: int) -> bool:
    """Give the harness's ``cpu`` folder the CPU weight of ``cores`` ordinary processes (cgroup v1 ``cpu.shares``
    1024 each, at most 262144; v2 ``cpu.weight`` 100 each, at most 10000).

    Parallel runs are held in this one folder, and the scheduler weighs a folder against the machine's other
    processes as one: with the default weight, ``--jobs N`` runs together would get what one busy process gets
    beside other work. With this weight they weigh as the N plain processes they would otherwise be.

    Returns:
        True when the weight was written and read back; False where the folder refuses it (the runs then keep the
        default weight).
    """
    v2 = (folder / "cpu.weight").exists()
    name, value = ("cpu.weight", min(10000, 100 * cores)) if v2 else ("cpu.shares", min(262144, 1024 * cores))
    try:
        (folder / name).write_text(str(value))
        return (folder / name).read_text().strip() == str(value)
    except OSError:
        return False


def _v1_roots() -> tuple[dict[str, Path], list[str]]:
    roots: dict[str, Path] = {}
    refused: list[str] = []
    for controller in CONTROLLERS:
        folder = _BASE / controller / "adv-harness"
        try:
            folder.mkdir(exist_ok=True)
        except OSError:
            continue
        why = _usable(folder)
        if why:
            refused.append(why)
            continue
        if controller == "cpuset":
            try:
                _inherit_cpuset(folder)
            except OSError as exc:
                refused.append(f"{folder}: cannot give it cores ({exc.strerror or exc})")
                continue
        if controller == "cpu":
            weigh_runs(folder, usable_cores())
        roots[controller] = folder.resolve()  # cpu and cpuacct may be one hierarchy under two names
    return roots, refused


def _v2_roots() -> tuple[dict[str, Path], list[str]]:
    roots: dict[str, Path] = {}
    folder = _BASE / "adv-harness"
    try:
        folder.mkdir(exist_ok=True)
        why = _usable(folder)
        if why:
            return {}, [why]
        enabled = (_BASE / "cgroup.subtree_control").read_text().split()
        wanted = [c for c in CONTROLLERS if c in enabled]
        if wanted:
            (folder / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted))
        roots = {controller: folder for controller in wanted}
        if "cpu" in roots:
            weigh_runs(folder, usable_cores())
        if roots:
            roots["cpuacct"] = folder  # cpu.stat's usage_usec: in every v2 folder
    except OSError:
        return {}, []
    return roots, []


def cgroup_roots() -> tuple[dict[str, Path], str]:
    """Cgroup v1 controller folders (:data:`CONTROLLERS`), or a cgroup v2 folder with them, in which this process
    may create a run's folder (one made earlier by another user, e.g. a root harness, is not); dead instances'
    leftovers in them are removed.

    Returns:
        (controller → folder, a note for the manifest saying what is missing and why, "" when nothing is).
    """
    roots, refused = _v1_roots()
    if not roots and not refused and (_BASE / "cgroup.controllers").exists():
        roots, refused = _v2_roots()
    sweep_dead_cgroups(roots)
    because = f" ({'; '.join(refused)})" if refused else ""
    if not roots:
        return {}, ("no writable cgroup: process-count limit and CPU share not enforced, memory limited by "
                    "RLIMIT_DATA only" + because)
    missing = {"pids", "memory", "cpu", "cpuset"} - roots.keys()
    note = f"cgroup controller(s) {', '.join(sorted(missing))} unavailable{because}" if missing else ""
    return roots, note


def sweep_dead_cgroups(roots: dict[str, Path]) -> list[Path]:
    """Delete the empty cgroup folders of runs whose harness instance is dead (killed before it removed them).

    Folders of live instances, of other hosts and of another naming (earlier harness versions' included) are left
    alone.

    Args:
        roots: Controller → the harness's cgroup folder (:attr:`harness.sandboxes.base.Protections.cgroup`).

    Returns:
        The folders deleted. Never raises.
    """
    removed: list[Path] = []
    for root in sorted(set(roots.values())):
        try:
            entries = sorted(root.iterdir())
        except OSError:
            continue
        for entry in entries:
            owner = owner_of(entry.name, CGROUP_PREFIX)
            if owner is None or not owner.dead():
                continue
            try:
                if entry.is_symlink() or not entry.is_dir() or entry.stat().st_uid != os.geteuid():
                    continue
                entry.rmdir()  # a cgroup folder with processes or children cannot be removed: it stays
            except OSError:
                continue
            removed.append(entry)
    return removed


class CgroupJail:
    """A cgroup (every controller of ``roots``) that one run's processes are placed in.

    Each limit is written and read back: :attr:`applied` names those in force (as in :data:`CGROUP_LIMITS`, plus
    ``"cpuset"`` when the run is held to its share's cores), :attr:`problems` says, one line each, why a limit the
    roots promised is not (the run must then not start).

    Args:
        roots: Controller → parent folder, from :class:`harness.sandboxes.base.Protections`.
        limits: The run's limits.
        instance: The harness instance the folders are named for (``run-TAG-RANDOM``, see
            :func:`sweep_dead_cgroups`).
    """

    def __init__(self, roots: dict[str, Path], limits: Limits, *, instance: Instance) -> None:
        self.folders: list[Path] = []
        self.controllers: dict[str, Path] = {}
        name = f"{CGROUP_PREFIX}{instance.tag}-{uuid.uuid4().hex[:8]}"
        self.applied: list[str] = []
        self.problems: list[str] = []
        for controller, root in roots.items():
            folder = root / name
            if folder not in self.folders:  # cgroup v2: one folder holds every controller
                try:
                    folder.mkdir()
                except OSError as exc:
                    self.problems.append(f"cannot create cgroup {folder}: {exc.strerror or exc}")
                    continue
                self.folders.append(folder)
            self.controllers[controller] = folder
        self._apply(limits)

    def _apply(self, limits: Limits) -> None:
        pids, memory = self.controllers.get("pids"), self.controllers.get("memory")
        if pids is not None and limits.max_processes:
            self._set("max_processes", [pids / "pids.max"], str(limits.max_processes))
        if memory is not None and limits.memory_mb:
            if self._set("memory_mb", [memory / "memory.limit_in_bytes", memory / "memory.max"],
                         str(limits.memory_mb << 20)):
                swap = memory / "memory.memsw.limit_in_bytes"  # absent without swap accounting
                if swap.exists():
                    try:
                        swap.write_text(str(limits.memory_mb << 20))
                    except OSError:
                        pass
        share = limits.cpu_share
        cpu, cpuset = self.controllers.get("cpu"), self.controllers.get("cpuset")
        if share is not None and cpu is not None:
            if (cpu.parent / "cgroup.controllers").exists():  # cgroup v2: cpu.max holds "QUOTA PERIOD"
                self._set("cpu_share", [cpu / "cpu.max"], f"{share.quota_us} {QUOTA_PERIOD_US}")
            else:
                self._set("cpu_share", [cpu / "cpu.cfs_period_us"], str(QUOTA_PERIOD_US), record=False)
                self._set("cpu_share", [cpu / "cpu.cfs_quota_us"], str(share.quota_us))
        if share is not None and cpuset is not None:
            self._set("cpuset", [cpuset / "cpuset.cpus"], share.cpuset, same=lambda found:
                      parse_cpu_list(found) == set(share.cores))

    def _set(self, limit: str, candidates: list[Path], value: str, *, record: bool = True,
             same: Callable[[str], bool] | None = None) -> bool:
        """Write ``value`` to the first existing file of ``candidates`` and read it back; record the outcome."""
        target = next((path for path in candidates if path.exists()), candidates[0])
        try:
            target.write_text(value)
            found = target.read_text().strip()
            matches = same(found) if same is not None else found == value
        except (OSError, ValueError) as exc:
            self.problems.append(f"{limit}: cannot set {target}: {getattr(exc, 'strerror', None) or exc}")
            return False
        if not matches:
            self.problems.append(f"{limit}: {target} reads {found} after writing {value}")
            return False
        if record:
            self.applied.append(limit)
        return True

    @property
    def memory_enforced(self) -> bool:
        """True when a memory controller folder holds the run with its limit read back."""
        return "memory_mb" in self.applied

    def enter(self) -> None:
        """Move the calling process into the cgroup (called between fork and exec).

        Raises:
            OSError: A folder refused the process (the run must not start outside its cgroup).
        """
        for folder in self.folders:
            (folder / "cgroup.procs").write_text(str(os.getpid()))

    def cpu_seconds(self) -> float | None:
        """CPU seconds (user + system) every process of the run used so far; None without CPU accounting."""
        folder = self.controllers.get("cpuacct")
        if folder is None:
            return None
        try:
            if (folder / "cpuacct.usage").exists():  # cgroup v1: nanoseconds
                return int((folder / "cpuacct.usage").read_text()) / 1e9
            for line in (folder / "cpu.stat").read_text().splitlines():  # cgroup v2: microseconds
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
        except (OSError, ValueError):
            return None
        return None

    def pids_limit_hit(self) -> bool:
        """True when the pids controller refused a fork."""
        for folder in self.folders:
            events = folder / "pids.events"
            if events.exists() and events.read_text().split()[-1:] != ["0"]:
                return True
        return False

    def memory_limit_hit(self) -> bool:
        """True when the memory controller killed or throttled a process at the limit."""
        for folder in self.folders:
            for name in ("memory.failcnt", "memory.oom_control", "memory.events"):
                path = folder / name
                try:
                    text = path.read_text()
                except OSError:
                    continue
                if name == "memory.failcnt" and text.strip() not in ("", "0"):
                    return True
                if any(line.startswith(("oom_kill ", "max ")) and not line.strip().endswith(" 0")
                       for line in text.splitlines()):
                    return True
        return False

    def kill_all(self) -> None:
        """SIGKILL every process left in the cgroup."""
        for folder in self.folders:
            try:
                pids = (folder / "cgroup.procs").read_text().split()
            except OSError:
                continue
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, PermissionError, ValueError):
                    pass

    def remove(self) -> None:
        """Delete the cgroup folders (after the processes are gone)."""
        for folder in self.folders:
            try:
                folder.rmdir()
            except OSError:
                pass
