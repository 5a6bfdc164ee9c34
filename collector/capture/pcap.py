"""Classic pcap: a Python loop finds record offsets; numpy gathers timestamps and lengths."""

from __future__ import annotations

import struct

import numpy as np

from collector.capture.records import (
    MAX_CAPLEN,
    PCAP_MAGICS,
    RELEASE_SPAN,
    MappedFile,
    NotACapture,
    Records,
    gather_words,
)


def check_header(buf, size: int, name: str) -> tuple[str, bool]:
    """(byte order, nanosecond?) of a pcap whose first bytes are `buf` (a file of `size` bytes);
    NotACapture when its 24-byte file header is cut short or is no pcap header."""
    if size < 24 or len(buf) < 24:
        raise NotACapture(f"{name}: the file ends inside the pcap file header ({size} of 24 bytes)")
    endian, nano = PCAP_MAGICS[bytes(buf[:4])]
    major, minor = struct.unpack_from(endian + "HH", buf, 4)
    if major != 2:
        raise NotACapture(f"{name}: pcap version {major}.{minor} (only 2.x exists): not a pcap capture")
    (network,) = struct.unpack_from(endian + "I", buf, 20)
    if network & 0x0FFFFFFF > 0xFFFF:  # the low 28 bits; link types are 16-bit numbers (pcapng's field)
        raise NotACapture(f"{name}: link type {network & 0x0FFFFFFF} does not exist: corrupt pcap file header")
    return endian, nano


def read_pcap(mapped: MappedFile, progress=None) -> Records:
    """All complete records; a cut-short or corrupt tail sets `truncated` and `error`."""
    mm = mapped.mm
    n = len(mm) if mm is not None else 0
    endian, nano = check_header(mm, n, mapped.name)
    (network,) = struct.unpack_from(endian + "I", mm, 20)
    linktype = network & 0x0FFFFFFF
    caplen_at = struct.Struct(endian + "I").unpack_from
    offs: list[int] = []
    append = offs.append
    off = 24
    error = None
    last = n - 16  # the last offset a record header fits at
    # the loop does the least per record: a caplen too large stops it; a record running past the
    # end of the file is found afterwards (it can only be the last one walked)
    while off <= last:
        stop = min(off + RELEASE_SPAN, last)
        while off <= stop:
            (cap,) = caplen_at(mm, off + 8)
            if cap > MAX_CAPLEN:
                break
            append(off)
            off += 16 + cap
        else:
            mapped.release(off)
            if progress is not None:
                progress.update(min(off, n) - progress.n)
            continue
        error = f"corrupt record at byte {off}: captured length {cap}"
        break
    if error is None and off > n:  # the last record walked runs past the end of the file
        off = offs.pop()
        error = f"cut short in the middle of a packet at byte {off}"
    elif error is None and off != n:
        error = f"cut short in the middle of a record header at byte {off}"
    if progress is not None:
        progress.update(off - progress.n)
    hdr = np.asarray(offs, dtype=np.int64)
    big = endian == ">"
    w = gather_words(mapped, hdr, 4, big)
    sec, frac, cap, orig = w[:, 0], w[:, 1], w[:, 2], w[:, 3]
    ts = sec * 1_000_000_000 + (frac if nano else frac * 1000)
    return Records(
        fmt="pcap",
        data_off=hdr + 16,
        caplen=cap,
        origlen=np.maximum(orig, cap),
        ts_ns=ts,
        iface=np.zeros(len(offs), np.int32),
        linktypes=[linktype],
        truncated=error is not None,
        error=error,
    )
