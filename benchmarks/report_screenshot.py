"""Screenshots of a results folder's HTML report in headless Chromium (the pictures of docs/report.md).

    python run_competition.py                       # the embedded default (minutes), writes results/report/
    python benchmarks/report_screenshot.py          # rebuilds results/report/ (running nothing) and shoots it

Writes ``docs/report_top.png`` (header, warnings, leaderboards) and ``docs/report_heatmaps.png`` (the
attack × defense heatmaps). Needs ``chromium`` and ``chromium-driver`` (Debian) and selenium.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.html_report import build_report  # noqa: E402
from research.browser import headless_chromium  # noqa: E402

#: (page anchor, file name) of each picture.
SHOTS = (("", "report_top.png"), ("#heatmaps", "report_heatmaps.png"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", type=Path, default=ROOT / "results",
                        help="results folder (default: %(default)s)")
    parser.add_argument("--destination", type=Path, default=ROOT / "docs",
                        help="folder of the PNGs (default: %(default)s)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1100)
    args = parser.parse_args()
    page = build_report(args.output_dir)
    args.destination.mkdir(parents=True, exist_ok=True)
    with headless_chromium(width=args.width, height=args.height) as driver:
        for anchor, name in SHOTS:
            driver.get(page.resolve().as_uri() + anchor)
            target = args.destination / name
            if not driver.save_screenshot(str(target)):
                raise SystemExit(f"error: chromium could not write {target}")
            print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
