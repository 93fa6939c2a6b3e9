#!/usr/bin/env bash
# Set-up shared by ./quickstart.sh and ./test.sh; idempotent (a second call changes nothing and takes seconds).
#
#   scripts/install.sh          # the harness and the sample submissions' packages
#   scripts/install.sh --test   # the same plus the test dependencies (pytest, hypothesis, torchattacks)
#
# 1. bubblewrap, the sandbox of every submission run, from apt when this user may install packages (root, or
#    sudo without a password); otherwise a note (the harness then runs plain processes and says so).
# 2. A virtual environment at $VENV (default: .venv in the repository) with torch, torchvision and this package
#    (editable, so the repository's own harness/ is what runs). pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""
[[ "${1:-}" == "--test" ]] && extra="[test]"
venv="${VENV:-.venv}"

as_root() {
  if [[ "$(id -u)" == 0 ]]; then "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo -n "$@"
  else return 1
  fi
}

if ! command -v bwrap >/dev/null; then
  if command -v apt-get >/dev/null && as_root apt-get update -qq && as_root apt-get install -y -qq bubblewrap; then
    echo "install: bubblewrap installed"
  else
    echo "install: bubblewrap not installed (needs apt-get as root): submissions will run without a sandbox" >&2
  fi
fi

if [[ ! -x "$venv/bin/python" ]]; then
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian/Ubuntu ship venv support separately.
    rm -rf "$venv"
    version="$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    { as_root apt-get update -qq && { as_root apt-get install -y -qq "python${version}-venv" \
        || as_root apt-get install -y -qq python3-venv; }; } \
      || { echo "install: python3 -m venv failed; install the python3-venv package" >&2; exit 1; }
    python3 -m venv "$venv"
  fi
fi
# pip takes tens of seconds even when everything is installed: skip it when this repository's package metadata
# was installed into this environment before (the install is editable, so code changes need no reinstall).
stamp="$venv/.adv-harness-$( { pwd; echo "$extra"; cat setup.cfg pyproject.toml; } | sha256sum | cut -c1-16)"
if [[ ! -e "$stamp" ]]; then
  "$venv/bin/python" -m pip install --quiet torch==2.14.1 torchvision==0.29.1
  "$venv/bin/python" -m pip install --quiet -e ".${extra}"
  touch "$stamp"
fi
# Fail here, right after the install output, if a step broke.
"$venv/bin/python" -c "import harness, torch; print(f'install: ready ($venv/bin/python, torch {torch.__version__})')"
