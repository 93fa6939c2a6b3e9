"""Per-run resource limits as a policy over the number of images a run gets (NIPS 2017: 500 s per 100 images)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.isolation import Limits

__all__ = ["LimitPolicy"]


@dataclass(frozen=True)
class LimitPolicy:
    """Resource limits of a run over some number of images.

    The wall-clock limit is ``max(minimum_seconds, seconds_per_image × images)`` (NIPS 2017 allowed 500 s per
    batch of 100 images: 5 s per image); the CPU-time limit is ``cpu_factor`` times the wall-clock limit (a
    process may use several cores).

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

    def limits(self, images: int) -> Limits:
        """Limits for a run over ``images`` images."""
        wall = max(self.minimum_seconds, self.seconds_per_image * images)
        files = max(self.output_files, 2 * images + 10) if self.output_files else None
        return Limits(wall_seconds=wall, cpu_seconds=wall * self.cpu_factor, memory_mb=self.memory_mb,
                      max_processes=self.max_processes, output_mb=self.output_mb, output_files=files,
                      log_mb=self.log_mb)
