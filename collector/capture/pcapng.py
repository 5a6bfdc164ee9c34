"""pcapng: a Python loop walks blocks (offsets only); numpy gathers the Enhanced Packet Block fields.

Handles several sections and interfaces (each IDB has its own link type, time resolution and
offset), Simple Packet Blocks, and counts Decryption Secrets Blocks (TLS key-log lines).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from collector.capture.records import (
    CHAIN_WINDOW,
    MAX_CAPLEN,
    RELEASE_SPAN,
    MappedFile,
    NotACapture,
    Records,
    chain_run,
    gather_words,
    next_window,
    positions_equal,
)

SHB, IDB, PB_OLD, SPB, EPB, DSB = 0x0A0D0D0A, 1, 2, 3, 6, 0x0A
BOM = 0x1A2B3C4D
TLS_KEYLOG = 0x544C534B


MIN_BLOCK = {SHB: 28, IDB: 20, EPB: 32, PB_OLD: 32, SPB: 16, DSB: 20}  # the fixed fields of each block
MAX_DECIMAL_RES = 18  # if_tsresol 10^-18 s: ticks per second still fit an int64
MAX_BINARY_RES = 62
MAX_TSOFFSET_S = 4_000_000_000  # if_tsoffset: ~126 years either way; beyond, nanoseconds overflow an int64
INT64_MAX = (1 << 63) - 1


def _idb_options(mm, start: int, end: int, e: str, where: str) -> tuple[int, int]:
    """(ticks per second, offset seconds) from if_tsresol / if_tsoffset; NotACapture for values that
    make the interface's timestamps meaningless (they would overflow any representation)."""
    units, tsoff = 1_000_000, 0
    off = start
    while off + 4 <= end:
        code, length = struct.unpack_from(e + "HH", mm, off)
        if code == 0 or off + 4 + length > end:
            break  # end of options, or an option running past its block: the rest is not read
        if code == 9 and length >= 1:
            v = mm[off + 4]
            exp = v & 0x7F
            if v & 0x80:
                if exp > MAX_BINARY_RES:
                    raise NotACapture(f"{where}: time resolution if_tsresol 0x{v:02x} (2^-{exp} s) is finer than any "
                                      "clock; the interface description is corrupt")
                units = 1 << exp
            else:
                if exp > MAX_DECIMAL_RES:
                    raise NotACapture(f"{where}: time resolution if_tsresol 0x{v:02x} (10^-{exp} s) is finer than any "
                                      "clock; the interface description is corrupt")
                units = 10**exp
        elif code == 14 and length >= 8:
            (tsoff,) = struct.unpack_from(e + "q", mm, off + 4)
            if abs(tsoff) > MAX_TSOFFSET_S:
                raise NotACapture(f"{where}: timestamp offset if_tsoffset {tsoff} s is beyond any date; the interface "
                                  "description is corrupt")
        off += 4 + ((length + 3) & ~3)
    return units, tsoff


def check_header(buf, size: int, name: str) -> None:
    """A pcapng file (first bytes `buf`, `size` bytes in all) must open with a whole, valid Section
    Header Block; else NotACapture."""
    if size < MIN_BLOCK[SHB] or len(buf) < MIN_BLOCK[SHB]:
        raise NotACapture(f"{name}: the file ends inside the pcapng section header ({size} of 28 bytes)")
    for e in "<>":
        if struct.unpack_from(e + "I", buf, 8)[0] == BOM:
            break
    else:
        raise NotACapture(f"{name}: corrupt pcapng section header (byte-order magic {bytes(buf[8:12]).hex()})")
    (blen,) = struct.unpack_from(e + "I", buf, 4)
    (major,) = struct.unpack_from(e + "H", buf, 12)
    if blen < MIN_BLOCK[SHB] or blen % 4 or blen > size:
        raise NotACapture(f"{name}: corrupt pcapng section header (block length {blen} in a {size}-byte file)")
    if major != 1:
        raise NotACapture(f"{name}: pcapng version {major} (only 1.x exists): corrupt section header")


