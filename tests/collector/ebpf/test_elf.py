"""The ELF reader against binutils (readelf, nm) on real files, and on a shared object gcc builds here
with a tail-merged symbol name (GNU ld stores `SSL_read` as the end of `BIO_SSL_read`) and an
imported one."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from collector.ebpf.elf import SHT_DYNSYM, ElfFile

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
needs_binutils = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("readelf") is None,
                                    reason="gcc/binutils missing (deploy/deps.sh --test installs gcc, which brings them)")


def _readelf_sections(path: str) -> list[tuple[str, int, int, int]]:
    out = subprocess.run(["readelf", "-SW", path], capture_output=True, text=True, check=True).stdout
    rows = re.findall(r"^\s*\[\s*\d+\]\s+(\S*)\s+\S+\s+([0-9a-f]{16})\s+([0-9a-f]{6,})\s+([0-9a-f]{6,})", out, re.M)
    return [(name, int(a, 16), int(o, 16), int(s, 16)) for name, a, o, s in rows]


def _nm_defined(path: str, dynamic: bool) -> dict[str, int]:
    args = ["nm", "--defined-only", "-D" if dynamic else "--no-sort", path]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    found: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3:
            found.setdefault(parts[2].split("@")[0], int(parts[0], 16))
    return found


@needs_binutils
@pytest.mark.parametrize("path", [LIBC, sys.executable])
def test_sections_match_readelf(path: str) -> None:
    want = _readelf_sections(path)
    with ElfFile.open(path) as elf:
        got = [(s.name, s.addr, s.offset, s.size) for s in elf.section_list]
    assert got[1:] == want[1:] and len(got) == len(want) > 10  # [0] is the null section


@needs_binutils
def test_dynamic_symbols_match_nm() -> None:
    names = ["malloc", "free", "printf", "getaddrinfo", "memcpy", "no_such_symbol_here"]
    nm = _nm_defined(LIBC, dynamic=True)
    with ElfFile.open(LIBC) as elf:
        got = elf.symbols(names, (SHT_DYNSYM,))
    assert set(got) == {n for n in names if n in nm} == set(names) - {"no_such_symbol_here"}
    assert {n: s.value for n, s in got.items()} == {n: nm[n] for n in got}


@needs_binutils
def test_tail_merged_name_and_file_offsets(tmp_path: Path) -> None:
    src = tmp_path / "lib.c"
    src.write_text('#include <stdio.h>\nint BIO_SSL_read(void) { return 1; }\nint SSL_read(void) { return 2; }\n'
                   'const char rw_marker[] = "ROUTERWATCH-ELF-MARKER";\nvoid rw_say(void) { puts(rw_marker); }\n')
    so = tmp_path / "libtail.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(so), str(src)], check=True)
    data = so.read_bytes()
    assert b"BIO_SSL_read\0" in data and b"\0SSL_read\0" not in data  # ld tail-merged the names
    nm = _nm_defined(str(so), dynamic=False)
    with ElfFile.open(so) as elf:
        got = elf.symbols(["SSL_read", "BIO_SSL_read", "rw_marker"])
        assert {n: s.value for n, s in got.items()} == {n: nm[n] for n in ("SSL_read", "BIO_SSL_read", "rw_marker")}
        off = elf.file_offset(got["rw_marker"].value)
        assert off is not None and elf.data[off : off + 22] == b"ROUTERWATCH-ELF-MARKER"
        assert got["rw_marker"].size == 23
        # imported from libc (an undefined symbol here): not something this file defines
        assert re.search(r"U puts\b", subprocess.run(["nm", "-D", str(so)], capture_output=True, text=True).stdout)
        assert elf.symbols(["puts"]) == {}
        assert elf.file_offset(0xFFFF_FFFF_0000) is None


def test_not_elf_missing_and_truncated_files(tmp_path: Path) -> None:
    (tmp_path / "script").write_bytes(b"#!/bin/sh\necho hi\n")
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "cut").write_bytes(Path(LIBC).read_bytes()[:200])  # the section headers are cut off
    elf32 = bytearray(Path(LIBC).read_bytes()[:4096])
    elf32[4] = 1
    (tmp_path / "elf32").write_bytes(bytes(elf32))
    for name in ("script", "empty", "cut", "elf32", "missing"):
        assert ElfFile.open(tmp_path / name) is None, name
