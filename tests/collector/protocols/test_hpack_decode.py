"""collector/protocols/hpack_decode.py against the hpack library's Decoder: the same header lists from
real encoder output (Huffman or not, indexing, never-indexed, table size changes) and the same
outcome (headers or an error) on random bytes."""

from __future__ import annotations

import random

import hpack
from hpack.exceptions import HPACKError

from collector.protocols.hpack_decode import HpackDecoder

NAMES = [b":method", b":path", b"content-type", b"x-litellm-call-id", b"authorization", "ünï".encode()]
VALUES = [b"GET", b"/v1/chat/completions", b"application/json", b"Bearer sk-xyz", b"a" * 300, "数据".encode()]


def _ref() -> hpack.Decoder:
    d = hpack.Decoder(max_header_list_size=1 << 20)
    d.max_allowed_table_size = 1 << 24
    return d


def _outcome(decode, data: bytes):
    try:
        return [tuple(x) for x in decode(data)]
    except (HPACKError, ValueError, IndexError, UnicodeDecodeError):
        return "error"


def test_same_headers_as_hpack_on_encoder_output():
    rnd = random.Random(3)
    for _ in range(150):
        enc, ref, mine = hpack.Encoder(), _ref(), HpackDecoder(1 << 20)
        if rnd.random() < 0.3:
            enc.header_table_size = rnd.choice([0, 64, 256, 1024, 8192])
        for _ in range(8):
            headers = [(rnd.choice(NAMES), rnd.randbytes(rnd.randint(0, 40)) if rnd.random() < 0.3 else rnd.choice(VALUES))
                       for _ in range(rnd.randint(1, 8))]
            headers = [h if rnd.random() < 0.8 else hpack.NeverIndexedHeaderTuple(*h) for h in headers]
            data = enc.encode(headers, huffman=rnd.random() < 0.7)
            assert mine.decode(data) == [tuple(x) for x in ref.decode(data, raw=True)] == [tuple(h) for h in headers]


def test_same_outcome_as_hpack_on_random_bytes():
    rnd = random.Random(5)
    for _ in range(5000):
        data = rnd.randbytes(rnd.randint(0, 40))
        assert _outcome(HpackDecoder(1 << 20).decode, data) == _outcome(lambda d: _ref().decode(d, raw=True), data)