def read_pcapng(mapped: MappedFile, progress=None) -> Records:
    """The packet records of a pcapng file in three steps: walk the blocks (offsets, interfaces,
    sections, key-log secrets), gather the packet blocks' fields with numpy, drop the damaged ones."""
    mm = mapped.mm
    n = len(mm) if mm is not None else 0
    check_header(mm, n, mapped.name)
    w = _walk_blocks(mapped, n, progress)
    data_off, cap, orig, iface, ts_ns = _packet_fields(mapped, w)
    if w.spb:
        data_off, cap, orig, iface, ts_ns = _add_spb(mm, w.spb, w.ifaces, data_off, cap, orig, iface, ts_ns)
    error, problems = w.error, w.problems
    if error is not None or problems:
        error = "; ".join(([error] if error else []) + problems[:3] + ([f"{len(problems) - 3} more"] if len(problems) > 3 else []))
    return Records(
        fmt="pcapng",
        data_off=data_off,
        caplen=cap,
        origlen=np.maximum(orig, cap),
        ts_ns=ts_ns,
        iface=iface.astype(np.int32),
        linktypes=[i[0] for i in w.ifaces],
        truncated=error is not None,
        error=error,
        dsb_blocks=w.dsb_blocks,
        dsb_secrets=w.dsb_lines,
        dsb_keylog=w.dsb_text,
    )


@dataclass
class _Walk:
    """What the walk over a file's blocks found (read_pcapng's first step)."""

    ifaces: list[tuple[int, int, int, int]]  # (linktype, snaplen, units, tsoffset), numbered across sections
    sections: list[tuple[int, int, str]]  # (first EPB list position, iface base, endian)
    epb: list[int]  # offsets of the (Enhanced) Packet Blocks
    spb: list[tuple[int, int, str]]  # (block offset, global iface, byte order) — rare
    dsb_blocks: int
    dsb_lines: int
    dsb_text: list[bytes]
    problems: list[str]  # damage after which the walk went on (the block length was sound)
    error: str | None  # damage that stopped the walk


def _walk_blocks(mapped: MappedFile, n: int, progress) -> _Walk:  # noqa: ANN001 - a tqdm-like bar
    """One pass over the blocks, recording offsets only (the fields are gathered with numpy
    afterwards). A Python loop reads the rare blocks; runs of Enhanced Packet Blocks are followed
    by _chain, which hands back at the first block it cannot vouch for."""
    mm, name = mapped.mm, mapped.name
    e = "<"
    ifaces: list[tuple[int, int, int, int]] = []  # (linktype, snaplen, units, tsoffset)
    section_base = 0  # global index of interface 0 of the current section
    sections: list[tuple[int, int, str]] = []  # (first EPB list position, iface base, endian)
    epb: list[int] = []
    spb: list[tuple[int, int, str]] = []  # (block offset, global iface, byte order) — rare
    append = epb.append
    dsb_blocks = dsb_lines = 0
    dsb_text: list[bytes] = []
    problems: list[str] = []  # damage after which the walk went on (the block length was sound)
    error = None  # damage that stopped the walk
    off = 0
    mark = RELEASE_SPAN  # a plain int compare per block; the rare work happens at each mark
    runs = _Runs()
    hdr = struct.Struct("<II")
    while off + 12 <= n:
        btype, blen = hdr.unpack_from(mm, off)
        if btype == SHB:
            bom_le = struct.unpack_from("<I", mm, off + 8)[0]
            if bom_le == BOM:
                e = "<"
            elif struct.unpack_from(">I", mm, off + 8)[0] == BOM:
                e = ">"
            else:
                error = f"corrupt section header at byte {off}"
                break
            hdr = struct.Struct(e + "II")
            _, blen = hdr.unpack_from(mm, off)
            if off + 14 <= n and struct.unpack_from(e + "H", mm, off + 12)[0] != 1:
                error = f"corrupt section header at byte {off} (version {struct.unpack_from(e + 'H', mm, off + 12)[0]})"
                break
            section_base = len(ifaces)
            sections.append((len(epb), section_base, e))
        if blen < 12 or blen % 4 or blen > MAX_CAPLEN + 64 or blen < MIN_BLOCK.get(btype, 12):
            error = f"corrupt block at byte {off} (type {btype:#x}, length {blen})"
            break
        if off + blen > n:
            error = f"cut short in the middle of a block at byte {off}"
            break
        if btype == EPB or btype == PB_OLD:  # the obsolete Packet Block has an EPB's field layout
            append(off)
            if btype == EPB and off >= runs.at:  # the packet blocks after it, without a step each
                run, after = runs.follow(mapped, off + blen, n, e)
                epb.extend(run.tolist())
                if len(run):
                    off, blen = after, 0
            if off >= mark:
                mapped.release(off)
                mark = off + RELEASE_SPAN
                if progress is not None:
                    progress.update(off - progress.n)
        elif btype == IDB:
            linktype, _, snaplen = struct.unpack_from(e + "HHI", mm, off + 8)
            where = f"{name}: interface {len(ifaces) - section_base} (block at byte {off})"
            units, tsoff = _idb_options(mm, off + 16, off + blen - 4, e, where)
            ifaces.append((linktype, snaplen, units, tsoff))
        elif btype == SPB:
            if section_base < len(ifaces):
                spb.append((off, section_base, e))
            else:
                problems.append(f"simple packet block at byte {off} before any interface description: skipped")
        elif btype == DSB:
            dsb_blocks += 1
            data = _secrets(mm, off, blen, e, problems)
            if data is not None:
                dsb_text.append(data)
                dsb_lines += sum(1 for line in data.splitlines() if line.strip() and not line.startswith(b"#"))
        off += blen
    else:
        if off != n:
            error = f"cut short in the middle of a block header at byte {off}"
    if progress is not None:
        progress.update(off - progress.n)
    return _Walk(ifaces, sections, epb, spb, dsb_blocks, dsb_lines, dsb_text, problems, error)


