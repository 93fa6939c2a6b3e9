#!/usr/bin/env bash
# One command on a fresh machine: set everything up (scripts/install.sh: bubblewrap where the system allows,
# a virtual environment with torch and the harness), then run the embedded default (20 sample images, every
# folder of attacks/ and defenses/) into results/. Idempotent: a rerun skips the set-up and reuses every
# stored result. Arguments go to run_competition.py (e.g. ./quickstart.sh --only fgsm base).
set -euo pipefail
cd "$(dirname "$0")"
scripts/install.sh
exec "${VENV:-.venv}/bin/python" run_competition.py "$@"
