#!/usr/bin/env bash
# Install routerwatch as services on this host, idempotently (run it again to upgrade or repair):
#   1. deploy/deps.sh: apt packages (bcc, tshark/dumpcap, tcpdump), the kernel-header fallback link
#      only when the running kernel's headers are missing, the virtualenv, bcc linked into it
#   2. a `routerwatch` system user and group for the dashboard (never root)
#   3. the store directory: root:routerwatch, setgid, 2750 (the collector writes, the group reads)
#   4. the capture-ring directory (root only, 0700) and /etc/default/routerwatch (kept if present)
#   5. systemd units routerwatch-collector (least capabilities), routerwatch-analyzer (continuous
#      analysis and alerts; no capabilities) and routerwatch-dashboard (read-only view of the store),
#      enabled and (re)started when systemd runs and anything changed
# Usage: sudo deploy/install.sh [--store DIR] [--capture-dir DIR] [--no-start] [--skip-deps] [--root DIR]
#   --root DIR   install into DIR (unit files, /etc/default, store, users in DIR/etc/passwd) without
#                touching this host's services: for packaging and for tests
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$here/.venv}
STORE=/var/lib/routerwatch
CAPTURE=/var/lib/routerwatch-capture
ROOT=""
start=1
deps=1
while [ $# -gt 0 ]; do
  case "$1" in
    --store) STORE=$2; shift 2 ;;
    --capture-dir) CAPTURE=$2; shift 2 ;;
    --root) ROOT=$(cd "$2" && pwd); shift 2 ;;
    --no-start) start=0; shift ;;
    --skip-deps) deps=0; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "install: unknown option $1" >&2; exit 2 ;;
  esac
done
log() { echo "install: $*" >&2; }
[ "$(id -u)" = 0 ] || { log "run as root (sudo $0)"; exit 1; }
changed=0

# 1. packages, venv, bcc (shared with CI and developers)
if [ $deps = 1 ]; then
  VENV=$VENV bash "$here/deploy/deps.sh"
fi

# 2. the dashboard's unprivileged user
if [ -n "$ROOT" ]; then
  for f in passwd group shadow gshadow; do
    [ -e "$ROOT/etc/$f" ] || { mkdir -p "$ROOT/etc"; cp -p "/etc/$f" "$ROOT/etc/$f" 2>/dev/null || touch "$ROOT/etc/$f"; }
  done
  has_user() { grep -q '^routerwatch:' "$ROOT/etc/passwd"; }
  add_user() { useradd --prefix "$ROOT" --system --user-group --no-create-home --home-dir /nonexistent \
                 --shell /usr/sbin/nologin routerwatch; }
else
  has_user() { getent passwd routerwatch >/dev/null; }
  add_user() { useradd --system --user-group --no-create-home --home-dir /nonexistent \
                 --shell /usr/sbin/nologin routerwatch; }
fi
if has_user; then
  log "user routerwatch: present"
else
  add_user
  log "user routerwatch: created"
  changed=1
fi
gid=$(awk -F: '$1=="routerwatch"{print $3}' "${ROOT:-}/etc/group")

# 3-4. directories and defaults
ensure_dir() {  # path mode group
  local d="$ROOT$1"
  mkdir -p "$d"
  if [ "$(stat -c '%a %g' "$d")" != "$2 $3" ]; then
    chgrp "$3" "$d"
    chmod "$2" "$d"
    log "directory $1: mode $2 group $3"
    changed=1
  fi
}
ensure_dir "$STORE" 2750 "$gid"
ensure_dir "$STORE/data" 2750 "$gid"
ensure_dir "$CAPTURE" 700 0
defaults="$ROOT/etc/default/routerwatch"
if [ ! -e "$defaults" ]; then
  mkdir -p "$(dirname "$defaults")"
  cat > "$defaults" <<DEFAULTS
# routerwatch service settings (read by every unit; kept across reinstalls)
ROUTERWATCH_STORE=$STORE
# ROUTERWATCH_HOST_ID=$(hostname)
# extra options for the analyzer, e.g. --webhook https://siem.example/hook
ROUTERWATCH_ANALYZE_ARGS=
DEFAULTS
  chmod 644 "$defaults"
  log "wrote /etc/default/routerwatch"
  changed=1
fi

# 5. systemd units, written only when their content changes
unit_dir="$ROOT/etc/systemd/system"
mkdir -p "$unit_dir"
units_changed=0
UNITS="routerwatch-collector.service routerwatch-analyzer.service routerwatch-dashboard.service"
for unit in $UNITS; do
  want=$(sed -e "s|@VENV@|$VENV|g" -e "s|@STORE@|$STORE|g" -e "s|@CAPTURE@|$CAPTURE|g" "$here/deploy/systemd/$unit")
  if [ ! -e "$unit_dir/$unit" ] || [ "$(cat "$unit_dir/$unit")" != "$want" ]; then
    printf '%s\n' "$want" > "$unit_dir/$unit"
    chmod 644 "$unit_dir/$unit"
    log "unit $unit: written"
    units_changed=1
    changed=1
  else
    log "unit $unit: unchanged"
  fi
done

if [ -z "$ROOT" ] && [ "$(systemctl is-system-running 2>/dev/null || true)" != "offline" ] && command -v systemctl >/dev/null \
   && [ -d /run/systemd/system ]; then
  [ $units_changed = 1 ] && systemctl daemon-reload
  # shellcheck disable=SC2086
  systemctl enable $UNITS >/dev/null 2>&1
  if [ $start = 1 ]; then
    # shellcheck disable=SC2086
    if [ $changed = 1 ]; then
      systemctl restart $UNITS
    else
      systemctl start $UNITS
    fi
    # shellcheck disable=SC2086
    log "services running (collector / analyzer / dashboard): $(systemctl is-active $UNITS | paste -sd/)"
  fi
else
  log "systemd is not running here: units installed, not started (run '$VENV/bin/routerwatch up' instead)"
fi
[ $changed = 1 ] && log "done (changes made)" || log "done (nothing to change)"
