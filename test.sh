#!/usr/bin/env bash
# One command for the tests: the set-up of ./quickstart.sh plus the test dependencies (scripts/install.sh --test),
# then ruff, mypy and the whole suite: the referee's tests (tests/harness) in a second environment without torch
# ($REFEREE_VENV, default: $VENV-referee; scripts/install.sh --referee-test), which proves that they need none, and
# the others (tests/submission_kit, tests/research) in the full one.
# Idempotent. Arguments go to pytest in the full environment instead (e.g. ./test.sh tests/harness/test_progress.py
# -x). .ci/run calls this with new virtual environments ($VENV, $REFEREE_VENV) every time, so CI proves the declared
# dependencies, not a machine's leftovers.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install.sh --test
venv="${VENV:-.venv}"
"$venv/bin/python" -c "import harness, submission_kit.sdk, research, hypothesis, jinja2, matplotlib, selenium, torch, torchattacks" # fail here, not in collection
# Checks a contributor runs (configured in pyproject.toml): lint everything, type-check the referee strictly.
"$venv/bin/python" -m ruff check .
"$venv/bin/python" -m mypy
if (( $# )); then
  exec "$venv/bin/python" -m pytest -q "$@"
fi
referee_venv="${REFEREE_VENV:-$venv-referee}"
VENV="$referee_venv" scripts/install.sh --referee-test
status=0
"$referee_venv/bin/python" -m pytest -q tests/harness || status=$?
"$venv/bin/python" -m pytest -q tests --ignore=tests/harness || status=$?
exit "$status"
