#!/usr/bin/env bash
# Install what routerwatch needs on a Debian 12 host, idempotently:
#   - apt packages: tshark/dumpcap, tcpdump, bcc (python3-bpfcc), kernel headers, chromium (browser tests),
#     PostgreSQL (fleet tests)
#   - the kernel-header fallback link, only when the running kernel's own headers are missing
#   - the Python virtualenv at $VENV (default: .venv in the checkout) with routerwatch installed
#   - bcc's Python module linked into the venv (it comes from Debian, not PyPI)
# Usage: deploy/deps.sh [--test]   (--test also installs the test extras and the browser)
set -euo pipefail
# The venv is program code that the dashboard's unprivileged user runs: readable by all, whatever the
# admin's umask (with 027 the dashboard unit could not import routerwatch). Data modes are set by
# routerwatch itself (collector/store/permissions.py), not by this umask.
umask 022
here=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$here/.venv}
with_test=0
[ "${1:-}" = "--test" ] && with_test=1

log() { echo "deps: $*" >&2; }

apt_pkgs=(tshark tcpdump bpfcc-tools python3-bpfcc libpcap0.8 iproute2 util-linux curl ca-certificates python3-venv)
# golang-go: builds the Go TLS uprobe test agent; postgresql: the fleet tests' catalog (Debian's server,
# started by the tests themselves on a loopback port in a temporary directory, never the packaged cluster)
[ $with_test = 1 ] && apt_pkgs+=(chromium nodejs golang-go postgresql)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# bcc compiles BPF C against kernel headers. Without the running kernel's headers, link Debian's
# packaged ones: they compile, and the programs only read tracepoint arguments and user memory
# (struct offsets from mismatched headers would be wrong, so nothing reads kernel structs).
kdir=/lib/modules/$(uname -r)
# (an earlier fallback link whose source half lacks linux/kconfig.h is repaired; real headers are left alone)
fallback_broken=0
if [ -L "$kdir/build" ] && ! readlink "$kdir/build" | grep -q -- "$(uname -r)" \
   && [ ! -e "$kdir/source/include/linux/kconfig.h" ] && [ ! -e "$kdir/build/include/linux/kconfig.h" ]; then
  fallback_broken=1
fi
if [ ! -e "$kdir/build" ] || [ $fallback_broken = 1 ]; then
  if ! ls -d /usr/src/linux-headers-*-amd64 >/dev/null 2>&1 && ! ls -d /usr/src/linux-headers-*-arm64 >/dev/null 2>&1; then
    log "installing Debian's kernel headers as a fallback"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q linux-headers-"$(dpkg --print-architecture)" >/dev/null
  fi
  hdr=$(ls -d /usr/src/linux-headers-*-"$(dpkg --print-architecture)" | sort -V | tail -1)
  log "no headers for $(uname -r): linking $hdr (fallback)"
  mkdir -p "$kdir"
  ln -sfn "$hdr" "$kdir/build"
  # Debian splits the tree: arch-specific (build) and common (source, where bcc finds linux/kconfig.h)
  common=${hdr%-*}-common
  [ -d "$common" ] || common=$hdr
  ln -sfn "$common" "$kdir/source"
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
target="$here"
[ $with_test = 1 ] && target="$here[test]"
if ! "$VENV/bin/pip" install -q -e "$target" > "$VENV/pip-install.log" 2>&1; then
  grep -v -E "^WARNING: Location" "$VENV/pip-install.log" >&2
  log "pip install failed"; exit 1
fi
"$VENV/bin/python" -c "import collector, duckdb" || { log "python environment is broken"; exit 1; }
# the package's bytecode, now: an editable install leaves it to the first run, and where
# PYTHONDONTWRITEBYTECODE is set no run writes it (every command would compile its modules again)
"$VENV/bin/python" -m compileall -q "$here/collector" "$here/analyzer" "$here/dashboard" >/dev/null \
  || log "could not compile the package's bytecode (commands still run, a little slower to start)"

# bcc's Python module is Debian's; link only it into the venv (system-site-packages would pull in everything).
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ -d /usr/lib/python3/dist-packages/bcc ] && [ ! -e "$site/bcc" ]; then
  ln -s /usr/lib/python3/dist-packages/bcc "$site/bcc"
fi
# Real agent CLIs for the end-to-end tests (tests/e2e/test_agents_*.py), pinned, into a cache dir
# that git ignores (they ship native binaries through npm; nothing is downloaded at test time).
if [ $with_test = 1 ]; then
  AGENTS_DIR=${ROUTERWATCH_AGENTS_DIR:-$here/.cache/agents}
  agent_pkgs=(@anthropic-ai/claude-code@2.1.332 @openai/codex@0.171.0 @google/gemini-cli@0.61.0 opencode-ai@1.18.33)
  if ! command -v npm >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm >/dev/null
  fi
  if [ ! -x "$AGENTS_DIR/node_modules/.bin/claude" ] || [ ! -x "$AGENTS_DIR/node_modules/.bin/codex" ] \
     || [ ! -x "$AGENTS_DIR/node_modules/.bin/gemini" ] || [ ! -x "$AGENTS_DIR/node_modules/.bin/opencode" ] \
     || ! grep -q '"version": "2.1.332"' "$AGENTS_DIR/node_modules/@anthropic-ai/claude-code/package.json" 2>/dev/null; then
    log "npm install ${agent_pkgs[*]} -> $AGENTS_DIR"
    mkdir -p "$AGENTS_DIR"
    npm install --prefix "$AGENTS_DIR" --no-audit --no-fund --loglevel=error "${agent_pkgs[@]}" >/dev/null \
      || { log "npm install of the agent CLIs failed"; exit 1; }
  fi
fi
# A Python with _ssl built in and OpenSSL static (python-build-standalone layout) for the uprobe
# tests (tests/e2e/test_static_ssl_python.py): built from Debian's sources in seconds, once.
if [ $with_test = 1 ]; then
  bash "$here/deploy/static_ssl_python.sh" "$here/.cache/static-ssl-python"
fi
log "ok: $("$VENV/bin/routerwatch" --version)"
