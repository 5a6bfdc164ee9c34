#!/usr/bin/env bash
# Install routerwatch as services on this host, idempotently (run it again to upgrade or repair):
#   1. deploy/deps.sh: apt packages (bcc, tshark/dumpcap, tcpdump), the kernel-header fallback link
#      only when the running kernel's headers are missing, the virtualenv, bcc linked into it
#   2. a `routerwatch` system user and group for the dashboard (never root)
#   3. the store directory: root:routerwatch, setgid, 2750 (the collector writes, the group reads, others
#      nothing: what is already inside is given the group and loses o+rwx)
#   4. the capture-ring directory (root only, 0700) and /etc/default/routerwatch (kept if present)
#   5. systemd units routerwatch-collector (least capabilities), routerwatch-analyzer (continuous
#      analysis and alerts; no capabilities) and routerwatch-dashboard (read-only view of the store),
#      enabled and (re)started when systemd runs and anything changed
#   6. a fleet (docs/store-and-fleet.md "A fleet in five steps"): every host's collector pointed at one
#      store (--fleet-store, --data-path, the S3 settings) with its credentials installed where only the
#      services read them; --central installs the central part instead of the collector: the analyzer
#      service, the maintenance service and the dashboard exposed with a token
# Usage: sudo deploy/install.sh [--store DIR] [--capture-dir DIR] [--no-start] [--skip-deps] [--root DIR]
#          [--fleet-store SPEC --data-path URL [--s3-endpoint HOST:PORT] [--s3-region R] [--s3-url-style path|vhost]
#           [--s3-use-ssl true|false] [--pgpass FILE] [--aws-credentials FILE] [--secret-file FILE]
#           [--host-id ID] [--central [--dashboard-token-file FILE]]]
#   --root DIR   install into DIR (unit files, /etc/default, store, users in DIR/etc/passwd) without
#                touching this host's services: for packaging and for tests
#   credentials are files, never flags (argv is world-readable): --pgpass (libpq's format), --aws-credentials
#   (the AWS shared credentials file), --secret-file (the fleet's fingerprint key, the same on every host)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$here/.venv}
STORE=/var/lib/routerwatch
CAPTURE=/var/lib/routerwatch-capture
ROOT=""
start=1
deps=1
central=0
FLEET_STORE="" DATA_PATH="" S3_ENDPOINT="" S3_REGION="" S3_URL_STYLE="" S3_USE_SSL="" HOST_ID=""
PGPASS_SRC="" AWS_SRC="" SECRET_SRC="" TOKEN_SRC=""
need() { [ $# -ge 2 ] && [ -n "$2" ] || { echo "install: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --store) need "$@"; STORE=$2; shift 2 ;;
    --capture-dir) need "$@"; CAPTURE=$2; shift 2 ;;
    --root) need "$@"; ROOT=$(cd "$2" && pwd); shift 2 ;;
    --no-start) start=0; shift ;;
    --skip-deps) deps=0; shift ;;
    --fleet-store) need "$@"; FLEET_STORE=$2; shift 2 ;;
    --data-path) need "$@"; DATA_PATH=$2; shift 2 ;;
    --s3-endpoint) need "$@"; S3_ENDPOINT=$2; shift 2 ;;
    --s3-region) need "$@"; S3_REGION=$2; shift 2 ;;
    --s3-url-style) need "$@"; S3_URL_STYLE=$2; shift 2 ;;
    --s3-use-ssl) need "$@"; S3_USE_SSL=$2; shift 2 ;;
    --host-id) need "$@"; HOST_ID=$2; shift 2 ;;
    --pgpass) need "$@"; PGPASS_SRC=$2; shift 2 ;;
    --aws-credentials) need "$@"; AWS_SRC=$2; shift 2 ;;
    --secret-file) need "$@"; SECRET_SRC=$2; shift 2 ;;
    --dashboard-token-file) need "$@"; TOKEN_SRC=$2; shift 2 ;;
    --central) central=1; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "install: unknown option $1" >&2; exit 2 ;;
  esac
done
log() { echo "install: $*" >&2; }
case "$FLEET_STORE" in ""|ducklake:postgres:*) ;; *) log "--fleet-store must be a ducklake:postgres:... catalog URI"; exit 2 ;; esac
if [ -n "$FLEET_STORE" ] && [ -z "$DATA_PATH" ]; then log "--fleet-store needs --data-path (s3://bucket/prefix/ or a shared directory)"; exit 2; fi
case "$FLEET_STORE" in *password=*|*://*:*@*) log "--fleet-store must not hold a password (it would be in the environment file and process listings): use --pgpass FILE"; exit 2 ;; esac
case "$S3_URL_STYLE" in ""|path|vhost) ;; *) log "--s3-url-style is path or vhost"; exit 2 ;; esac
case "$S3_USE_SSL" in ""|true|false) ;; *) log "--s3-use-ssl is true or false"; exit 2 ;; esac
for f in "$PGPASS_SRC" "$AWS_SRC" "$SECRET_SRC" "$TOKEN_SRC"; do
  [ -z "$f" ] || [ -r "$f" ] || { log "cannot read $f"; exit 2; }
done
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
# what an earlier run (or a store restored from a backup) left inside: the dashboard's group, never
# other users (the services write with UMask=0027; routerwatch itself never creates o+rwx files)
stray=$(find "$ROOT$STORE" -mindepth 1 \( ! -group "$gid" -o -perm /o=rwx \) ! -type l -print 2>/dev/null | wc -l)
if [ "$stray" -gt 0 ]; then
  find "$ROOT$STORE" -mindepth 1 ! -type l ! -group "$gid" -exec chgrp "$gid" {} +
  find "$ROOT$STORE" -mindepth 1 ! -type l -perm /o=rwx -exec chmod o-rwx {} +
  log "store $STORE: $stray files and folders given group $gid and no access for others"
  changed=1
