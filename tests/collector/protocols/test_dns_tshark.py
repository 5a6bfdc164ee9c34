"""parse_like_tshark against tshark itself: for every DNS-over-UDP payload it reads, the DnsMessage
must be the one the ingest makes of tshark's fields (capture/dissect.py); whatever it declines goes to
tshark. Generated messages (every record kind and section, compression, odd labels and addresses) and
thousands of mutations of them: a wrong guess shows as a difference, a decline only costs speed."""

from __future__ import annotations

import random
import shutil
import struct
import subprocess

import pytest

from collector.capture import dissect, tshark
from collector.protocols.dns import DnsMessage, parse_like_tshark
from tests.support.dns_wire import common_message, messages, mutations, random_message

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")

ETH = b"\x02\0\0\0\0\x01\x02\0\0\0\0\x02\x08\x00"


def _frame(payload: bytes, sport: int = 53, dport: int = 40000) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, bytes([10, 0, 0, 53]),
                     bytes([10, 0, 0, 2])) + udp
    return ETH + ip


def tshark_messages(payloads: list[bytes]) -> list[list[DnsMessage]]:
    """What the ingest reads from tshark for each payload sent from port 53 (one UDP frame each)."""
    cap = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for i, p in enumerate(payloads):
        f = _frame(p)
        cap += struct.pack("<IIII", 1_700_000_000 + i, 0, len(f), len(f)) + f
    args = tshark.base_args() + ["-r", "-", "-Y", dissect.DISPLAY_FILTER] + tshark.fields_args(dissect.FIELDS)
    out = subprocess.run(args, input=cap, capture_output=True, check=True, timeout=300).stdout.decode("utf-8", "replace")
    msgs, _ = dissect.parse(out)
    by_frame: list[list[DnsMessage]] = [[] for _ in payloads]
    for m in msgs:
        by_frame[m.frame - 1].append(m)
    return by_frame


def compare(payloads: list[bytes]) -> tuple[int, int]:
    """(messages read natively, declined); asserts every one read equals tshark's."""
    read = 0
    for p, want in zip(payloads, tshark_messages(payloads), strict=True):
        got = parse_like_tshark(p)
        if got is None:
            continue
        read += 1
        got.frame = want[0].frame if len(want) == 1 else -1
        assert [got] == want, p.hex()
    return read, len(payloads) - read


def test_hand_made_messages_equal_tshark() -> None:
    cases = messages()
    read, declined = compare(list(cases.values()))
    for must in ("a", "aaaa", "cname chain", "cname chain + opt", "nxdomain + soa + opt", "two questions answered",
                 "opt ecs + padding", "glue in additional", "root query", "name 253"):
        assert parse_like_tshark(cases[must]) is not None, must
    for odd in ("aaaa v4 tail", "odd chars", "utf-8 label", "escaped cname", "name 254", "forward pointer",
                "pointer loop", "truncated", "trailing bytes", "update opcode", "opt unknown option", "short"):
        assert parse_like_tshark(cases[odd]) is None, odd
    assert (read, declined) == (29, 16)


def test_grouping_follows_dissect() -> None:
    """One question and answers only: grouped A, AAAA, CNAME (dissect._dns_simple); with an OPT
    record the same answers come in wire order (the per-record walk)."""
    cases = messages()
    assert parse_like_tshark(cases["cname chain"]).answers == ["192.0.2.7", "Edge.ExAmple.com"]
    assert parse_like_tshark(cases["cname chain + opt"]).answers == ["Edge.ExAmple.com", "192.0.2.7"]
    m = parse_like_tshark(cases["a"])
    assert (m.query, m.qtype, m.rcode, m.is_response, m.trans_id) == ("api.example.com", "A", "NOERROR", True, 2)


def test_generated_and_mutated_messages_equal_tshark() -> None:
    rng = random.Random(17)
    base = list(messages().values()) + [random_message(rng) for _ in range(1500)]
    base += [common_message(rng) for _ in range(1500)]
    read, declined = compare(base)
    assert read >= 2500  # the generated ones are plain: most must be read natively
    read_m, declined_m = compare(mutations(rng, base, 10_000))
    assert read_m >= 800 and declined_m >= 5000
