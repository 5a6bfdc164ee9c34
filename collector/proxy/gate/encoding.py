"""Content-Encoding for bodies the gate rewrote: the same codings the router used, applied again
(the inverse of collector.protocols.encoding, which removes them).

HTTP/2 cannot change a Content-Length header that already went out (HPACK state is shared by the
whole connection), so `encode_exact` makes an encoded body exactly as long as the original: gzip
pads its header's comment field, zstd appends a skippable frame, identity JSON pads with
whitespace; otherwise trailing whitespace in the JSON is varied until a length fits.
"""

from __future__ import annotations

import gzip
import struct
import zlib

import brotli
import zstandard


def codings(content_encoding: str | None) -> list[str]:
    return [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip() and c.strip().lower() != "identity"]


def _one(data: bytes, coding: str) -> bytes:
    if coding in ("gzip", "x-gzip"):
        return gzip.compress(data, mtime=0)
    if coding == "deflate":
        return zlib.compress(data)
    if coding == "br":
        return brotli.compress(data)
    if coding == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    raise ValueError(f"cannot encode {coding!r}")


def encode_all(data: bytes, content_encoding: str | None) -> bytes:
    """Apply the codings in the order the header lists them (the sender applied them left to right)."""
    for c in codings(content_encoding):
        data = _one(data, c)
    return data


def _gzip_padded(data: bytes, length: int) -> bytes | None:
    """A gzip member of exactly `length` bytes: FCOMMENT in the header takes the slack."""
    body = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = body.compress(data) + body.flush()
    trailer = struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)
    bare = 10 + len(deflated) + len(trailer)
    slack = length - bare
    if slack == 0:
        return b"\x1f\x8b\x08\x00" + b"\x00" * 4 + b"\x00\xff" + deflated + trailer
    if slack < 1:
        return None
    comment = b" " * (slack - 1) + b"\x00"
    return b"\x1f\x8b\x08\x10" + b"\x00" * 4 + b"\x00\xff" + comment + deflated + trailer


def _zlib_padded(data: bytes, length: int) -> bytes | None:
    """A zlib stream of exactly `length` bytes: the body compressed up to a sync point, then a final
    stored block of spaces (JSON whitespace after the value) takes the slack."""
    c = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS)
    head = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    n = length - len(head) - 5 - 4
    if not 0 <= n <= 0xFFFF:
        return None
    pad = b" " * n
    return (head + b"\x01" + n.to_bytes(2, "little") + (n ^ 0xFFFF).to_bytes(2, "little") + pad
            + zlib.adler32(data + pad).to_bytes(4, "big"))


def _zstd_padded(data: bytes, length: int) -> bytes | None:
    frame = zstandard.ZstdCompressor().compress(data)
    slack = length - len(frame)
    if slack == 0:
        return frame
    if slack < 8:
        return None
    return frame + struct.pack("<II", 0x184D2A50, slack - 8) + b"\x00" * (slack - 8)


_WS = b" \t\n\r"


def _whitespace(n: int) -> bytes:
    """n bytes of JSON whitespace that compress poorly (a fixed pseudo-random mix), so a compressed
    body's length can be steered a byte at a time."""
    x, out = 2463534242, bytearray()
    for _ in range(n):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out.append(_WS[x & 3])
    return bytes(out)


_PADDED = {"gzip": _gzip_padded, "x-gzip": _gzip_padded, "deflate": _zlib_padded, "zstd": _zstd_padded}


def encode_exact(data: bytes, content_encoding: str | None, length: int) -> bytes | None:
    """An encoding of `data` (a JSON body: whitespace may follow it) that is exactly `length` bytes
    long, or None when no padding reaches that length."""
    cs = codings(content_encoding)
    if not cs:
        return data + b" " * (length - len(data)) if len(data) <= length else None
    if len(cs) == 1 and cs[0] in _PADDED:
        out = _PADDED[cs[0]](data, length)
        if out is not None:
            return out
    lo, hi = 0, 4 * length  # search the amount of hard-to-compress whitespace
    while lo < hi:
        mid = (lo + hi) // 2
        if len(encode_all(data + _whitespace(mid), content_encoding)) < length:
            lo = mid + 1
        else:
            hi = mid
    for k in range(max(0, lo - 64), lo + 64):
        out = encode_all(data + _whitespace(k), content_encoding)
        if len(out) == length:
            return out
    return None
