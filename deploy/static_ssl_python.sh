#!/usr/bin/env bash
# Build a Python 3.11 whose `_ssl` is built into the executable with OpenSSL linked statically: the
# layout of python-build-standalone (what `uv python install` ships), where SSL_read/SSL_write live
# in the python binary itself and no libssl.so is loaded. The uprobe tests use it to show the live
# collector's SSL_* probes find and decode such a Python (tests/e2e/test_static_ssl_python.py);
# python-build-standalone itself is only downloadable from GitHub.
#
# Ingredients, all from Debian: CPython 3.11's Modules/_ssl.c (the python3.11 source package's
# upstream tarball, `apt-get source`), Debian's static libpython (libpython3.11-dev) and OpenSSL's
# static libssl.a/libcrypto.a (libssl-dev). A 10-line main() registers _ssl as a built-in module and
# runs Py_BytesMain; the standard library is Debian's /usr/lib/python3.11. Compiling takes seconds.
#
# Usage: deploy/static_ssl_python.sh OUT_DIR   -> OUT_DIR/bin/python3.11 (nothing to do if present)
set -euo pipefail
out=${1:?usage: deploy/static_ssl_python.sh OUT_DIR}
[ -x "$out/bin/python3.11" ] && exit 0
log() { echo "static-ssl-python: $*" >&2; }

pkgs=(gcc libc6-dev libssl-dev libpython3.11-dev libexpat1-dev zlib1g-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
update=$([ ${#missing[@]} -gt 0 ] && echo 1 || echo 0)
if ! apt-cache showsrc python3.11 2>/dev/null | grep -q '^Package: python3.11'; then
  log "enabling Debian source packages (deb-src) for apt-get source"
  cat > /etc/apt/sources.list.d/routerwatch-deb-src.sources <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  update=1
fi
if [ "$update" = 1 ]; then
  apt-get update -q >/dev/null
fi
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

t0=$(date +%s)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get source --download-only -q "python3.11/$codename" >/dev/null 2>&1) || true
orig=$(ls "$tmp"/python3.11_3.11.*.orig.tar.* 2>/dev/null | head -1)
[ -n "$orig" ] || { log "apt-get source python3.11 fetched no upstream tarball"; exit 1; }
tar xf "$orig" -C "$tmp" --wildcards 'Python-3.11.*/Modules/*'
mods=$(ls -d "$tmp"/Python-3.11.*/Modules)

cat > "$tmp/main.c" <<'EOF'
/* python with _ssl built in (OpenSSL linked statically), like python-build-standalone */
#include <Python.h>
PyMODINIT_FUNC PyInit__ssl(void);
int main(int argc, char **argv) {
    if (PyImport_AppendInittab("_ssl", PyInit__ssl) < 0) return 1;
    return Py_BytesMain(argc, argv);
}
EOF
# Debian's pyconfig.h promises <bluetooth/bluetooth.h> (socketmodule.h includes it); _ssl needs none of it
printf '#include <pyconfig.h>\n#undef HAVE_BLUETOOTH_BLUETOOTH_H\n#undef HAVE_BLUETOOTH_H\n' > "$tmp/nobt.h"
inc=/usr/include/python3.11
cfg=$(ls -d /usr/lib/python3.11/config-3.11-*)
gcc -O2 -fPIC -I"$inc" -I"$mods" -include "$tmp/nobt.h" -DPy_BUILD_CORE_MODULE -c "$mods/_ssl.c" -o "$tmp/_ssl.o"
gcc -O2 -fPIC -I"$inc" -c "$tmp/main.c" -o "$tmp/main.o"
mkdir -p "$out/bin"
# --export-dynamic: extension modules resolve Py* from the executable (as in python-build-standalone)
gcc -o "$out/bin/python3.11.tmp" "$tmp/main.o" "$tmp/_ssl.o" -Wl,--export-dynamic -L"$cfg" \
  -l:libpython3.11-pic.a -l:libssl.a -l:libcrypto.a -lexpat -lz -lm -ldl -lpthread -lutil
mv "$out/bin/python3.11.tmp" "$out/bin/python3.11"
"$out/bin/python3.11" -c 'import _ssl, sys; assert "_ssl" in sys.builtin_module_names, "not built in"'
if ldd "$out/bin/python3.11" | grep -q libssl; then log "libssl.so is linked: not static"; exit 1; fi
log "built $out/bin/python3.11 in $(( $(date +%s) - t0 )) s"
