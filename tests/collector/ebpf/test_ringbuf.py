"""The ring buffer reader (collector/ebpf/ringbuf.py) against memfds laid out like a BPF ring buffer
(consumer page, producer page, data): the kernel's layout without needing BPF."""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import subprocess
import sys
import time

import pytest

from collector.ebpf.ringbuf import BUSY, DISCARD, RingReader


@pytest.fixture
def fake_ring():
    """Makes memfds laid out like a BPF ring buffer of `size` data bytes (consumer page, producer
    page, data), mapped; returns (fd, mapping). Closed after the test (views released by then)."""
    made: list[tuple[int, mmap.mmap]] = []

    def make(size: int) -> tuple[int, mmap.mmap]:
        fd = os.memfd_create("ring")
        os.ftruncate(fd, 2 * mmap.PAGESIZE + size)
        made.append((fd, mmap.mmap(fd, 2 * mmap.PAGESIZE + size)))
        return made[-1]

    yield make
    for fd, buf in made:
        with contextlib.suppress(BufferError):  # a failed test may still hold a view
            buf.close()
        os.close(fd)


def test_ring_reader_joins_a_record_that_wraps(fake_ring):
    """The reader maps the data area once (not the kernel's two back-to-back copies, which would show
    twice the ring in RSS), so a record crossing the end is joined from its two pieces. A memfd laid
    out like a BPF ring (consumer page, producer page, data) stands in for the kernel's."""
    page, size = mmap.PAGESIZE, 2 * mmap.PAGESIZE
    fd, buf = fake_ring(size)
    data = memoryview(buf)[2 * page:]
    pos = size - 24  # the first record starts 24 bytes before the end: its body wraps
    recs = [bytes([5]) + bytes(range(1, 40)), bytes([1]) + b"discarded!", bytes([2]) + b"x" * 100]
    flags = [0, DISCARD, 0]
    for rec, flag in zip(recs, flags, strict=True):
        struct.pack_into("<II", data, pos % size, len(rec) | flag, 0)
        for i, b in enumerate(rec):
            data[(pos + 8 + i) % size] = b
        pos += (len(rec) + 8 + 7) & ~7
    struct.pack_into("<Q", buf, 0, size - 24)  # consumer position
    struct.pack_into("<Q", buf, page, pos)  # producer position
    reader = RingReader(fd, size)
    sink: dict[int, list[bytes]] = {}
    assert reader.consume(sink) == 2
    assert sink == {5: [recs[0]], 2: [recs[2]]}
    assert struct.unpack_from("<Q", buf, 0)[0] == pos  # published: the kernel may reuse the space
    struct.pack_into("<I", data, pos % size, 16 | BUSY)  # reserved, not yet committed: it waits
    struct.pack_into("<Q", buf, page, pos + 24)
    assert reader.consume(sink) == 0 and struct.unpack_from("<Q", buf, 0)[0] == pos
    reader.close()
    data.release()


def test_ring_reader_drains_in_bounded_steps(fake_ring):
    """`consume(sink, max_bytes)` copies about max_bytes of the ring (a whole record past it at most)
    and leaves the rest in the ring, where `pending()` shows it: the collector copies a backlog into
    Python objects a few MiB at a time instead of a whole ring at once (a 64 MiB ring copied at once
    doubled its RSS). Every record still arrives, once, in order."""
    page, size = mmap.PAGESIZE, 4 * mmap.PAGESIZE
    fd, buf = fake_ring(size)
    data = memoryview(buf)[2 * page:]
    recs = [bytes([3]) + i.to_bytes(2, "little") + b"r" * 93 for i in range(100)]  # 96 B, 104 in the ring
    pos = 0
    for rec in recs:
        struct.pack_into("<II", data, pos, len(rec), 0)
        data[pos + 8 : pos + 8 + len(rec)] = rec
        pos += 104
    struct.pack_into("<Q", buf, page, pos)  # producer position; the consumer's is 0
    reader = RingReader(fd, size)
    assert reader.pending() == 100 * 104
    sink: dict[int, list[bytes]] = {}
    assert reader.consume(sink, max_bytes=1000) == 10  # the 10th record starts at 936 and ends past 1000
    assert reader.pending() == 90 * 104
    steps = 1
    while reader.pending():
        assert reader.consume(sink, max_bytes=1000) == 10
        steps += 1
    assert steps == 10 and sink == {3: recs}
    assert reader.consume(sink, max_bytes=1000) == 0
    reader.close()
    data.release()


# Watches the consumer position from another process (so on the other CPU, outside this process's
# GIL) with one 8-byte load per read, until told to stop; counts the reads and the values that were
# not the position the reader keeps publishing. Page 1 of the memfd: +64 ready, +72 stop, +80 reads,
# +88 odd values seen, +96 the first odd value.
WATCHER = """
import mmap, sys
fd, pos = int(sys.argv[1]), int(sys.argv[2])
buf = mmap.mmap(fd, 2 * mmap.PAGESIZE)
words = memoryview(buf).cast("Q")
flags = mmap.PAGESIZE // 8
cons, reads, odd, first = 0, 0, 0, 0
words[flags + 8] = 1
while True:  # reads at least once, however late the stop was seen
    for _ in range(1000):
        v = words[cons]
        if v != pos:
            odd += 1
            first = first or v
    reads += 1000
    if words[flags + 9]:
        break
words[flags + 10], words[flags + 11], words[flags + 12] = reads, odd, first
"""


def test_ring_reader_publishes_its_position_in_one_store(fake_ring):
    """The kernel reads the consumer position while the reader writes it, and a reservation that
    reads a wrong one sees the ring full: `struct.pack_into` zero-filled the word and then wrote it
    byte by byte, so past the first lap a record now and then was lost with the ring nearly empty
    (TLS bench: 1-5 of 600k records a run). Another process watches the word while the reader
    publishes the same position again and again: it must never see anything but that position."""
    page, size = mmap.PAGESIZE, 4 * mmap.PAGESIZE
    fd, buf = fake_ring(size)
    words = memoryview(buf).cast("Q")
    pos = 0x0123_4567_89AB_CDE8  # every byte non-zero: any partial write shows
    words[0] = pos  # consumer position
    flags = page // 8
    words[flags] = pos  # producer position: nothing pending
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER, str(fd), str(pos)], pass_fds=(fd,))
    try:
        deadline = time.monotonic() + 30
        while not words[flags + 8]:
            assert watcher.poll() is None and time.monotonic() < deadline, "the watcher did not start"
            time.sleep(0.01)
        reader = RingReader(fd, size)
        sink: dict[int, list[bytes]] = {}
        end = time.monotonic() + 1.5
        calls = 0
        while time.monotonic() < end:
            for _ in range(1000):
                reader.consume(sink)
            calls += 1000
        words[flags + 9] = 1
        assert watcher.wait(timeout=30) == 0
        reads, odd, first = words[flags + 10], words[flags + 11], words[flags + 12]
        assert reads > 0 and calls > 0 and sink == {}
        assert odd == 0, f"{odd} of {reads:,} reads saw {first:#x} while {calls:,} publications of {pos:#x} ran"
        reader.close()
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
        words.release()