def _secrets(mm, off: int, blen: int, e: str, problems: list[str]) -> bytes | None:  # noqa: ANN001 - an mmap
    """The TLS key-log text of the Decryption Secrets Block at `off` (None for other secrets; a
    secrets length past the block is noted in `problems`)."""
    stype, slen = struct.unpack_from(e + "II", mm, off + 8)
    if slen > blen - MIN_BLOCK[DSB]:
        problems.append(f"corrupt decryption secrets block at byte {off} (secrets length {slen} in a "
                        f"{blen}-byte block): skipped")
        return None
    return bytes(mm[off + 16 : off + 16 + slen]) if stype == TLS_KEYLOG else None


CHAIN_MIN = 64  # a chain shorter than this: the loop takes the rest of the span (no scan per block)


@dataclass
class _Runs:
    """Where the block loop next hands a run of packet blocks to _chain, and how far _chain scans:
    the scan doubles while the chain gets through it and shrinks when it stops short, so a file of
    short packet runs between other blocks costs a small scan per run, not a span's; a chain that
    got little done leaves the loop a span."""

    at: int = 0
    window: int = CHAIN_WINDOW

    def follow(self, mapped: MappedFile, start: int, n: int, e: str) -> tuple[np.ndarray, int]:
        end = min(start + self.window, n)
        run, after = _chain(mapped, start, end, e)
        self.window = next_window(self.window, after >= end, RELEASE_SPAN)
        self.at = 0 if len(run) >= CHAIN_MIN else start + RELEASE_SPAN
        return run, after


def _chain(mapped: MappedFile, off: int, end: int, e: str) -> tuple[np.ndarray, int]:
    """(offsets, the offset after them) of the Enhanced Packet Blocks from `off` on, before `end`,
    that the loop would take one at a time: sound lengths (a multiple of 4, within the EPB's
    minimum and MAX_CAPLEN + 64) and whole in the file. Candidates are the 4-byte-aligned offsets
    (from `off`: block lengths are multiples of 4) holding the EPB type; each one's successor is
    its offset + block length (records.chain_run). Empty when `off` holds no such block."""
    buf, n = mapped.buf, len(mapped.buf)
    words = (min(end, n - 8) - off + 3) // 4  # type and length must both lie in the file
    if words <= 0:
        return np.zeros(0, np.int64), off
    u4 = np.dtype(e + "u4")
    v = buf[off:off + 4 * words + 4].view(u4)
    i = positions_equal(v[:words], EPB)
    if not len(i) or i[0] != 0:
        return np.zeros(0, np.int64), off
    blen = v[i + 1].astype(np.int64)
    p = off + 4 * i
    ok = (blen % 4 == 0) & (blen >= MIN_BLOCK[EPB]) & (blen <= MAX_CAPLEN + 64) & (p + blen <= n)
    if not ok[0]:
        return np.zeros(0, np.int64), off
    p, blen = p[ok], blen[ok]
    nxt = p + blen
    path = chain_run(p, nxt)
    return p[path], int(nxt[path[-1]])


