"""Binaries that carry their own TLS library, for plaintext uprobes beyond the system libssl.

The live collector attaches its `SSL_*` uprobes to libssl; programs that link OpenSSL statically
are invisible there. Two common cases export the symbols, so the same probes work on them:

* the `node` binary (Node bundles OpenSSL and exports `SSL_read`/`SSL_write`/`_ex` for addons):
  Gemini CLI, Node SDK agents;
* a Python whose `_ssl` is built in with a static OpenSSL (python-build-standalone, as `uv python
  install` ships): its interpreter or libpython defines `SSL_*` itself.

`ssl_binaries()` finds such files (on PATH, beside this Python, and behind running processes) by
reading their ELF symbol tables; pass them to `routerwatch collect --ssl-lib`. A binary that only
*imports* `SSL_*` from libssl is skipped: the libssl probes already cover it.

Go's crypto/tls (`crypto/tls.(*Conn).Write`/`Read`) has Go-ABI probes of its own:
`collector.ebpf.go_tls` finds the functions (symbol table, or `.gopclntab` when stripped) among the
same candidate paths, `--ssl-lib` paths and exec'd files. Stripped Bun (Claude Code, opencode)
and rustls (Codex, Goose) binaries have no usable symbols: proxy mode covers them.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from collector.ebpf.elf import ElfFile

SSL_SYMBOLS = ("SSL_write", "SSL_read", "SSL_write_ex", "SSL_read_ex")
GO_TLS_SYMBOLS = ("crypto/tls.(*Conn).Write", "crypto/tls.(*Conn).Read")


@dataclass
class SslTarget:
    path: str
    kind: str  # 'node' | 'python' | 'other'
    symbols: tuple[str, ...]  # the SSL_* functions it defines


def defined_symbols(path: str | os.PathLike, wanted: Iterable[str]) -> set[str]:
    """Which of `wanted` the ELF file at `path` defines (in .dynsym or .symtab); empty if not ELF64 LE."""
    elf = ElfFile.open(path)
    if elf is None:
        return set()
    with elf:
        try:
            return set(elf.symbols(wanted))
        except ValueError:  # a symbol table beyond the end of the file
            return set()


def _kind(path: str) -> str:
    base = os.path.basename(path)
    if base in ("node", "nodejs"):
        return "node"
    if base.startswith(("python", "libpython")):
        return "python"
    return "other"


def candidate_paths(include_processes: bool = True) -> list[str]:
    """node (and Go agent CLIs such as crush) on PATH, this Python (+ its libpython), uv-managed
    Pythons, and the executables of running processes; each real file once. Agent CLIs are probed
    ahead so that a one-shot run's first request is seen (exec-time discovery comes a drain later)."""
    out: list[str] = []
    for name in ("node", "nodejs", "crush"):
        p = shutil.which(name)
        if p:
            out.append(p)
    out.append(sys.executable)
    libdir = Path(sys.base_prefix) / "lib"
    out += [str(p) for p in libdir.glob("libpython3*.so*")]
    for base in (Path.home() / ".local/share/uv/python", Path("/usr/local/share/uv/python")):
        if base.is_dir():
            out += [str(p) for p in base.glob("*/bin/python3*") if not p.name.endswith("-config")]
            out += [str(p) for p in base.glob("*/lib/libpython3*.so*")]
    if include_processes:
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    out.append(os.readlink(d / "exe"))
                except OSError:
                    continue
    seen: set[tuple[int, int]] = set()
    unique = []
    for p in out:
        try:
            st = os.stat(p)
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key not in seen and Path(p).is_file():
            seen.add(key)
            unique.append(os.path.realpath(p))
    return unique


def ssl_binaries(paths: Iterable[str] | None = None) -> list[SslTarget]:
    """The files among `paths` (default: candidate_paths()) that define SSL_read and SSL_write."""
    targets = []
    for p in candidate_paths() if paths is None else paths:
        syms = defined_symbols(p, SSL_SYMBOLS)
        if {"SSL_read", "SSL_write"} <= syms or {"SSL_read_ex", "SSL_write_ex"} <= syms:
            targets.append(SslTarget(p, _kind(p), tuple(s for s in SSL_SYMBOLS if s in syms)))
    return targets


def go_tls_symbols(path: str | os.PathLike) -> set[str]:
    """crypto/tls read/write symbols of a Go binary that kept its symbol table (empty when stripped)."""
    return defined_symbols(path, GO_TLS_SYMBOLS)
