"""A BPF ring buffer read straight from its memory mapping: every pending record in one pass.

bcc's `ring_buffer_consume()` calls a ctypes callback per record (~2-3 µs each here, most of the
collector's drain time at tens of thousands of records per second). The ring buffer's layout is
kernel ABI (include/uapi/linux/bpf.h, kernel/bpf/ringbuf.c): a consumer-position page the reader
writes, then a read-only producer-position page followed by the data area, which the kernel offers
twice in a row so a record that wraps is contiguous. This reader maps the data area once (a mapping
of both copies shows as twice the ring's size in the collector's RSS) and joins the two pieces of
the rare record that wraps. Each record has an 8-byte header (length with BUSY and DISCARD bits,
page offset) and is padded to 8 bytes, so a header never wraps. The reader walks the headers from
the consumer position to the producer position, copies each committed record once, stops at the
first record still being written, and publishes the new consumer position.

The two positions are 8-byte words the kernel reads and writes while the reader runs, so the reader
loads and stores each with one native 8-byte access (a memoryview of format "Q": CPython copies the
value with a fixed-size memcpy, one move). `struct.pack_into` must not publish the consumer
position: it zero-fills the field and then writes it byte by byte, and a reservation that read the
position in between saw the ring full once the producer had gone round it once, and lost its record
(docs/performance.md, Live collector, 2026-12-07 11:00).
"""

from __future__ import annotations

import mmap
import struct

BUSY = 1 << 31
DISCARD = 1 << 30
HDR = 8


class RingReader:
    """Consumer side of one BPF_MAP_TYPE_RINGBUF map (the map's fd, its data size in bytes)."""

    def __init__(self, map_fd: int, data_size: int):
        if data_size & (data_size - 1):
            raise ValueError("a BPF ring buffer's size is a power of two")
        page = mmap.PAGESIZE
        self.mask = data_size - 1
        self.size = data_size
        self._cons = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._prod = mmap.mmap(map_fd, page + data_size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._data = memoryview(self._prod)[page:]
        self._cons_pos = memoryview(self._cons)[:8].cast("Q")  # [0]: one 8-byte load or store (module docstring)
        self._prod_pos = memoryview(self._prod)[:8].cast("Q")

    def consume(self, sink: dict[int, list[bytes]], max_bytes: int | None = None) -> int:
        """Append committed records to sink[first byte] (the record type); returns how many.

        `max_bytes` stops after about that much of the ring (a whole record past it at most): what
        is left stays in the kernel's memory, which holds it anyway, instead of being copied into
        Python objects all at once (a full 64 MiB ring copied at once doubled the collector's RSS
        under load). `pending()` says whether anything is left."""
        cons = self._cons_pos[0]
        prod = self._prod_pos[0]
        if max_bytes is not None:
            prod = min(prod, cons + max_bytes)
        data, mask, end, n = self._data, self.mask, self.size, 0
        unpack = struct.unpack_from
        while cons < prod:
            off = cons & mask
            hdr = unpack("<I", data, off)[0]
            if hdr & BUSY:
                break  # reserved, not yet submitted: later records wait for it (the kernel's order)
            size = hdr & ~(BUSY | DISCARD)
            if not hdr & DISCARD:
                start = (off + HDR) & mask
                if start + size <= end:
                    rec = bytes(data[start : start + size])
                else:  # wraps past the end of the single mapping: its tail is at the start
                    rec = bytes(data[start:end]) + bytes(data[: start + size - end])
                lst = sink.get(rec[0])
                if lst is None:
                    sink[rec[0]] = [rec]
                else:
                    lst.append(rec)
                n += 1
            cons += (size + HDR + 7) & ~7
        self._cons_pos[0] = cons  # one store: the kernel never sees a partial position
        return n

    def pending(self) -> int:
        """Bytes the kernel has submitted (or is writing) that the reader has not consumed."""
        return self._prod_pos[0] - self._cons_pos[0]

    def close(self) -> None:
        self._data.release()
        self._cons_pos.release()
        self._prod_pos.release()
        self._prod.close()
        self._cons.close()
