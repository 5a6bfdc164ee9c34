"""Where each packet record sits in a capture file, as numpy arrays (no per-packet Python objects).

The pcap and pcapng readers only find record offsets in a Python loop; everything after that
(timestamps, lengths, link types, header fields) is gathered from the mapped file with numpy.
"""

from __future__ import annotations

import dataclasses
import itertools
import mmap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", False),
    b"\xa1\xb2\xc3\xd4": (">", False),
    b"\x4d\x3c\xb2\xa1": ("<", True),  # nanosecond pcap
    b"\xa1\xb2\x3c\x4d": (">", True),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
MAX_CAPLEN = 0x40000 * 4  # 1 MiB: larger "packets" mean the file is corrupt, not that the packet is big


class NotACapture(Exception):
    """The file cannot be read as a capture: neither pcap nor pcapng, empty, its file header cut short
    or corrupt, or an interface description that makes its timestamps meaningless. One line, for the
    user. (Damage after a valid file header is not this: the readers keep what is readable and set
    `Records.truncated` / `error`.)"""


@dataclass
class Records:
    """Packet records of one capture: parallel arrays, one entry per packet."""

    fmt: str  # 'pcap' | 'pcapng'
    data_off: np.ndarray  # int64: file offset of the frame bytes
    caplen: np.ndarray  # int64
    origlen: np.ndarray  # int64
    ts_ns: np.ndarray  # int64: nanoseconds since the epoch
    iface: np.ndarray  # int32: index into linktypes
    linktypes: list[int]
    truncated: bool = False
    error: str | None = None
    dsb_blocks: int = 0  # pcapng Decryption Secrets Blocks
    dsb_secrets: int = 0  # key-log lines inside them
    dsb_keylog: list[bytes] = field(default_factory=list)  # their TLS key-log text (secrets: memory only)
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.data_off.shape[0])

    def slice(self, i: int, j: int) -> Records:
        """Records i..j-1 (views of the arrays), for work done a slice at a time."""
        return dataclasses.replace(self, data_off=self.data_off[i:j], caplen=self.caplen[i:j],
                                   origlen=self.origlen[i:j], ts_ns=self.ts_ns[i:j], iface=self.iface[i:j])

    def linktype(self) -> np.ndarray:
        """Per-packet link type."""
        lt = np.asarray(self.linktypes, dtype=np.int64)
        return lt[self.iface] if len(lt) else np.zeros(len(self), np.int64)


def sniff(path: Path, name: str | None = None) -> str:
    """'pcap' or 'pcapng' from the magic number, else NotACapture (one line, for the user; `name` is
    what to call the file in it, default its path)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return kind_of(head, name or str(path))


def kind_of(head: bytes, name: str) -> str:
    """'pcap' or 'pcapng' from a file's first 4 bytes, else NotACapture."""
    if head in PCAP_MAGICS:
        return "pcap"
    if head == PCAPNG_MAGIC:
        return "pcapng"
    if not head:
        raise NotACapture(f"{name} is empty, not a pcap or pcapng capture")
    if len(head) < 4:
        raise NotACapture(f"{name} is {len(head)} bytes long, not a pcap or pcapng capture")
    raise NotACapture(f"{name} is not a pcap or pcapng capture (unknown magic {head.hex()})")


