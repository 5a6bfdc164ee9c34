#!/usr/bin/env bash
# Install the peers of bench/ingest.py for the bench only; the product needs none of them.
#   sudo bash bench/install_peers.sh            # Suricata 7 (bookworm-backports) + nfstream
#   sudo bash bench/install_peers.sh suricata   # one of them: suricata | nfstream
# Idempotent. Suricata is unpacked into bench/.peers/suricata (gitignored) from Debian's
# bookworm-backports through a private apt sources list and private apt state, so backports is
# never enabled system-wide and nothing is installed with dpkg. Run it with
#   LD_LIBRARY_PATH=bench/.peers/suricata/usr/lib/x86_64-linux-gnu bench/.peers/suricata/usr/bin/suricata
# (bench/ingest.py does this). nfstream is pip-installed into the project's .venv.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
PEERS=$HERE/.peers
NFSTREAM_VERSION=6.6.0   # the version PERF.md measured
SURICATA_MAJOR=7
# A mirror apt already reaches: the URI of the system's bookworm source, or Debian's usual one.
MIRROR=${DEBIAN_MIRROR:-$(grep -rhs '^URIs:.*debian *$' /etc/apt/sources.list.d/*.sources | head -1 | awk '{print $2}')}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
want=${*:-suricata nfstream}

install_suricata() {
  local dest=$PEERS/suricata
  if [ -x "$dest/usr/bin/suricata" ] &&
     LD_LIBRARY_PATH=$dest/usr/lib/x86_64-linux-gnu "$dest/usr/bin/suricata" -V 2>/dev/null | grep -q "version $SURICATA_MAJOR\."; then
    echo "suricata: already in $dest ($(LD_LIBRARY_PATH=$dest/usr/lib/x86_64-linux-gnu "$dest/usr/bin/suricata" -V))"
    return
  fi
  local apt=$PEERS/apt
  mkdir -p "$apt/etc/preferences.d" "$apt/lists/partial" "$apt/archives/partial" "$apt/debs"
  # the system's sources (so dependencies resolve against what this machine has) plus backports,
  # in a private list with private state: the system's apt lists and config stay as they were
  {
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bookworm main"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bookworm-updates main"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bookworm-backports main"
  } > "$apt/etc/sources.list"
  local opts=(-o "Dir::Etc::sourcelist=$apt/etc/sources.list" -o "Dir::Etc::sourceparts=-"
              -o "Dir::Etc::preferencesparts=$apt/etc/preferences.d"
              -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache::Archives=$apt/archives"
              -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" -o "APT::Sandbox::User=root")
  echo "suricata: apt-get update with a private sources list naming bookworm-backports ($MIRROR)"
  apt-get "${opts[@]}" -qq update
  # what installing suricata from backports would install on this machine (nothing is installed):
  # suricata and its libraries, libhtp2 from backports too (suricata 7.0.10 needs libhtp2 >= 0.5.50)
  mapfile -t pkgs < <(apt-get "${opts[@]}" -s install -t bookworm-backports suricata libhtp2 |
                      awk '/^Inst /{print $2}')
  if [ "${#pkgs[@]}" -eq 0 ]; then
    echo "suricata: apt lists no packages to fetch for suricata from bookworm-backports" >&2
    exit 1
  fi
  # packages already installed system-wide are not listed; suricata and libhtp2 always are
  for p in suricata libhtp2; do
    printf '%s\n' "${pkgs[@]}" | grep -qx "$p" || pkgs+=("$p")
  done
  echo "suricata: downloading ${pkgs[*]}"
  (cd "$apt/debs" && rm -f ./*.deb &&
   apt-get "${opts[@]}" -qq download $(for p in "${pkgs[@]}"; do
       apt-cache "${opts[@]}" policy "$p" | awk -v p="$p" '/Candidate:/{print p"="$2}'; done))
  # the backports candidate for suricata and libhtp2 (the default target would pick bookworm's)
  (cd "$apt/debs" && for p in suricata libhtp2; do
     v=$(apt-cache "${opts[@]}" madison "$p" | awk -F'|' '/bookworm-backports/{gsub(/ /,"",$2); print $2; exit}')
     [ -n "$v" ] && { rm -f "${p}"_*.deb; apt-get "${opts[@]}" -qq download "$p=$v"; }
   done)
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  for deb in "$apt/debs"/*.deb; do dpkg -x "$deb" "$dest.tmp"; done
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
  echo "suricata: $(LD_LIBRARY_PATH=$dest/usr/lib/x86_64-linux-gnu "$dest/usr/bin/suricata" -V) in $dest"
}

install_nfstream() {
  local py=$ROOT/.venv/bin/python
  [ -x "$py" ] || { echo "nfstream: no $py (create the project's .venv first)" >&2; exit 1; }
  if "$py" -c "import nfstream, sys; sys.exit(nfstream.__version__ != '$NFSTREAM_VERSION')" 2>/dev/null; then
    echo "nfstream: $NFSTREAM_VERSION already in .venv"
    return
  fi
  "$py" -m pip install -q "nfstream==$NFSTREAM_VERSION"
  echo "nfstream: $("$py" -c 'import nfstream; print(nfstream.__version__)') in .venv"
}

for w in $want; do
  case $w in
    suricata) install_suricata ;;
    nfstream) install_nfstream ;;
    *) echo "unknown peer '$w' (suricata | nfstream)" >&2; exit 2 ;;
  esac
done
