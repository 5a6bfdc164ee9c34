"""dnspeek.messages (numpy, the common shape) equals protocols.dns.parse_like_tshark (the reference,
itself checked against tshark in tests/collector/protocols/test_dns_tshark.py) message for message,
on hand-made, generated and mutated messages, and reads the common shape without the reference."""

from __future__ import annotations

import random

import pytest

from collector.capture import dnspeek
from collector.protocols.dns import parse_like_tshark
from tests.support.dns_wire import common_message, messages, mutations, random_message


@pytest.fixture
def reference_calls(monkeypatch) -> list[bytes]:
    """The payloads the walk handed to the per-message reader."""
    calls: list[bytes] = []

    def counted(data: bytes):
        calls.append(data)
        return parse_like_tshark(data)

    monkeypatch.setattr(dnspeek, "parse_like_tshark", counted)
    return calls


def test_common_shape_read_by_the_walk(reference_calls: list[bytes]) -> None:
    rng = random.Random(3)
    payloads = [common_message(rng) for _ in range(3000)]
    got = dnspeek.messages(payloads)
    assert got == [parse_like_tshark(p) for p in payloads]
    # the walk declines only what the reference declines too, and >8 answers or ::/80 addresses
    assert sum(m is not None for m in got) > 2000
    assert len(reference_calls) < 1000
    assert all(parse_like_tshark(p) is None or p[7] > dnspeek.MAX_ANSWERS or b"\0" * 10 in p for p in reference_calls)


@pytest.mark.parametrize("seed", [1, 2])
def test_every_message_equals_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    base = list(messages().values()) + [random_message(rng) for _ in range(1000)] + [common_message(rng) for _ in range(2000)]
    payloads = base + mutations(rng, base, 20_000) + [b"", b"\0" * 12, bytes(range(256)) * 3]
    assert dnspeek.messages(payloads) == [parse_like_tshark(p) for p in payloads]


def test_empty_and_grouped() -> None:
    assert dnspeek.messages([]) == []
    cases = messages()
    got = dnspeek.messages([cases["a before cname"], cases["aaaa zero runs"], cases["query"]])
    assert got[0].answers == ["192.0.2.7", "2001:db8::7", "Edge.cdn"]  # (the reference's: a CNAME)
    assert got[1].answers == ["2001:db8:0:1::", "fe80::1", "2001:0:1:0:1:0:1:1", "1::"]
    assert (got[2].query, got[2].is_response, got[2].answers) == ("api.example.com", False, [])
