"""How many submission processes run at once, and how many CPU threads each may use.

The default is one run per usable core: a sample submission spends most of its life starting up (importing
torch, loading weights), which is single-threaded, so two runs on two cores take about half the time of one run
with two threads. Each run gets an equal share of the cores as its thread count (OMP/MKL/OpenBLAS and torch), so
that parallel runs never oversubscribe the machine, and its share of the CPU is enforced (:class:`CpuShare`: its own
cores where they divide evenly, and a CPU-time quota), so that a run that forks many busy processes slows nobody
but itself.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

__all__ = ["CpuShare", "cpu_shares", "default_jobs", "threads_per_run", "usable_core_ids", "usable_cores",
           "worker_cpu_shares"]

#: Scheduling period of a CPU quota, in microseconds (the kernel's and docker's default: 100 ms).
QUOTA_PERIOD_US = 100_000


@dataclass(frozen=True)
class CpuShare:
    """The CPU one of several parallel runs may use, enforced by the sandbox (cgroup ``cpu`` quota and ``cpuset``,
    or ``docker run --cpus --cpuset-cpus``).

    Attributes:
        cpus: CPUs' worth of time per scheduling period (:data:`QUOTA_PERIOD_US`), > 0; e.g. 1.0 = one core, 0.5 =
            half of one (docker's ``--cpus``).
        cores: The cores the run's processes may be scheduled on (``cpuset.cpus``), sorted, at least one.
    """

    cpus: float
    cores: tuple[int, ...]

    @property
    def quota_us(self) -> int:
        """CPU time per period in microseconds (``cpu.cfs_quota_us``, the first field of cgroup v2's ``cpu.max``)."""
        return max(1000, round(self.cpus * QUOTA_PERIOD_US))

    @property
    def cpuset(self) -> str:
        """The cores as a cpuset list ("0,1")."""
        return ",".join(str(core) for core in self.cores)


def cpu_shares(slots: int, cores: Sequence[int] | None = None) -> list[CpuShare]:
    """Equal CPU shares for ``slots`` runs at once over ``cores`` (default: this process's usable cores).

    With no more slots than cores, each slot gets ``len(cores) // slots`` cores of its own (cores left over serve
    the harness's own work: preparing inputs, refereeing, storing) and as many CPUs of quota, so no run can take
    time from another's cores. With more slots than cores, slot ``i`` is pinned to core ``i mod len(cores)`` and
    every slot gets the quota of the most crowded core's share (``1 / ceil(slots / cores)`` CPUs), so shares stay
    equal.

    Raises:
        ValueError: ``slots`` < 1 or ``cores`` is empty.
    """
    if slots < 1:
        raise ValueError(f"slots must be at least 1, got {slots}")
    available = sorted(set(usable_core_ids() if cores is None else cores))
    if not available:
        raise ValueError("cpu_shares: no cores to share")
    if slots <= len(available):
        size = len(available) // slots
        return [CpuShare(cpus=float(size), cores=tuple(available[i * size:(i + 1) * size])) for i in range(slots)]
    quota = 1.0 / math.ceil(slots / len(available))
    return [CpuShare(cpus=quota, cores=(available[i % len(available)],)) for i in range(slots)]


def worker_cpu_shares(own: int, *, on_host: int, index: int | None) -> list[CpuShare] | None:
    """The CPU shares of a cluster worker's ``own`` slots when ``on_host`` slots run at once on its host.

    Args:
        own: The worker's slots (submission processes at once).
        on_host: Slots of every worker on the host (at least ``own``).
        index: The worker's place among the host's workers when known (a local cluster's workers 0, 1, ...): its
            slots then get cores of their own, disjoint from the other workers'; None when unknown (each slot is
            then held to its quota on any core).

    Returns:
        One share per slot; None when the worker's single slot is alone on the host (it may use every core).
    """
    if on_host <= 1:
        return None
    host = cpu_shares(on_host)
    if index is not None and (index + 1) * own <= on_host:
        return host[index * own:(index + 1) * own]
    return [CpuShare(cpus=host[0].cpus, cores=tuple(usable_core_ids()))] * own


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which ``taskset``/cgroup cpusets narrow), at least 1.

    ``os.cpu_count()`` counts the machine's cores, not the ones a container or ``taskset`` leaves this process.
    """
    return len(usable_core_ids())


def usable_core_ids() -> list[int]:
    """The ids of the cores this process may run on (its affinity mask), sorted, at least one."""
    try:
        return sorted(os.sched_getaffinity(0)) or [0]
    except (AttributeError, OSError):  # not Linux
        return list(range(max(1, os.cpu_count() or 1)))


def default_jobs() -> int:
    """Runs in parallel when ``--jobs`` is not given: one per usable core."""
    return usable_cores()


def threads_per_run(jobs: int) -> int | None:
    """CPU threads each of ``jobs`` parallel runs may use: its share of the usable cores, at least 1.

    Returns None for ``jobs == 1`` (the run keeps the harness's own thread settings and may use every core).

    Raises:
        ValueError: ``jobs`` < 1.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    return None if jobs == 1 else max(1, usable_cores() // jobs)
