"""pcapng: a Python loop walks blocks (offsets only); numpy gathers the Enhanced Packet Block fields.

Handles several sections and interfaces (each IDB has its own link type, time resolution and
offset), Simple Packet Blocks, and counts Decryption Secrets Blocks (TLS key-log lines).
"""

from __future__ import annotations

import struct

import numpy as np

from collector.capture.records import MAX_CAPLEN, MappedFile, Records, gather_words

SHB, IDB, PB_OLD, SPB, EPB, DSB = 0x0A0D0D0A, 1, 2, 3, 6, 0x0A
BOM = 0x1A2B3C4D
TLS_KEYLOG = 0x544C534B
PROGRESS_EVERY = 1 << 16


def _idb_options(mm, start: int, end: int, e: str) -> tuple[int, int]:
    """(ticks per second, offset seconds) from if_tsresol / if_tsoffset."""
    units, tsoff = 1_000_000, 0
    off = start
    while off + 4 <= end:
        code, length = struct.unpack_from(e + "HH", mm, off)
        if code == 0:
            break
        if code == 9 and length >= 1:
            v = mm[off + 4]
            units = 10 ** (v & 0x7F) if not v & 0x80 else 2 ** (v & 0x7F)
        elif code == 14 and length >= 8:
            (tsoff,) = struct.unpack_from(e + "q", mm, off + 4)
        off += 4 + ((length + 3) & ~3)
    return units, tsoff


def read_pcapng(mapped: MappedFile, progress=None) -> Records:
    mm = mapped.mm
    n = len(mm)
    e = "<"
    ifaces: list[tuple[int, int, int, int]] = []  # (linktype, snaplen, units, tsoffset)
    section_base = 0  # global index of interface 0 of the current section
    sections: list[tuple[int, int, str]] = []  # (first EPB list position, iface base, endian)
    epb: list[int] = []
    spb: list[tuple[int, int]] = []  # (block offset, global iface) — rare
    append = epb.append
    dsb_blocks = dsb_lines = 0
    dsb_text: list[bytes] = []
    error = None
    off = 0
    last = 0
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
            section_base = len(ifaces)
            sections.append((len(epb), section_base, e))
        if blen < 12 or blen % 4 or blen > MAX_CAPLEN + 64:
            error = f"corrupt block at byte {off} (length {blen})"
            break
        if off + blen > n:
            error = f"cut short in the middle of a block at byte {off}"
            break
        if btype == EPB:
            append(off)
            if progress is not None and len(epb) - last >= PROGRESS_EVERY:
                progress.update(off - progress.n)
                last = len(epb)
        elif btype == IDB:
            linktype, _, snaplen = struct.unpack_from(e + "HHI", mm, off + 8)
            units, tsoff = _idb_options(mm, off + 16, off + blen - 4, e)
            ifaces.append((linktype, snaplen, units, tsoff))
        elif btype == SPB:
            spb.append((off, section_base))
        elif btype == PB_OLD:
            append(off)  # same field layout as an EPB (16-bit interface id + 16-bit drops)
        elif btype == DSB:
            stype, slen = struct.unpack_from(e + "II", mm, off + 8)
            dsb_blocks += 1
            if stype == TLS_KEYLOG:
                data = bytes(mm[off + 16 : off + 16 + slen])
                dsb_text.append(data)
                dsb_lines += sum(1 for line in data.splitlines() if line.strip() and not line.startswith(b"#"))
        off += blen
    else:
        if off != n:
            error = f"cut short in the middle of a block header at byte {off}"
    if progress is not None:
        progress.update(off - progress.n)

    blocks = np.asarray(epb, dtype=np.int64)
    buf = mapped.buf
    count = len(blocks)
    iface = np.zeros(count, np.int64)
    ts_hi = np.zeros(count, np.int64)
    ts_lo = np.zeros(count, np.int64)
    cap = np.zeros(count, np.int64)
    orig = np.zeros(count, np.int64)
    blen_arr = np.zeros(count, np.int64)
    bounds = [s[0] for s in sections] + [count]
    for k, (first, base, end) in enumerate(sections):
        sl = slice(first, bounds[k + 1])
        b = blocks[sl]
        big = end == ">"
        w = gather_words(buf, b, 7, big)  # type, length, interface, ts high, ts low, caplen, origlen
        raw_if = w[:, 2]
        # the obsolete Packet Block stores a 16-bit interface id; EPB a 32-bit one
        is_old = w[:, 0] == PB_OLD
        if is_old.any():
            raw_if = np.where(is_old, raw_if >> 16 if big else raw_if & 0xFFFF, raw_if)
        iface[sl] = raw_if + base
        ts_hi[sl], ts_lo[sl], cap[sl], orig[sl], blen_arr[sl] = w[:, 3], w[:, 4], w[:, 5], w[:, 6], w[:, 1]
    data_off = blocks + 28
    bad_if = iface >= len(ifaces)
    if bad_if.any():
        error = error or f"{int(bad_if.sum())} packets name an interface that has no description block"
    # a caplen running past its block is corruption: drop those records
    bad_len = (28 + cap + 4 > blen_arr) | bad_if
    if bad_len.any():
        error = error or f"{int(bad_len.sum())} corrupt packet blocks skipped"
        keep = ~bad_len
        data_off, cap, orig, iface, ts_hi, ts_lo = (x[keep] for x in (data_off, cap, orig, iface, ts_hi, ts_lo))
    ts64 = (ts_hi << 32) | ts_lo
    ts_ns = np.zeros(len(ts64), np.int64)
    for i, (_, _, units, tsoff) in enumerate(ifaces):
        m = iface == i
        if not m.any():
            continue
        t = ts64[m]
        if 1_000_000_000 % units == 0:
            ns = t * (1_000_000_000 // units)
        else:
            ns = (t // units) * 1_000_000_000 + ((t % units) * 1_000_000_000) // units
        ts_ns[m] = ns + tsoff * 1_000_000_000
    if spb:
        data_off, cap, orig, iface, ts_ns = _add_spb(mm, spb, ifaces, data_off, cap, orig, iface, ts_ns, e)
    return Records(
        fmt="pcapng",
        data_off=data_off,
        caplen=cap,
        origlen=np.maximum(orig, cap),
        ts_ns=ts_ns,
        iface=iface.astype(np.int32),
        linktypes=[i[0] for i in ifaces],
        truncated=error is not None,
        error=error,
        dsb_blocks=dsb_blocks,
        dsb_secrets=dsb_lines,
        dsb_keylog=dsb_text,
    )


def _add_spb(mm, spb, ifaces, data_off, cap, orig, iface, ts_ns, e):
    """Simple Packet Blocks (no timestamp, interface 0 of their section), merged in file order."""
    extra_off, extra_cap, extra_orig, extra_if = [], [], [], []
    for off, base in spb:
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
