"""Classic pcap: numpy follows the chain of record offsets (a Python loop where it cannot) and gathers
timestamps and lengths."""

from __future__ import annotations

import struct

import numpy as np

from collector.capture.records import (
    CHAIN_WINDOW,
    MAX_CAPLEN,
    PCAP_MAGICS,
    RELEASE_SPAN,
    MappedFile,
    NotACapture,
    Records,
    chain_run,
    gather_words,
    next_window,
    positions_equal,
    rows,
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
    """All complete records; a cut-short or corrupt tail sets `truncated` and `error`.

    Record offsets form a chain (each header gives the next one's offset), which a Python loop
    follows at ~1 µs a record. `_chain` follows it with numpy a span of the file at a time and hands
    over to the loop wherever it cannot vouch for a header (a timestamp in another 18-hour window, a
    captured length too large, the span's end); the loop decides those records with the old rules."""
    mm = mapped.mm
    n = len(mm) if mm is not None else 0
    endian, nano = check_header(mm, n, mapped.name)
    (network,) = struct.unpack_from(endian + "I", mm, 20)
    linktype = network & 0x0FFFFFFF
    caplen_at = struct.Struct(endian + "I").unpack_from
    offs: list[np.ndarray] = []  # record offsets, in file order, a run at a time
    words: list[np.ndarray | None] = []  # each run's header words when _chain read them, else None
    error = None
    last = n - 16  # the last offset a record header fits at
    off = 24
    mark = RELEASE_SPAN  # the next file position at which the pages behind are released
    window = CHAIN_WINDOW  # bytes _chain scans: doubles while it gets through them, shrinks when it stops short
    while off <= last:
        span_end = min(off + window, last + 1)
        run, w, off = _chain(mapped, off, span_end, endian)
        # (a capture that keeps changing timestamp windows costs a small scan per stop, not a span's)
        window = next_window(window, off >= span_end, RELEASE_SPAN)
        if len(run):
            offs.append(run)
            words.append(w)
        # the loop goes on from where the chain stopped: a few records, then the chain again (it
        # stopped early, e.g. at a new timestamp window); to the span's end when the chain got little done
        budget = LOOP_RECORDS if len(run) >= LOOP_RECORDS else -1
        slow: list[int] = []
        while off < span_end and budget:
            (cap,) = caplen_at(mm, off + 8)
            if cap > MAX_CAPLEN:
                error = f"corrupt record at byte {off}: captured length {cap}"
                break
            slow.append(off)
            off += 16 + cap
            budget -= 1
        if slow:
            offs.append(np.asarray(slow, np.int64))
            words.append(None)
        if error is not None:
            break
        if off >= mark:  # by file position: the chain may stop short of its span more than once
            mapped.release(off)
            mark = off + RELEASE_SPAN
            if progress is not None:
                progress.update(min(off, n) - progress.n)
    at = np.concatenate(offs) if offs else np.zeros(0, np.int64)
    w = _header_words(mapped, at, offs, words, endian == ">")
    if error is None and off > n:  # the last record walked runs past the end of the file
        off = int(at[-1])
        at, w = at[:-1], w[:-1]
        error = f"cut short in the middle of a packet at byte {off}"
    elif error is None and off != n:
        error = f"cut short in the middle of a record header at byte {off}"
    if progress is not None:
        progress.update(off - progress.n)
    sec, frac, cap, orig = w[:, 0], w[:, 1], w[:, 2], w[:, 3]
    ts = sec * 1_000_000_000 + (frac if nano else frac * 1000)
    return Records(
        fmt="pcap",
        data_off=at + 16,
        caplen=cap,
        origlen=np.maximum(orig, cap),
        ts_ns=ts,
        iface=np.zeros(len(at), np.int32),
        linktypes=[linktype],
        truncated=error is not None,
        error=error,
    )


def _header_words(mapped: MappedFile, at: np.ndarray, runs: list[np.ndarray], words: list[np.ndarray | None],
                  big: bool) -> np.ndarray:
    """The (n, 4) header words of the records at `at` (the `runs` concatenated): the chain's where
    it read them, the loop's records' gathered in one pass over the file (not one per run)."""
    w = np.empty((len(at), 4), np.int64)
    loose: list[np.ndarray] = []
    i = 0
    for run, x in zip(runs, words, strict=True):
        if x is not None:
            w[i:i + len(run)] = x
        else:
            loose.append(np.arange(i, i + len(run)))
        i += len(run)
    if loose:
        rows = np.concatenate(loose)
        w[rows] = gather_words(mapped, at[rows], 4, big)
    return w


LOOP_RECORDS = 64  # records the loop decides after the chain stops early, before the chain tries again


def _chain(mapped: MappedFile, off: int, end: int, endian: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(offsets, header words as an (n, 4) int64 array, the offset after them) of the records from
    `off` (a record's offset) on, before `end`, found without a Python step per record.

    Candidates are the offsets in [off, end) whose 16 high bits of the timestamp's seconds equal
    those of the record at `off` (18-hour windows: payload bytes rarely match) and whose captured
    length is at most MAX_CAPLEN. Each candidate's successor is its offset + 16 + captured length
    (records.chain_run follows them from `off`)."""
    buf = mapped.buf
    empty = np.zeros(0, np.int64), np.zeros((0, 4), np.int64), off
    hi_at, u2 = (2, np.dtype("<u2")) if endian == "<" else (0, np.dtype(">u2"))
    want = int(buf[off + hi_at:off + hi_at + 2].view(u2)[0])
    found = []
    for a in (off + hi_at, off + hi_at + 1):  # the two byte parities of a 16-bit view
        m = (end + hi_at - a + 1) // 2  # views whose position p = a + 2i - hi_at is below end
        found.append(positions_equal(buf[a:a + 2 * m].view(u2), want) * 2 + (a - hi_at))
    p = np.sort(np.concatenate(found))
    p = p[p < end]
    if not len(p) or p[0] != off:
        return empty
    w = rows(buf, p, 16).view(np.dtype(endian + "u4")).astype(np.int64)
    ok = w[:, 2] <= MAX_CAPLEN
    if not ok[0]:
        return empty
    p, w = p[ok], w[ok]
    nxt = p + 16 + w[:, 2]
    path = chain_run(p, nxt)
    return p[path], w[path], int(nxt[path[-1]])
