"""Progress of the competition's stages: tqdm bars on a terminal, plain lines anywhere else.

A stage (``attacks``, ``defenses``) is a known number of runs. On a terminal it is a tqdm bar. When the stream is
not a terminal (``run_competition.py > run.log 2>&1``, a cluster job, CI, ``nohup``), tqdm would draw nothing
useful, so the stage writes one plain line

* when it starts,
* whenever another 10 % of its runs are done, and at least every 30 s even when none finished (a heartbeat),
* when it ends,

each with the runs done / total, the failed runs so far, the elapsed time and an estimate of the time left::

    [progress] defenses: 42/208 runs (20 %), 1 failed, 1 min 3 s elapsed, about 4 min 9 s left

Usage (the factory is what :class:`harness.execution.Runner` takes as ``progress``)::

    factory = progress.reporter(sys.stderr)
    tick = factory("attacks", 13)
    tick(failed=False)          # once per finished run
    tick.close()                # optional: stops the heartbeat early (e.g. after an error)
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from typing import Protocol, TextIO

__all__ = ["HEARTBEAT_SECONDS", "PREFIX", "STEP", "Bar", "PlainLines", "ProgressFactory", "Tick",
           "format_seconds", "reporter"]

#: Longest silence, in seconds, of a stage that is still running (plain lines).
HEARTBEAT_SECONDS = 30.0
#: Fraction of a stage's runs between two plain lines.
STEP = 0.1
#: Start of every plain line, so that a log can be searched for them.
PREFIX = "[progress]"


class Tick(Protocol):
    """Called once per finished run of a stage; ``close`` ends the stage early (idempotent)."""

    def __call__(self, failed: bool = False) -> None: ...

    def close(self) -> None: ...


#: (stage label, runs in the stage) → its tick.
ProgressFactory = Callable[[str, int], Tick]


def format_seconds(seconds: float) -> str:
    """``"12 s"``, ``"3 min 5 s"``, ``"1 h 2 min"``: a duration in seconds, rounded to whole seconds."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


class PlainLines:
    """One stage as plain lines on ``stream`` (see the module docstring for when a line is written).

    Args:
        label: Stage name.
        total: Runs in the stage (0: one line saying there is nothing to run).
        stream: Where lines go (flushed after each).
        unit: What is counted ("run").
        heartbeat: Longest silence in seconds while the stage runs.
        step: Fraction of ``total`` between lines.
        clock: Monotonic clock in seconds (tests pass a fake one).
    """

    def __init__(self, label: str, total: int, stream: TextIO, *, unit: str = "run",
                 heartbeat: float = HEARTBEAT_SECONDS, step: float = STEP,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if total < 0:
            raise ValueError(f"total must be at least 0, got {total}")
        if not heartbeat > 0 or not 0 < step <= 1:
            raise ValueError(f"heartbeat must be positive and step in (0, 1], got {heartbeat} and {step}")
        self.label, self.total, self.stream, self.unit = label, total, stream, unit
        self.heartbeat, self.clock = heartbeat, clock
        self.every = max(1, math.ceil(step * total))
        self.done = 0
        self.failed = 0
        self.started = clock()
        self._last_line = self.started
        self._last_done = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if total == 0:
            self._write(f"{PREFIX} {label}: nothing to run (0 {unit}s)")
            self._stop.set()
            return
        self._write(self._line())
        self._thread = threading.Thread(target=self._beat, name=f"progress-{label}", daemon=True)
        self._thread.start()

    def _write(self, line: str) -> None:
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream must not stop the competition
            pass

    def _line(self, *, final: bool = False) -> str:
        elapsed = self.clock() - self.started
        units = f"{self.unit}s" if self.total != 1 else self.unit
        percent = 100 * self.done // self.total if self.total else 100
        text = (f"{PREFIX} {self.label}: {'done, ' if final else ''}{self.done}/{self.total} {units} ({percent} %), "
                f"{self.failed} failed, {format_seconds(elapsed)} elapsed")
        if final:
            return text
        if self.done:
            left = elapsed / self.done * (self.total - self.done)
            return f"{text}, about {format_seconds(left)} left"
        return f"{text}, time left unknown"

    def _emit(self, *, final: bool = False) -> None:
        self._write(self._line(final=final))
        self._last_line = self.clock()
        self._last_done = self.done

    def _beat(self) -> None:
        while True:
            with self._lock:
                wait = self._last_line + self.heartbeat - self.clock()
            if self._stop.wait(max(0.01, min(wait, self.heartbeat))):
                return
            with self._lock:
                if not self._stop.is_set() and self.clock() - self._last_line >= self.heartbeat:
                    self._emit()

    def __call__(self, failed: bool = False) -> None:
        """Count one finished run (``failed``: it ended with a problem)."""
        with self._lock:
            if self._stop.is_set():
                return
            self.done += 1
            self.failed += bool(failed)
            if self.done >= self.total:
                self._emit(final=True)
                self._stop.set()
            elif self.done - self._last_done >= self.every or self.clock() - self._last_line >= self.heartbeat:
                self._emit()

    def close(self) -> None:
        """Stop the heartbeat; a stage closed before its end writes a last line saying where it stopped."""
        with self._lock:
            if not self._stop.is_set():
                self._stop.set()
                self._write(self._line() + " (stopped)")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


class Bar:
    """One stage as a tqdm bar on a terminal, with the failed runs as a postfix."""

    def __init__(self, label: str, total: int, stream: TextIO, *, unit: str = "run") -> None:
        from tqdm import tqdm

        self.failed = 0
        self._bar = tqdm(total=total, desc=label, unit=unit, leave=True, file=stream, disable=not total)
        self._lock = threading.Lock()

    def __call__(self, failed: bool = False) -> None:
        with self._lock:
            if failed:
                self.failed += 1
                self._bar.set_postfix(failed=self.failed, refresh=False)
            self._bar.update(1)
            if self._bar.total is not None and self._bar.n >= self._bar.total:
                self._bar.close()

    def close(self) -> None:
        with self._lock:
            self._bar.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def reporter(stream: TextIO | None = None, *, unit: str = "run", heartbeat: float = HEARTBEAT_SECONDS,
             step: float = STEP) -> ProgressFactory:
    """A progress factory writing to ``stream`` (default ``sys.stderr``): bars on a terminal, else plain lines.

    Args:
        stream: Where progress goes.
        unit: What a stage counts.
        heartbeat: Longest silence in seconds of a running stage (plain lines only).
        step: Fraction of a stage's runs between plain lines.
    """
    out = sys.stderr if stream is None else stream

    def factory(label: str, total: int) -> Tick:
        if _is_terminal(out):
            return Bar(label, total, out, unit=unit)
        return PlainLines(label, total, out, unit=unit, heartbeat=heartbeat, step=step)

    return factory
