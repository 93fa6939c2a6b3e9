#!/usr/bin/env bash
# Set up the container sandboxes (--sandbox docker / --sandbox gvisor) on a Debian machine, as root:
#   1. apt-get install docker.io runsc debootstrap (skipped when present);
#   2. register gVisor's runsc as a docker runtime without network in /etc/docker/daemon.json;
#   3. start dockerd when no engine answers (systemd when it runs, else in the background, log in /var/log);
#   4. build the local image adv-harness/python-numpy-pil:bookworm (Debian bookworm minbase + python3, numpy,
#      Pillow; no registry needed: debootstrap from the Debian mirror, then docker import). ~70 s, ~300 MB.
# Idempotent: every step that is already done is skipped. The tests use the image (tests/harness/test_sandbox_containers.py).
set -euo pipefail

IMAGE="${ADV_HARNESS_IMAGE:-adv-harness/python-numpy-pil:bookworm}"
SUITE="${ADV_HARNESS_SUITE:-bookworm}"
MIRROR="${ADV_HARNESS_MIRROR:-http://deb.debian.org/debian}"
DAEMON_JSON=/etc/docker/daemon.json

say() { echo "build_sandbox_images: $*"; }

if [ "$(id -u)" != 0 ]; then
  say "run as root (it installs packages and starts dockerd)" >&2
  exit 1
fi

# Ask for the engine, not for a client: a machine image may ship a docker client (e.g. /usr/local/bin/docker)
# with no engine behind it. An engine that already answers (docker info) is used as it is.
missing=()
docker info >/dev/null 2>&1 || command -v dockerd >/dev/null || missing+=(docker.io)
command -v runsc >/dev/null || missing+=(runsc)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
fi

# The runsc runtime entry (kept alongside whatever else daemon.json holds).
mkdir -p /etc/docker
runsc_path="$(command -v runsc)"
changed="$(python3 - "$DAEMON_JSON" "$runsc_path" <<'EOF'
import json, sys
from pathlib import Path
path, runsc = Path(sys.argv[1]), sys.argv[2]
config = json.loads(path.read_text() or "{}") if path.exists() else {}
wanted = {"path": runsc, "runtimeArgs": ["--network=none"]}
if config.get("runtimes", {}).get("runsc") != wanted:
    config.setdefault("runtimes", {})["runsc"] = wanted
    path.write_text(json.dumps(config, indent=2) + "\n")
    print("yes")
EOF
)"

if ! docker info >/dev/null 2>&1; then
  say "starting dockerd"
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    systemctl start docker
  else
    nohup dockerd >/var/log/adv-harness-dockerd.log 2>&1 &
  fi
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { say "dockerd did not start; see /var/log/adv-harness-dockerd.log" >&2; exit 1; }
elif [ "$changed" = yes ]; then
  say "daemon.json changed: reloading dockerd's configuration"
  pkill_target="$(pidof dockerd || true)"
  if [ -n "$pkill_target" ]; then kill -HUP $pkill_target; sleep 2; fi
fi
docker info --format '{{json .Runtimes}}' | grep -q '"runsc"' \
  || { say "docker does not list the runsc runtime; check $DAEMON_JSON" >&2; exit 1; }

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  say "$IMAGE exists"
else
  say "building $IMAGE from Debian $SUITE (debootstrap minbase + python3, numpy, Pillow)"
  rootfs="$(mktemp -d /tmp/adv-harness-rootfs.XXXXXX)"
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase --include=python3,python3-numpy,python3-pil "$SUITE" "$rootfs" "$MIRROR" \
    >"$rootfs.log" 2>&1 || { say "debootstrap failed; see $rootfs.log" >&2; exit 1; }
  # Nothing a run needs: package caches and lists, documentation, locales, man pages.
  rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/info/*
  tar -C "$rootfs" -c . | docker import -c 'CMD ["python3"]' -c 'ENV LANG=C.UTF-8' - "$IMAGE" >/dev/null
  rm -f "$rootfs.log"
  say "built $IMAGE ($(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
fi
