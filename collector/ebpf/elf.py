"""ELF64 little-endian files read through mmap: section headers, defined symbols, addresses.

The collector's one ELF reader. Uprobe targets are found with it (`targets`: which `SSL_*` a
binary defines itself) and Go binaries are read with it (`gopclntab`: buildinfo, functions by
symbol or by `.gopclntab`). Only what uprobes need is read: section headers and symbol tables,
never program code beyond the bytes asked for.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

SHT_SYMTAB, SHT_NOBITS, SHT_DYNSYM = 2, 8, 11
SYM = np.dtype([("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"), ("value", "<u8"),
                ("size", "<u8")])  # Elf64_Sym
_SHDR = struct.Struct("<IIQQQQIIQQ")  # Elf64_Shdr
_E = TypeVar("_E", bound="ElfFile")


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
class Symbol:
    name: str
    value: int  # virtual address
    size: int


class ElfFile:
    """An mmapped ELF64 LE file. Use as a context manager; `ElfFile.open(path)` returns None for
    anything else (not ELF64 LE, unreadable, damaged section headers)."""

    def __init__(self, path: str, machine: int, elf_type: int, sections: list[Section], m: mmap.mmap,
                 f: object) -> None:
        self.path = path
        self.machine = machine
        self.elf_type = elf_type  # 2 EXEC, 3 DYN (PIE, shared object)
        self.section_list = sections  # in header order: `link` fields index it
        self.sections: dict[str, Section] = {}  # by name, the first of each name
        for s in sections:
            self.sections.setdefault(s.name, s)
        self._m = m
        self._f = f

    @classmethod
    def open(cls: type[_E], path: str | os.PathLike) -> _E | None:
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
            (shoff,) = struct.unpack_from("<Q", m, 0x28)
            shentsize, shnum, shstrndx = struct.unpack_from("<HHH", m, 0x3A)
            raw = [_SHDR.unpack_from(m, shoff + i * shentsize) for i in range(shnum)]
            names_off = raw[shstrndx][4] if raw else 0
            sections = []
            for name, stype, _fl, addr, off, size, link, _info, _al, entsize in raw:
                end = m.find(b"\0", names_off + name)
                sname = m[names_off + name : end].decode(errors="replace")
                sections.append(Section(sname, stype, addr, off, size, link, entsize))
        except (ValueError, struct.error, IndexError):
            m.close()
            f.close()
            return None
        return cls(os.path.realpath(path), machine, etype, sections, m, f)

    def __enter__(self: _E) -> _E:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._m.close()
        self._f.close()  # type: ignore[attr-defined]

    @property
    def data(self) -> mmap.mmap:
        return self._m

    def file_offset(self, vaddr: int) -> int | None:
        """Where the byte at virtual address `vaddr` lies in the file (None: in no file-backed section)."""
        for s in self.section_list:
            if s.type != SHT_NOBITS and s.addr and s.addr <= vaddr < s.addr + s.size:
                return s.offset + vaddr - s.addr
        return None

    def symbols(self, names: Iterable[str], types: tuple[int, ...] = (SHT_SYMTAB, SHT_DYNSYM)) -> dict[str, Symbol]:
        """The named symbols this file defines (undefined ones, imported from another object, are
        not), from its symbol tables of `types`; the first table that defines a name wins.

        A name's places in the string table are found with `find` (tail-merged string tables let a
        symbol name end another string), then matched against the table's name offsets with numpy:
        no Python loop over the (often hundreds of thousands of) symbols."""
        m = self._m
        want = list(dict.fromkeys(names))
        out: dict[str, Symbol] = {}
        for s in self.section_list:
            if s.type not in types or s.entsize != SYM.itemsize or not 0 <= s.link < len(self.section_list):
                continue
            strtab = self.section_list[s.link]
            syms = np.frombuffer(m, dtype=SYM, count=s.size // SYM.itemsize, offset=s.offset)
            defined = syms[syms["shndx"] != 0]
            lo, hi = strtab.offset, strtab.offset + strtab.size
            for name in want:
                if name in out:
                    continue
                needle = name.encode() + b"\0"
                places = []  # every place where the string `name` starts
                pos = m.find(needle, lo, hi)
                while pos >= 0:
                    places.append(pos - lo)
                    pos = m.find(needle, pos + 1, hi)
                if not places:
                    continue
                hit = np.flatnonzero(np.isin(defined["name"], places))
                if len(hit):
                    sym = defined[hit[0]]
                    out[name] = Symbol(name, int(sym["value"]), int(sym["size"]))
        return out
