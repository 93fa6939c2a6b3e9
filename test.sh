#!/usr/bin/env bash
# One command for the tests: the set-up of ./quickstart.sh plus the test dependencies (scripts/install.sh --test),
# then ruff, mypy and the whole suite.
# Idempotent. Arguments go to pytest (e.g. ./test.sh tests/test_progress.py -x). .ci/run calls this with a new
# virtual environment ($VENV) every time, so CI proves the declared dependencies, not a machine's leftovers.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install.sh --test
venv="${VENV:-.venv}"
"$venv/bin/python" -c "import harness, submission_kit.sdk, research, hypothesis, jinja2, matplotlib, selenium, torch, torchattacks" # fail here, not in collection
# Checks a contributor runs (configured in pyproject.toml): lint everything, type-check the referee strictly.
"$venv/bin/python" -m ruff check .
"$venv/bin/python" -m mypy
exec "$venv/bin/python" -m pytest -q "$@"
