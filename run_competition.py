#!/usr/bin/env python3
"""Run the competition: every attack in attacks/ against every defense in defenses/ on sample_data/.

    python run_competition.py                     # the embedded default, results in results/
    python run_competition.py validate attacks/fgsm
    python run_competition.py score --output_dir results
    python run_competition.py --help
"""

import sys
from pathlib import Path

from harness.cli import main

if __name__ == "__main__":
    sys.exit(main(root=Path(__file__).resolve().parent))
