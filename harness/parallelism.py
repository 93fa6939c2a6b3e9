"""How many submission processes run at once, and how many CPU threads each may use.

The default is one run per usable core: a sample submission spends most of its life starting up (importing
torch, loading weights), which is single-threaded, so two runs on two cores take about half the time of one run
with two threads. Each run gets an equal share of the cores as its thread count (OMP/MKL/OpenBLAS and torch), so
that parallel runs never oversubscribe the machine.
"""

from __future__ import annotations

import os

__all__ = ["default_jobs", "threads_per_run", "usable_cores"]


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which ``taskset``/cgroup cpusets narrow), at least 1.

    ``os.cpu_count()`` counts the machine's cores, not the ones a container or ``taskset`` leaves this process.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


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
