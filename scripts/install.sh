#!/usr/bin/env bash
# Set-up shared by ./quickstart.sh and ./test.sh; idempotent (a second call changes nothing and takes seconds).
#
#   scripts/install.sh          # the harness and the submission library with its packages (the "kit" extra)
#   scripts/install.sh --test   # the same plus what the tests need: the "test" extra (pytest, hypothesis,
#                               # torchattacks, selenium, ruff, mypy), headless Chromium for the report's browser
#                               # tests, and docker + gVisor with the local image of the container-sandbox tests
#   scripts/install.sh --referee-test   # the machine set-up of --test, and a venv with the referee and the
#                               # "referee-test" extra (pytest, hypothesis, selenium) but no torch: tests/harness
#
# 1. bubblewrap, the sandbox of every submission run, from apt when this user may install packages (root, or
#    sudo without a password); otherwise a note (the harness then refuses to run submissions unless it is given
#    --sandbox none).
# 2. A virtual environment at $VENV (default: .venv in the repository) with torch, torchvision and this package
#    (editable, so the repository's own harness/ and submission_kit/ are what runs). pip skips what is installed.
#    With --referee-test: no torch (./test.sh runs the referee's tests there, proving they need none).
set -euo pipefail
cd "$(dirname "$0")/.."
extra="[kit]"
testing=""
torch=1
case "${1:-}" in
  --test) extra="[test]"; testing=1 ;;
  --referee-test) extra="[referee-test]"; testing=1; torch="" ;;
esac
venv="${VENV:-.venv}"

# apt calls wait for each other's lock (the container set-up installs packages in the background).
apt_wait=(-o DPkg::Lock::Timeout=600)

as_root() {
  if [[ "$(id -u)" == 0 ]]; then "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo -n "$@"
  else return 1
  fi
}

if ! command -v bwrap >/dev/null; then
  if command -v apt-get >/dev/null && as_root apt-get update -qq && as_root apt-get install -y -qq "${apt_wait[@]}" bubblewrap; then
    echo "install: bubblewrap installed"
  else
    echo "install: bubblewrap not installed (needs apt-get as root): the harness will refuse to run submissions" \
         "unless given --sandbox none (no isolation)" >&2
  fi
fi

if [[ -n "$testing" ]]; then
  if ! { command -v chromium && command -v chromedriver; } >/dev/null; then
    as_root apt-get update -qq && as_root apt-get install -y -qq "${apt_wait[@]}" chromium chromium-driver \
      || echo "install: chromium not installed: the report's browser tests will skip (fail under .ci/run)" >&2
  fi
  # docker, gVisor (runsc) and the local image of the container-sandbox tests (root only; idempotent). It runs in
  # the background while pip installs torch (both take minutes on a fresh machine); its output follows pip's.
  if [[ "$(id -u)" == 0 ]]; then
    images_log="$(mktemp "${TMPDIR:-/tmp}/adv-harness-images.XXXXXX")"
    scripts/build_sandbox_images.sh >"$images_log" 2>&1 &
    images_pid=$!
  else
    echo "install: not root: docker/gVisor not set up (run scripts/build_sandbox_images.sh as root)" >&2
  fi
fi

if [[ ! -x "$venv/bin/python" ]]; then
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian/Ubuntu ship venv support separately.
    rm -rf "$venv"
    version="$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    { as_root apt-get update -qq && { as_root apt-get install -y -qq "${apt_wait[@]}" "python${version}-venv" \
        || as_root apt-get install -y -qq "${apt_wait[@]}" python3-venv; }; } \
      || { echo "install: python3 -m venv failed; install the python3-venv package" >&2; exit 1; }
    python3 -m venv "$venv"
  fi
fi
# pip takes tens of seconds even when everything is installed: skip it when this repository's package metadata
# was installed into this environment before (the install is editable, so code changes need no reinstall).
stamp="$venv/.adv-harness-$( { pwd; echo "$extra"; cat setup.cfg pyproject.toml; } | sha256sum | cut -c1-16)"
if [[ ! -e "$stamp" ]]; then
  # torch 2.14.1 is a CUDA build: about 6 GB in the venv. Say so before pip fails half-way with ENOSPC.
  if [[ -n "$torch" ]] && ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    free_mb="$(df -Pm "$venv" | awk 'NR == 2 {print $4}')"
    if (( free_mb < 7000 )); then
      echo "install: torch needs about 6 GB in $venv and its disk has ${free_mb} MB free: free some space or set" \
           "VENV to a folder on a larger disk" >&2
      exit 1
    fi
  fi
  [[ -z "$torch" ]] || "$venv/bin/python" -m pip install --quiet torch==2.14.1 torchvision==0.29.1
  "$venv/bin/python" -m pip install --quiet -e ".${extra}"
  touch "$stamp"
fi
if [[ -n "${images_pid:-}" ]]; then
  images_ok=1
  wait "$images_pid" || images_ok=""
  cat "$images_log"
  rm -f "$images_log"
  [[ -n "$images_ok" ]] \
    || echo "install: container sandboxes not set up: their tests will skip (fail under .ci/run)" >&2
fi
# Fail here, right after the install output, if a step broke (or if torch got into the referee's environment).
if [[ -n "$torch" ]]; then
  "$venv/bin/python" -c "import harness, torch; print(f'install: ready ($venv/bin/python, torch {torch.__version__})')"
else
  "$venv/bin/python" -c "import harness, importlib.util as u; assert u.find_spec('torch') is None, 'torch is installed'
print('install: ready ($venv/bin/python, no torch)')"
fi
