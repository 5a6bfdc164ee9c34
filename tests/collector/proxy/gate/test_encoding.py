"""Content-Encoding again for rewritten bodies: every coding round-trips through the shared decoder,
and an encoded body can be made exactly as long as a Content-Length that already went out."""

from __future__ import annotations

import json

import pytest

from collector.protocols.encoding import decode_all
from collector.proxy.gate.encoding import encode_all, encode_exact

BODY = json.dumps({"choices": [{"message": {"content": "routerwatch blocked a tool call " * 3}}]}).encode()


@pytest.mark.parametrize("ce", [None, "identity", "gzip", "deflate", "br", "zstd", "gzip, br"])
def test_round_trip(ce: str | None) -> None:
    out, err = decode_all(encode_all(BODY, ce), ce)
    assert err is None and out == BODY


@pytest.mark.parametrize("ce", [None, "gzip", "deflate", "br", "zstd"])
@pytest.mark.parametrize("slack", [0, 1, 7, 40, 300])
def test_exact_length(ce: str | None, slack: int) -> None:
    length = len(encode_all(BODY, ce)) + slack
    out = encode_exact(BODY, ce, length)
    if out is None:  # a few bytes of room may be too little for a compressed body's padding, never more
        assert ce in ("deflate", "br", "zstd") and slack < 16
        return
    assert len(out) == length
    plain, err = decode_all(out, ce)
    assert err is None and json.loads(plain) == json.loads(BODY)  # the padding is JSON whitespace


def test_too_short_a_length_is_refused() -> None:
    assert encode_exact(BODY, None, len(BODY) - 1) is None
    assert encode_exact(BODY, "gzip", 10) is None
