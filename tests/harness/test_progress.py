"""Progress in every log: plain lines when stderr is not a terminal (start, every 10 % or 30 s, end)."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import progress
from tiny_world import BUCKET_DEFENSE, PLUS, write_submission

ROOT = Path(__file__).resolve().parents[2]

#: done/total, failed, elapsed: what every plain line carries.
LINE = re.compile(r"^\[progress\] (?P<stage>\w+): (?P<final>done, )?(?P<done>\d+)/(?P<total>\d+) runs? "
                  r"\(\d+ %\), (?P<failed>\d+) failed, \d+ (?:s|min \d+ s|h \d+ min) elapsed"
                  r"(?P<rest>.*)$")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _parsed(text: str) -> list[re.Match[str]]:
    matches = [LINE.match(line) for line in text.splitlines() if line.startswith(progress.PREFIX)]
    assert all(matches), text
    return [m for m in matches if m is not None]


def test_plain_lines_at_start_every_tenth_and_at_the_end() -> None:
    stream, clock = io.StringIO(), FakeClock()
    tick = progress.PlainLines("defenses", 20, stream, heartbeat=1e6, clock=clock)
    for index in range(20):
        clock.now += 3.0
        tick(failed=index in (4, 11))
    lines = _parsed(stream.getvalue())
    assert [int(m["done"]) for m in lines] == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    assert lines[0]["rest"] == ", time left unknown"
    assert lines[1]["rest"] == ", about 54 s left"  # 6 s for 2 runs → 18 runs × 3 s
    assert [int(m["failed"]) for m in lines] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2]
    assert lines[-1]["final"] and lines[-1]["rest"] == "" and "1 min 0 s elapsed" in stream.getvalue()
    tick.close()  # after the end: nothing more
    assert len(_parsed(stream.getvalue())) == 11


def test_a_long_silence_still_writes_a_line_every_heartbeat() -> None:
    stream = io.StringIO()
    tick = progress.PlainLines("attacks", 3, stream, heartbeat=0.05)
    deadline = time.monotonic() + 20
    while len(_parsed(stream.getvalue())) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    tick.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 4 and all(line.startswith("[progress] attacks: 0/3 runs") for line in lines)
    assert lines[-1].endswith("(stopped)")
    count = len(lines)
    time.sleep(0.2)
    assert len(stream.getvalue().splitlines()) == count  # closed: the heartbeat stopped


def test_an_empty_stage_says_so_and_a_terminal_gets_a_bar() -> None:
    stream = io.StringIO()
    progress.reporter(stream)("defenses", 0)
    assert stream.getvalue() == "[progress] defenses: nothing to run (0 runs)\n"

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    tick = progress.reporter(terminal)("attacks", 2)
    assert isinstance(tick, progress.Bar)
    tick(failed=True)
    tick()
    assert "attacks" in terminal.getvalue() and "2/2" in terminal.getvalue() and "[progress]" not in terminal.getvalue()


@pytest.mark.parametrize("seconds, text", [(0.4, "0 s"), (59.6, "1 min 0 s"), (125, "2 min 5 s"), (3725, "1 h 2 min")])
def test_format_seconds(seconds: float, text: str) -> None:
    assert progress.format_seconds(seconds) == text


def test_the_cli_writes_progress_lines_when_stderr_is_a_file(world: dict[str, Path], tmp_path: Path) -> None:
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["attacks"], "broken", "attack", "sys.exit(3)\n")
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    log = tmp_path / "run.log"
    with open(log, "w") as stderr:
        done = subprocess.run(
            [sys.executable, str(ROOT / "run_competition.py"), "--input_dir", str(world["data"]), "--attacks_dir",
             str(world["attacks"]), "--defenses_dir", str(world["defenses"]), "--output_dir",
             str(world["results"]), "--min_seconds", "20", "--max_epsilon", "4", "16", "--batch_size", "3"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr, timeout=600, check=False)
    assert done.returncode == 0, log.read_text()
    lines = _parsed(log.read_text())
    attacks = [m for m in lines if m["stage"] == "attacks"]
    defenses = [m for m in lines if m["stage"] == "defenses"]
    # 2 attacks × 2 ε × 2 batches of 3 images = 8 runs, 4 of them failed.
    assert (attacks[0]["done"], attacks[0]["total"], attacks[0]["failed"]) == ("0", "8", "0")
    assert (attacks[-1]["final"], attacks[-1]["done"], attacks[-1]["failed"]) == ("done, ", "8", "4")
    assert all("left" in m["rest"] for m in attacks[:-1])
    assert defenses[0]["done"] == "0" and defenses[-1]["final"] and defenses[-1]["done"] == defenses[-1]["total"]
    assert defenses[-1]["failed"] == "0"