class MappedFile:
    """A read-only memory map of a capture and a uint8 numpy view of it."""

    def __init__(self, path: Path, name: str | None = None):
        self.name = name or str(path)  # what messages call the file
        self._f = open(path, "rb")
        size = Path(path).stat().st_size
        self.mm = mmap.mmap(self._f.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        self.buf = np.frombuffer(self.mm, dtype=np.uint8) if self.mm is not None else np.zeros(0, np.uint8)

    def release(self, end: int | None = None, start: int = 0) -> None:
        """Drop the mapped pages of bytes [start, end) (default: all) from this process's resident set.

        A pass over the whole capture maps every page of it, so the process's RSS would grow by the
        capture's size (and stay there) although nothing but the page cache holds those bytes. The
        readers release what they have passed; a later read of a released page maps it back from the
        page cache (a minor fault), so releasing too much is slower, never wrong (a read-only shared
        mapping: MADV_DONTNEED only unmaps)."""
        if self.mm is None:
            return
        size = len(self.mm)
        end = size if end is None else min(end, size)
        start -= start % mmap.PAGESIZE
        if end > start:
            self.mm.madvise(mmap.MADV_DONTNEED, start, end - start)

    def _spans(self, offsets: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """The order that sorts `offsets`, and where that order crosses each RELEASE_SPAN of the file."""
        order = np.argsort(offsets, kind="stable")
        ordered = offsets[order]
        if not len(ordered):
            return order, [0]
        marks = np.arange(int(ordered[0]) + RELEASE_SPAN, int(ordered[-1]) + 1, RELEASE_SPAN)
        bounds = [0, *np.searchsorted(ordered, marks).tolist(), len(ordered)]
        return order, sorted(set(bounds))

    def in_file_order(self, offsets: np.ndarray) -> Iterator[np.ndarray]:
        """The positions of `offsets` in file order, a RELEASE_SPAN of the file at a time; the pages
        behind a part are released when the next is asked for (all of them at the end). Several reads
        of the same records share one pass this way: each pass over the file maps its pages again
        (~0.03 s of faults and releases on a 310 MB capture)."""
        offsets = np.asarray(offsets, np.int64)
        order, bounds = self._spans(offsets)
        try:
            for i, j in itertools.pairwise(bounds):
                part = order[i:j]
                yield part
                self.release(int(offsets[part[-1]]))
        finally:
            self.release()

    def take(self, offsets: np.ndarray, width: int, release: bool = True) -> np.ndarray:
        """The `width` bytes at each offset as an (n, width) uint8 array (zeros outside the file),
        read in file order, releasing the pages passed: a few bytes from packets all over the
        capture would otherwise map all of it again (the kernel maps up to 64 KiB around each fault).
        `release=False`: the caller reads inside one part of in_file_order, which releases."""
        offsets = np.asarray(offsets, np.int64)
        out = np.zeros((len(offsets), width), np.uint8)
        size = len(self.buf)
        if not len(offsets) or not size:
            return out
        for sel in self.in_file_order(offsets) if release else (np.arange(len(offsets)),):
            at = offsets[sel]
            whole = (at >= 0) & (at + width <= size)
            out[sel[whole]] = rows(self.buf, at[whole], width)  # one row copy each
            for k, a in zip(sel[~whole].tolist(), at[~whole].tolist(), strict=True):  # at the file's ends
                lo, hi = max(a, 0), min(a + width, size)
                if hi > lo:
                    out[k, lo - a:hi - a] = self.buf[lo:hi]
        return out

    def slices(self, starts: np.ndarray, ends: np.ndarray, release: bool = True) -> list[bytes]:
        """The bytes [start, end) of each pair (clipped to the file), read in file order like take()."""
        starts = np.asarray(starts, np.int64)
        ends = np.asarray(ends, np.int64)
        out: list[bytes] = [b""] * len(starts)
        if not len(starts) or self.mm is None:
            return out
        mm, size = self.mm, len(self.mm)
        for part in self.in_file_order(starts) if release else (np.arange(len(starts)),):
            sel = part.tolist()
            for k, a, z in zip(sel, starts[sel].tolist(), ends[sel].tolist(), strict=True):
                a = max(a, 0)
                out[k] = mm[a:min(z, size)] if z > a else b""
        return out

    def close(self) -> None:
        self.buf = np.zeros(0, np.uint8)
        if self.mm is not None:
            try:
                self.mm.close()
            except BufferError:  # a numpy view still alive somewhere; the OS unmaps at exit
                pass
        self._f.close()

    def __enter__(self) -> MappedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(path: Path, mapped: MappedFile, progress=None) -> Records:
    """Dispatch on the magic number."""
    kind = sniff(path)
    if kind == "pcap":
        from collector.capture.pcap import read_pcap

        return read_pcap(mapped, progress)
    from collector.capture.pcapng import read_pcapng

    return read_pcapng(mapped, progress)


RELEASE_SPAN = 16 << 20  # bytes of the file a reader passes between releases of the pages behind it
CHAIN_WINDOW = 64 << 10  # a reader's first and after-a-stop chain scan, in bytes


def next_window(window: int, got_through: bool, cap: int) -> int:
    """A reader's next chain scan: doubled (up to `cap`) after a chain that got through its window,
    back to CHAIN_WINDOW after one that stopped short, so a capture that keeps stopping the chain
    costs a small scan per stop, never a span's."""
    return min(2 * window, cap) if got_through else CHAIN_WINDOW


SCAN_BLOCK = 1 << 18  # elements positions_equal compares at a time (its booleans: 256 KiB, cache-sized)
_scan = threading.local()  # each thread's reused SCAN_BLOCK booleans


def positions_equal(values: np.ndarray, value: int) -> np.ndarray:
    """np.flatnonzero(values == value), a SCAN_BLOCK at a time into one reused boolean buffer. The
    chain scans compare every 16- or 32-bit word of the capture: done in one go, the comparison
    wrote a fresh boolean array as large as the span (up to 8 MB, new pages each time) and read it
    back from memory; in blocks it stays in the cache (the whole-file scan of a 310 MB capture
    took 0.20-0.22 -> 0.12-0.16 s)."""
    scratch = getattr(_scan, "buf", None)
    if scratch is None:
        scratch = _scan.buf = np.empty(SCAN_BLOCK, bool)
    parts = []
    for i in range(0, len(values), SCAN_BLOCK):
        block = values[i:i + SCAN_BLOCK]
        hits = scratch[:len(block)]
        np.equal(block, value, out=hits)
        parts.append(np.flatnonzero(hits) + i if i else np.flatnonzero(hits))
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def chain_run(p: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """Positions in `p` (sorted candidate offsets) of the chain p[0] -> nxt[0] -> ... while each next
    offset is a candidate: the records a reader's loop would walk one at a time, found by pointer
    doubling (log2(run) gathers, no Python step per record). Each link is the reader's own
    arithmetic (`nxt`), so a stray candidate in packet bytes joins only if a record points at it."""
    k = len(p)
    if not k:
        return np.zeros(0, np.int64)
    at = np.searchsorted(p, nxt)
    hit = at < k
    hit[hit] = p[at[hit]] == nxt[hit]
    jump = np.append(np.where(hit, at, k), k)  # k: the chain leaves the candidates (absorbing)
    path = np.zeros(1, np.int64)
    while path[-1] != k:  # path = the first 2^i records; jump = the 2^i-th successor
        path = np.concatenate([path, jump[path]])
        jump = jump[jump]
    return path[:int(np.argmax(path == k))]


def rows(buf: np.ndarray, offsets: np.ndarray, width: int) -> np.ndarray:
    """The `width` bytes of `buf` at each offset (each with offset + width <= len(buf)) as an
    (n, width) uint8 array: one fixed-size item copy per row (a gather of `width`-byte void items),
    where indexing a sliding_window_view copies a strided sub-array per row: ~2x faster for
    header-sized rows, ~7x for 5 bytes (500k and 17k rows, measured in docs/performance.md)."""
    if len(buf) < width:
        if len(offsets):
            raise IndexError(f"a {width}-byte row does not fit a {len(buf)}-byte buffer")
        return np.zeros((0, width), np.uint8)
    items = np.ndarray(buffer=buf, dtype=np.dtype((np.void, width)), shape=(len(buf) - width + 1,), strides=(1,))
    return items[offsets].view(np.uint8).reshape(len(offsets), width)


def gather_words(mapped: MappedFile, idx: np.ndarray, words: int, big: bool) -> np.ndarray:
    """`words` consecutive 32-bit integers at each offset, as an (n, words) int64 array: one row
    copy per record (MappedFile.take) instead of a gather per byte."""
    return mapped.take(idx, 4 * words).view(">u4" if big else "<u4").astype(np.int64)
