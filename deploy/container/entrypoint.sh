#!/usr/bin/env bash
# Container start: bcc compiles against kernel headers; the image's Debian headers are linked for the
# running kernel (struct offsets come from the host's BTF, so their version does not matter).
# Then run `routerwatch ARGS` (default from the image: `up --no-dashboard ...`, collector + analyzer).
set -euo pipefail
k=/lib/modules/$(uname -r)
if [ ! -e "$k/build" ]; then
  hdr=$(ls -d /usr/src/linux-headers-*-"$(dpkg --print-architecture)" | sort -V | tail -1)
  mkdir -p "$k"
  ln -sfn "$hdr" "$k/build"
  ln -sfn "${hdr%-*}-common" "$k/source"
fi
mountpoint -q /sys/kernel/tracing 2>/dev/null || mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
exec /opt/routerwatch/.venv/bin/routerwatch "$@"
