"""Content-Encoding removal: `deflate` told from raw deflate by its first two bytes whatever the
reads, chains undone in reverse, bombs bounded, corrupt bodies reported (see also test_http1 and the
round trips in test_fuzz_parsers)."""

from __future__ import annotations

import gzip
import os
import zlib

import pytest

from collector.protocols.encoding import BodyDecoder, _zlib_header

DATA = os.urandom(3000) + "Grüße 🚀".encode() * 200


def _raw(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


def _decode(enc: str, wire: bytes, cut: int) -> tuple[bytes, str | None]:
    d = BodyDecoder(enc)
    out = b"".join(d.feed(wire[i : i + cut]) for i in range(0, len(wire), cut)) + d.flush()
    return out, d.error


@pytest.mark.parametrize("cut", [1, 2, 3, 64, 1 << 20])
@pytest.mark.parametrize("wire", [zlib.compress(DATA), _raw(DATA)], ids=["zlib", "raw"])
def test_deflate_zlib_or_raw_in_any_reads(wire: bytes, cut: int) -> None:
    assert _decode("deflate", wire, cut) == (DATA, None)


def test_zlib_header_rule() -> None:
    assert _zlib_header(zlib.compress(b"x")[:2]) and _zlib_header(b"\x78\x9c") and _zlib_header(b"\x08\x1d")
    assert not _zlib_header(b"\x78\x9d")  # checksum wrong
    assert not _zlib_header(b"\x7a\x9c") and not _zlib_header(b"\x88\x98")  # method not 8; window > 32 KiB
    assert not _zlib_header(b"\x78\xbb")  # preset dictionary


def test_short_deflate_bodies() -> None:
    assert _decode("deflate", b"", 1) == (b"", None)
    assert _decode("deflate", b"\x03\x00", 1) == (b"", None)  # an empty raw deflate stream
    assert _decode("deflate", zlib.compress(b""), 1) == (b"", None)


def test_chain_gzip_then_deflate_and_unknown_coding() -> None:
    wire = zlib.compress(gzip.compress(DATA))
    assert _decode("gzip, deflate", wire, 7) == (DATA, None)
    out, error = _decode("compress", b"abc", 1)
    assert out == b"" and error == "unsupported content-encoding 'compress'"


def test_corrupt_body_is_an_error_not_an_exception() -> None:
    out, error = _decode("gzip", gzip.compress(DATA)[:50] + b"\xff" * 40, 10)
    assert error == "content decoding failed: error" and DATA.startswith(out)
