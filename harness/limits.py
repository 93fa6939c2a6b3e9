"""Per-run resource limits as a policy over the number of images a run gets (NIPS 2017: 500 s per 100 images)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.parallelism import CpuShare

__all__ = ["LimitPolicy", "Limits"]


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run (None = unlimited).

    Attributes:
        wall_seconds: Wall-clock limit; the process group is killed when it is reached.
        cpu_seconds: CPU time (RLIMIT_CPU).
        memory_mb: Memory: the cgroup memory limit where available, else RLIMIT_DATA (heap and anonymous maps).
        max_processes: Processes and threads at once (cgroup pids controller; needs a writable cgroup).
        output_mb: Total size of the output folder; also the largest single file (RLIMIT_FSIZE).
        output_files: Entries (files, folders, links) in the output folder.
        log_mb: Size of the log (stdout and stderr); the run is stopped when it is reached.
        cpu_share: The run's share of the CPU (cores and quota) when it runs beside others (cgroup ``cpu`` and
            ``cpuset`` controllers, or docker's ``--cpus``/``--cpuset-cpus``); None when it runs alone.
    """

    wall_seconds: float
    cpu_seconds: float | None = None
    memory_mb: int | None = None
    max_processes: int | None = None
    output_mb: int | None = None
    output_files: int | None = None
    log_mb: int | None = None
    cpu_share: CpuShare | None = None


@dataclass(frozen=True)
class LimitPolicy:
    """Resource limits of a run over some number of images.

    The wall-clock limit is ``max(minimum_seconds, seconds_per_image × images)`` (NIPS 2017 allowed 500 s per
    batch of 100 images: 5 s per image); the CPU-time limit is ``cpu_factor`` times the wall-clock limit (a
    process may use several cores), and never more than the run's enforced CPU share allows over that wall time
    (a run held to one core cannot use more than one CPU-second per second).

    Attributes:
        seconds_per_image: Wall-clock seconds allowed per image.
        minimum_seconds: Smallest wall-clock limit (process start-up, model loading).
        cpu_factor: CPU seconds allowed per wall-clock second of the limit.
        memory_mb: Memory per run.
        max_processes: Processes and threads per run at once.
        output_mb: Output folder size per run.
        output_files: Entries in the output folder per run (at least the run's images are always allowed).
        log_mb: Log (stdout + stderr) size per run.
    """

    seconds_per_image: float = 5.0
    minimum_seconds: float = 60.0
    cpu_factor: float = 4.0
    memory_mb: int | None = 8192
    max_processes: int | None = 256
    output_mb: int | None = 1024
    output_files: int | None = 10_000
    log_mb: int | None = 64

    def limits(self, images: int, *, cpu_share: CpuShare | None = None) -> Limits:
        """Limits for a run over ``images`` images, holding the CPU share ``cpu_share`` (None: it runs alone)."""
        wall = max(self.minimum_seconds, self.seconds_per_image * images)
        files = max(self.output_files, 2 * images + 10) if self.output_files else None
        factor = min(self.cpu_factor, cpu_share.cpus) if cpu_share is not None else self.cpu_factor
        return Limits(wall_seconds=wall, cpu_seconds=wall * factor, memory_mb=self.memory_mb,
                      max_processes=self.max_processes, output_mb=self.output_mb, output_files=files,
                      log_mb=self.log_mb, cpu_share=cpu_share)
