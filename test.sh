#!/usr/bin/env bash
# One command for the tests: the set-up of ./quickstart.sh plus the test dependencies, then the whole suite.
# Idempotent. Arguments go to pytest (e.g. ./test.sh tests/test_progress.py -x). .ci/run calls this with a new
# virtual environment ($VENV) every time, so CI proves the declared dependencies, not a machine's leftovers.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install.sh --test
venv="${VENV:-.venv}"
"$venv/bin/python" -c "import harness, hypothesis, torch, torchattacks" # fail here, not in collection
exec "$venv/bin/python" -m pytest -q "$@"