fi
ensure_dir "$CAPTURE" 700 0
ensure_dir /var/lib/routerwatch-buffer 700 0
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

# 6. a fleet: settings in the environment file (KEY="value", replaced in place), credentials as files
set_env() {  # KEY VALUE
  local line="$1=\"$2\""
  if grep -qx -- "$line" "$defaults"; then return; fi
  if grep -q "^$1=" "$defaults"; then
    grep -v "^$1=" "$defaults" > "$defaults.tmp"; cat "$defaults.tmp" > "$defaults"; rm -f "$defaults.tmp"
  fi
  printf '%s\n' "$line" >> "$defaults"
  log "environment: $1 set"
  changed=1
}
install_file() {  # SRC DEST MODE OWNER:GROUP: a credential, replaced only when its content changes
  local dest="$ROOT$2"
  mkdir -p "$(dirname "$dest")"
  chmod 755 "$(dirname "$dest")"
  if [ ! -e "$dest" ] || ! cmp -s "$1" "$dest" || [ "$(stat -c '%a %u:%g' "$dest")" != "$3 $4" ]; then
    install -m "$3" -o "${4%%:*}" -g "${4##*:}" "$1" "$dest"
    log "credential $2: installed ($3)"
    changed=1
  fi
}
[ -n "$FLEET_STORE" ] && set_env ROUTERWATCH_STORE "$FLEET_STORE"
[ -n "$DATA_PATH" ] && set_env ROUTERWATCH_DATA_PATH "$DATA_PATH"
[ -n "$S3_ENDPOINT" ] && set_env ROUTERWATCH_S3_ENDPOINT "$S3_ENDPOINT"
[ -n "$S3_REGION" ] && set_env ROUTERWATCH_S3_REGION "$S3_REGION"
[ -n "$S3_URL_STYLE" ] && set_env ROUTERWATCH_S3_URL_STYLE "$S3_URL_STYLE"
[ -n "$S3_USE_SSL" ] && set_env ROUTERWATCH_S3_USE_SSL "$S3_USE_SSL"
[ -n "$HOST_ID" ] && set_env ROUTERWATCH_HOST_ID "$HOST_ID"
if [ -n "$PGPASS_SRC" ]; then
  # libpq ignores a password file others can read: one copy per service user, each 0600
  install_file "$PGPASS_SRC" /etc/routerwatch/pgpass 600 0:0
  install_file "$PGPASS_SRC" /etc/routerwatch/pgpass.routerwatch 600 "$(awk -F: '$1=="routerwatch"{print $3}' "${ROOT:-}/etc/passwd"):$gid"
fi
if [ -n "$AWS_SRC" ]; then
  install_file "$AWS_SRC" /etc/routerwatch/aws-credentials 640 "0:$gid"
  set_env AWS_SHARED_CREDENTIALS_FILE /etc/routerwatch/aws-credentials
fi
if [ $central = 1 ] && [ -z "$SECRET_SRC" ] && [ ! -e "$ROOT/etc/routerwatch/secret.key" ]; then
  SECRET_SRC=$(mktemp); head -c 32 /dev/urandom > "$SECRET_SRC"  # the fleet's key: copy it to every host
  log "fingerprint key generated: copy $ROOT/etc/routerwatch/secret.key to every host (--secret-file)"
fi
if [ -n "$SECRET_SRC" ]; then
  install_file "$SECRET_SRC" /etc/routerwatch/secret.key 640 "0:$gid"
  set_env ROUTERWATCH_SECRET_FILE /etc/routerwatch/secret.key
fi
if [ $central = 1 ]; then
  if [ -n "$TOKEN_SRC" ]; then
    install_file "$TOKEN_SRC" /etc/routerwatch/dashboard.token 640 "0:$gid"
  elif [ ! -e "$ROOT/etc/routerwatch/dashboard.token" ]; then
    t=$(mktemp); head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$t"
    install_file "$t" /etc/routerwatch/dashboard.token 640 "0:$gid"; rm -f "$t"
    log "dashboard token generated in /etc/routerwatch/dashboard.token"
  fi
  set_env ROUTERWATCH_DASHBOARD_ARGS "--host 0.0.0.0 --token-file /etc/routerwatch/dashboard.token"
fi

# 5. systemd units, written only when their content changes
unit_dir="$ROOT/etc/systemd/system"
mkdir -p "$unit_dir"
units_changed=0
if [ $central = 1 ]; then
  units=(routerwatch-analyzer.service routerwatch-maintenance.service routerwatch-dashboard.service)
elif [ -n "$FLEET_STORE" ]; then
  units=(routerwatch-collector.service)  # a fleet host: its analyzer and dashboard are the central ones
else
  units=(routerwatch-collector.service routerwatch-analyzer.service routerwatch-dashboard.service)
fi
for unit in "${units[@]}"; do
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
  systemctl enable "${units[@]}" >/dev/null 2>&1
  if [ $start = 1 ]; then
    if [ $changed = 1 ]; then
      systemctl restart "${units[@]}"
    else
      systemctl start "${units[@]}"
    fi
    for u in "${units[@]}"; do log "service $u: $(systemctl is-active "$u")"; done
  fi
else
  log "systemd is not running here: units installed, not started (run '$VENV/bin/routerwatch up' instead)"
fi
[ $changed = 1 ] && log "done (changes made)" || log "done (nothing to change)"
