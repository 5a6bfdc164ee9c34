"""HPACK header-block decoding for a passive HTTP/2 observer (RFC 7541), one decoder per direction.

The static table and the Huffman code are the `hpack` library's; the loop is ours because
hpack.Decoder logs every header field at debug level and copies the rest of the block for every
literal, which made it ~45% of our HTTP/2 parsing. Huffman-coded strings are cached: the same
values (content types, paths, authorities, user agents) repeat across requests. Errors are
hpack's exception types, so callers handle both alike.
"""

from __future__ import annotations

from collections import deque
from functools import lru_cache

from hpack.exceptions import (
    HPACKDecodingError,
    InvalidTableIndexError,
    InvalidTableSizeError,
    OversizedHeaderListError,
)
from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

_STATIC: tuple[tuple[bytes, bytes], ...] = HeaderTable.STATIC_TABLE
_N_STATIC = len(_STATIC)
_MAX_INT_BYTES = 5  # prefix + uint32, as hpack allows
_huffman = lru_cache(maxsize=4096)(decode_huffman)


def _int(data: bytes, pos: int, bits: int) -> tuple[int, int]:
    """An HPACK integer with a `bits`-bit prefix at `pos` -> (value, next position)."""
    mask = (1 << bits) - 1
    try:
        v = data[pos] & mask
        pos += 1
        if v == mask:
            shift = 0
            for _ in range(_MAX_INT_BYTES):
                b = data[pos]
                pos += 1
                v += (b & 0x7F) << shift
                if b < 0x80:
                    return v, pos
                shift += 7
            raise HPACKDecodingError("variable integer representation is too long")
    except IndexError:
        raise HPACKDecodingError("Unable to decode HPACK integer representation") from None
    return v, pos


class HpackDecoder:
    """`decode(block)` -> [(name, value)] as bytes; keeps the dynamic table across blocks."""

    __slots__ = ("dynamic", "size", "max_size", "max_allowed", "max_list")

    def __init__(self, max_header_list_size: int, max_allowed_table_size: int = 1 << 24):
        self.dynamic: deque[tuple[bytes, bytes]] = deque()  # newest first
        self.size = 0
        self.max_size = 4096  # SETTINGS_HEADER_TABLE_SIZE default until the encoder says otherwise
        self.max_allowed = max_allowed_table_size  # a passive observer stays lenient
        self.max_list = max_header_list_size

    def decode(self, data: bytes) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        total = 0
        pos, n = 0, len(data)
        while pos < n:
            b = data[pos]
            if b & 0x80:  # indexed field
                idx, pos = _int(data, pos, 7)
                field = self._get(idx)
            elif b & 0x40:  # literal with incremental indexing
                name, value, pos = self._literal(data, pos, 6)
                field = (name, value)
                self._add(name, value)
            elif b & 0x20:  # dynamic table size update
                if out:
                    raise HPACKDecodingError("Table size update not at the start of the block")
                size, pos = _int(data, pos, 5)
                if size > self.max_allowed:
                    raise InvalidTableSizeError("Encoder exceeded max allowable table size")
                self.max_size = size
                self._evict()
                continue
            else:  # literal without indexing / never indexed
                name, value, pos = self._literal(data, pos, 4)
                field = (name, value)
            out.append(field)
            total += len(field[0]) + len(field[1]) + 32
            if total > self.max_list:
                raise OversizedHeaderListError(f"A header list larger than {self.max_list} has been received")
        return out

    def _get(self, idx: int) -> tuple[bytes, bytes]:
        if 0 < idx <= _N_STATIC:
            return _STATIC[idx - 1]
        d = idx - _N_STATIC - 1
        if idx == 0 or d >= len(self.dynamic):
            raise InvalidTableIndexError(f"Invalid table index {idx}")
        return self.dynamic[d]

    def _literal(self, data: bytes, pos: int, bits: int) -> tuple[bytes, bytes, int]:
        idx, pos = _int(data, pos, bits)
        if idx:
            name = self._get(idx)[0]
        else:
            name, pos = self._string(data, pos)
        value, pos = self._string(data, pos)
        return name, value, pos

    @staticmethod
    def _string(data: bytes, pos: int) -> tuple[bytes, int]:
        if pos >= len(data):
            raise HPACKDecodingError("Truncated header block")
        huff = data[pos] & 0x80
        ln, pos = _int(data, pos, 7)
        s = data[pos : pos + ln]
        if len(s) != ln:
            raise HPACKDecodingError("Truncated header block")
        return (_huffman(s) if huff else s), pos + ln

    def _add(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + 32
        if size > self.max_size:  # RFC 7541 4.4: an entry larger than the table empties it
            self.dynamic.clear()
            self.size = 0
            return
        self.dynamic.appendleft((name, value))
        self.size += size
        self._evict()

    def _evict(self) -> None:
        while self.size > self.max_size and self.dynamic:
            n, v = self.dynamic.pop()
            self.size -= len(n) + len(v) + 32