def _packet_fields(mapped: MappedFile, walk: _Walk) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(data offset, caplen, origlen, interface, ts_ns) of the packet blocks, gathered per section
    (each has its own byte order and interfaces); a block naming an interface its section lacks, a
    caplen running past its block or a timestamp beyond any date is dropped and noted in walk.problems."""
    blocks = np.asarray(walk.epb, dtype=np.int64)
    sections, ifaces, problems = walk.sections, walk.ifaces, walk.problems
    count = len(blocks)
    iface = np.zeros(count, np.int64)
    ts_hi = np.zeros(count, np.int64)
    ts_lo = np.zeros(count, np.int64)
    cap = np.zeros(count, np.int64)
    orig = np.zeros(count, np.int64)
    blen_arr = np.zeros(count, np.int64)
    bad_if = np.zeros(count, bool)
    bounds = [s[0] for s in sections] + [count]
    if_bounds = [s[1] for s in sections] + [len(ifaces)]
    for k, (first, base, end) in enumerate(sections):
        sl = slice(first, bounds[k + 1])
        b = blocks[sl]
        big = end == ">"
        w = gather_words(mapped, b, 7, big)  # type, length, interface, ts high, ts low, caplen, origlen
        raw_if = w[:, 2]
        # the obsolete Packet Block stores a 16-bit interface id; EPB a 32-bit one
        is_old = w[:, 0] == PB_OLD
        if is_old.any():
            raw_if = np.where(is_old, raw_if >> 16 if big else raw_if & 0xFFFF, raw_if)
        bad_if[sl] = raw_if >= if_bounds[k + 1] - base  # an interface of this section only
        iface[sl] = raw_if + base
        ts_hi[sl], ts_lo[sl], cap[sl], orig[sl], blen_arr[sl] = w[:, 3], w[:, 4], w[:, 5], w[:, 6], w[:, 1]
    data_off = blocks + 28
    if bad_if.any():
        problems.append(f"{int(bad_if.sum())} packets name an interface that has no description block")
    # a caplen running past its block is corruption: drop those records
    bad_len = (28 + cap + 4 > blen_arr) & ~bad_if
    if bad_len.any():
        problems.append(f"{int(bad_len.sum())} corrupt packet blocks skipped")
    ts_ns, bad_ts = _timestamps(ts_hi, ts_lo, np.where(bad_if, 0, iface), ifaces)
    bad_ts &= ~(bad_if | bad_len)
    if bad_ts.any():
        problems.append(f"{int(bad_ts.sum())} packets with timestamps beyond any date skipped")
    drop = bad_if | bad_len | bad_ts
    if drop.any():
        keep = ~drop
        data_off, cap, orig, iface, ts_ns = (x[keep] for x in (data_off, cap, orig, iface, ts_ns))
    return data_off, cap, orig, iface, ts_ns


def _timestamps(ts_hi: np.ndarray, ts_lo: np.ndarray, iface: np.ndarray,
                ifaces: list[tuple[int, int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Nanoseconds since the epoch per packet from its interface's resolution and offset, and a mask of
    packets whose timestamp is beyond what an int64 of nanoseconds holds (year 2262) or before 1970."""
    ts_ns = np.zeros(len(ts_hi), np.int64)
    bad = ts_hi >= 1 << 31  # a 64-bit tick count of 2^63 or more: no resolution makes that a date
    ts64 = (np.where(bad, 0, ts_hi) << 32) | ts_lo
    for i, (_, _, units, tsoff) in enumerate(ifaces):
        m = iface == i
        if not m.any():
            continue
        t = ts64[m]
        off_ns = tsoff * 1_000_000_000
        if 1_000_000_000 % units == 0:
            mult = 1_000_000_000 // units
            over = t > (INT64_MAX - max(off_ns, 0)) // mult
            ns = np.where(over, 0, t) * mult
        else:  # finer than a nanosecond, or a binary fraction: whole seconds, then the fraction
            sec = t // units
            over = sec > (INT64_MAX - max(off_ns, 0)) // 1_000_000_000 - 1
            if units <= INT64_MAX // 1_000_000_000:
                frac = ((t % units) * 1_000_000_000) // units  # exact
            else:  # (t % units) * 10^9 would overflow: float64 is within a nanosecond here
                frac = ((t % units).astype(np.float64) * (1e9 / units)).astype(np.int64)
            ns = np.where(over, 0, sec) * 1_000_000_000 + frac
        ns = ns + off_ns
        bad[m] |= over | (ns < 0)
        ts_ns[m] = ns
    return ts_ns, bad


def _add_spb(mm, spb, ifaces, data_off, cap, orig, iface, ts_ns):
    """Simple Packet Blocks (no timestamp, interface 0 of their section, read in their section's byte
    order), merged in file order."""
    extra_off, extra_cap, extra_orig, extra_if = [], [], [], []
    for off, base, e in spb:
        (blen,) = struct.unpack_from(e + "I", mm, off + 4)
        (olen,) = struct.unpack_from(e + "I", mm, off + 8)
        snap = ifaces[base][1] if base < len(ifaces) and ifaces[base][1] else olen
        c = min(olen, snap, blen - 16)
        extra_off.append(off + 12)
        extra_cap.append(c)
        extra_orig.append(olen)
        extra_if.append(base)
    data_off = np.concatenate([data_off, np.asarray(extra_off, np.int64)])
    order = np.argsort(data_off, kind="stable")
    cat = lambda a, b: np.concatenate([a, np.asarray(b, a.dtype)])[order]  # noqa: E731
    return (
        data_off[order],
        cat(cap, extra_cap),
        cat(orig, extra_orig),
        cat(iface, extra_if),
        cat(ts_ns, [0] * len(extra_off)),
    )
