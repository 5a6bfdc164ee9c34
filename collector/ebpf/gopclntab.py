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
from dataclasses import dataclass, field

import numpy as np

PCLN_MAGIC_118 = 0xFFFFFFF0  # Go 1.18, 1.19
PCLN_MAGIC_120 = 0xFFFFFFF1  # Go 1.20+
PCLN_MAGICS_OLD = {0xFFFFFFFB: "go1.2-1.15", 0xFFFFFFFA: "go1.16-1.17"}
_BUILDINFO_MAGIC = b"\xff Go buildinf:"
_SYM = np.dtype([("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"), ("value", "<u8"),
                 ("size", "<u8")])
_SHT_SYMTAB = 2
_EM = {62: "amd64", 183: "arm64", 3: "386", 40: "arm"}


class GoBinaryError(Exception):
    """The file is a Go binary whose layout this module does not read (the message says why)."""


@dataclass
class Section:
    name: str
    type: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int


@dataclass
class GoFunction:
    name: str
    entry: int  # virtual address
    size: int
    source: str  # 'symtab' | 'pclntab'


@dataclass
class GoBinary:
    """An mmapped Go ELF binary. Use as a context manager; `go_binary(path)` returns None for non-Go files."""

    path: str
    arch: str
    elf_type: int  # 2 EXEC, 3 DYN (PIE)
    sections: dict[str, Section]
    _m: mmap.mmap = field(repr=False)
    _f: object = field(repr=False)

    def __enter__(self) -> GoBinary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._m.close()
        self._f.close()  # type: ignore[attr-defined]

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
    def file_offset(self, vaddr: int) -> int | None:
        for s in self.sections.values():
            if s.type != 8 and s.addr and s.addr <= vaddr < s.addr + s.size:  # 8: NOBITS
                return s.offset + vaddr - s.addr
        return None

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
        s = self.sections[".symtab"]
        strtab = self.sections.get(".strtab")  # Go's linker links .symtab to .strtab
        if strtab is None:
            return {}
        m = self._m
        syms = np.frombuffer(m, dtype=_SYM, count=s.size // _SYM.itemsize, offset=s.offset)
        out: dict[str, GoFunction] = {}
        for name in names:
            needle = b"\0" + name.encode() + b"\0"
            pos = m.find(needle, strtab.offset, strtab.offset + strtab.size)
            while pos >= 0:
                idx = np.flatnonzero((syms["name"] == pos + 1 - strtab.offset) & (syms["shndx"] != 0))
                if len(idx):
                    sym = syms[idx[0]]
                    out[name] = GoFunction(name, int(sym["value"]), int(sym["size"]), "symtab")
                    break
                pos = m.find(needle, pos + 1, strtab.offset + strtab.size)
        return out

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
    try:
        f = open(path, "rb")
    except OSError:
        return None
    try:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        f.close()
        return None
    try:
        if m[:4] != b"\x7fELF" or m[4] != 2 or m[5] != 1:
            raise ValueError("not ELF64 LE")
        etype, machine = struct.unpack_from("<HH", m, 0x10)
        shoff, = struct.unpack_from("<Q", m, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", m, 0x3A)
        raw = [struct.unpack_from("<IIQQQQIIQQ", m, shoff + i * shentsize) for i in range(shnum)]
        names_off = raw[shstrndx][4]
        sections: dict[str, Section] = {}
        for name, stype, _fl, addr, off, size, link, _info, _al, entsize in raw:
            end = m.find(b"\0", names_off + name)
            sname = m[names_off + name : end].decode(errors="replace")
            sections.setdefault(sname, Section(sname, stype, addr, off, size, link, entsize))
        if ".gopclntab" not in sections and ".go.buildinfo" not in sections:
            raise ValueError("not Go")
    except (ValueError, struct.error, IndexError):
        m.close()
        f.close()
        return None
    return GoBinary(os.path.realpath(path), _EM.get(machine, f"em{machine}"), etype, sections, m, f)
