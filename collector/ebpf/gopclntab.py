"""Read what a Go binary says about itself: its Go version (buildinfo) and where its functions are.

Functions are found in the ELF symbol table when the binary keeps one, else in Go's own function
table, `.gopclntab`, which the linker always writes because the runtime needs it (stack traces, GC
stack maps): `-ldflags='-s -w'` strips `.symtab` and DWARF, never `.gopclntab`. Only the Go 1.18+
layout (magic 0xfffffff0 for 1.18-1.19, 0xfffffff1 for 1.20+) is parsed:

    pcHeader: magic u32, pad u8 u8, minLC u8, ptrSize u8, nfunc int, nfiles uint, textStart uintptr,
              funcnameOffset, cuOffset, filetabOffset, pctabOffset, pclnOffset (uintptr, from the header)
    functab (at pclnOffset): nfunc+1 pairs (entryOff u32 from textStart, funcOff u32 from functab)
    _func (at functab + funcOff): entryOff u32, nameOff i32 (into funcnametab), ...

A function ends where the next one starts (the last pair is the end of text). The Go source of
this layout is `runtime/symtab.go` (`pcHeader`, `_func`) and `debug/gosym/pclntab.go`.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass

import numpy as np

from collector.ebpf.elf import SHT_SYMTAB, ElfFile

PCLN_MAGIC_118 = 0xFFFFFFF0  # Go 1.18, 1.19
PCLN_MAGIC_120 = 0xFFFFFFF1  # Go 1.20+
PCLN_MAGICS_OLD = {0xFFFFFFFB: "go1.2-1.15", 0xFFFFFFFA: "go1.16-1.17"}
_BUILDINFO_MAGIC = b"\xff Go buildinf:"
_EM = {62: "amd64", 183: "arm64", 3: "386", 40: "arm"}


class GoBinaryError(Exception):
    """The file is a Go binary whose layout this module does not read (the message says why)."""


@dataclass
class GoFunction:
    name: str
    entry: int  # virtual address
    size: int
    source: str  # 'symtab' | 'pclntab'


class GoBinary(ElfFile):
    """An mmapped Go ELF binary. Use as a context manager; `go_binary(path)` returns None for non-Go files."""

    @property
    def arch(self) -> str:
        return _EM.get(self.machine, f"em{self.machine}")

    @property
    def has_symtab(self) -> bool:
        return ".symtab" in self.sections

    # -- buildinfo ---------------------------------------------------------------------------------
    def buildinfo(self) -> tuple[str | None, str]:
        """(Go version such as 'go1.19.8', module/build info text) from `.go.buildinfo`."""
        s = self.sections.get(".go.buildinfo")
        if s is None:
            return None, ""
        m = self._m
        hdr = m[s.offset : s.offset + 32]
        if not hdr.startswith(_BUILDINFO_MAGIC):
            return None, ""
        ptr_size, flags = hdr[14], hdr[15]
        if flags & 2:  # Go 1.18+: varint-prefixed strings inline after the header
            pos = s.offset + 32
            version, pos = _varint_str(m, pos)
            modinfo, _ = _varint_str(m, pos)
            return version.decode(errors="replace"), modinfo.decode(errors="replace")
        # older: pointers to Go string headers (ptr, len), little-endian for flags & 1 == 0
        fmt = "<Q" if ptr_size == 8 else "<I"
        out = []
        for i in range(2):
            (p,) = struct.unpack_from(fmt, m, s.offset + 16 + i * ptr_size)
            off = self.file_offset(p)
            if off is None:
                out.append(b"")
                continue
            sp, sl = struct.unpack_from(fmt * 2 if ptr_size == 4 else "<QQ", m, off)
            so = self.file_offset(sp)
            out.append(m[so : so + sl] if so is not None and sl < 1 << 20 else b"")
        return (out[0].decode(errors="replace") or None), out[1].decode(errors="replace")

    # -- addresses ---------------------------------------------------------------------------------
    def code(self, fn: GoFunction) -> bytes:
        off = self.file_offset(fn.entry)
        if off is None:
            raise GoBinaryError(f"{fn.name} at {fn.entry:#x} is outside every section")
        return self._m[off : off + fn.size]

    # -- functions ---------------------------------------------------------------------------------
    def pclntab_magic(self) -> int | None:
        s = self.sections.get(".gopclntab")
        if s is None or s.size < 8:
            return None
        return struct.unpack_from("<I", self._m, s.offset)[0]

    def functions(self, names: list[str]) -> dict[str, GoFunction]:
        """The named functions, from .symtab when present, else from .gopclntab."""
        found = self._from_symtab(names) if self.has_symtab else {}
        missing = [n for n in names if n not in found]
        if missing and ".gopclntab" in self.sections:
            found.update(self._from_pclntab(missing))
        return found

    def _from_symtab(self, names: list[str]) -> dict[str, GoFunction]:
        return {n: GoFunction(n, sym.value, sym.size, "symtab")
                for n, sym in self.symbols(names, (SHT_SYMTAB,)).items()}

    def _from_pclntab(self, names: list[str]) -> dict[str, GoFunction]:
        s = self.sections[".gopclntab"]
        m = self._m
        base = s.offset
        magic = self.pclntab_magic()
        if magic not in (PCLN_MAGIC_118, PCLN_MAGIC_120):
            era = PCLN_MAGICS_OLD.get(magic or 0, f"unknown magic {magic:#x}" if magic else "no pclntab")
            raise GoBinaryError(f"pclntab of {era} is not read (only the Go 1.18+ layout)")
        ptr = m[base + 7]
        if ptr != 8:
            raise GoBinaryError(f"pclntab pointer size {ptr} (only 64-bit binaries)")
        nfunc, _nfiles, text_start, funcname_off, _cu, _file, _pctab, pcln_off = struct.unpack_from("<8Q", m, base + 8)
        if not text_start:  # PIE: textStart is filled by a dynamic relocation; runtime.text starts .text
            text_start = self.sections[".text"].addr if ".text" in self.sections else 0
        tab = np.frombuffer(m, dtype="<u4", count=(s.size // 4), offset=base)  # pclntab is 8-aligned
        ft = pcln_off // 4
        pairs = tab[ft : ft + 2 * (nfunc + 1)].reshape(nfunc + 1, 2)
        func_u32 = (pcln_off + pairs[:nfunc, 1].astype(np.int64)) // 4  # _func structs are 4-aligned
        name_offs = tab[func_u32 + 1].view("<i4")
        out: dict[str, GoFunction] = {}
        for name in names:
            needle = b"\0" + name.encode() + b"\0"
            lo, hi = base + funcname_off, base + s.size
            pos = m.find(needle, lo, hi)
            while pos >= 0:
                idx = np.flatnonzero(name_offs == pos + 1 - lo)
                if len(idx):
                    i = int(idx[0])
                    entry = text_start + int(pairs[i, 0])
                    out[name] = GoFunction(name, entry, int(pairs[i + 1, 0]) - int(pairs[i, 0]), "pclntab")
                    break
                pos = m.find(needle, pos + 1, hi)
        return out


def _varint_str(m: mmap.mmap, pos: int) -> tuple[bytes, int]:
    n = shift = 0
    while True:
        b = m[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return m[pos : pos + n], pos + n


def go_binary(path: str | os.PathLike) -> GoBinary | None:
    """Open `path` as a Go ELF64 little-endian binary; None if it is not one (or unreadable)."""
    g = GoBinary.open(path)
    if g is not None and ".gopclntab" not in g.sections and ".go.buildinfo" not in g.sections:
        g.close()
        return None
    return g
