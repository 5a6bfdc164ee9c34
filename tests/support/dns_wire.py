"""DNS messages in wire format for the tests of the native DNS readers (protocols/dns.py
parse_like_tshark, capture/dnspeek.py): hand-made cases, random well-formed messages, mutations."""

from __future__ import annotations

import random
import struct


def name(*labels: bytes) -> bytes:
    return b"".join(bytes([len(x)]) + x for x in labels) + b"\0"


def hdr(tid: int, flags: int, qd: int, an: int, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!6H", tid, flags, qd, an, ns, ar)


def rr(owner: bytes, rtype: int, rdata: bytes, cls: int = 1, ttl: int = 300) -> bytes:
    return owner + struct.pack("!HHIH", rtype, cls, ttl, len(rdata)) + rdata


Q = name(b"Api", b"ExAmple", b"com")  # 0x20 mixed case: the query is lower-cased, CNAMEs are not
QA = Q + b"\0\1\0\1"
PTR_Q = b"\xc0\x0c"  # the question's name
OPT = rr(b"\0", 41, b"", cls=1232)


def messages() -> dict[str, bytes]:
    """Hand-made messages, each a case the native reader must get right or decline."""
    a4 = bytes([192, 0, 2, 7])
    v6 = bytes.fromhex("20010db8000000000000000000000007")
    cname = rr(PTR_Q, 5, name(b"Edge", b"cdn"))
    chain = rr(PTR_Q, 5, b"\x04Edge\xc0\x10") + rr(b"\xc0\x2d", 1, a4)  # compressed target; A owned by it
    soa = rr(b"\xc0\x10", 6, name(b"ns1", b"example", b"com") + name(b"hostmaster", b"example", b"com") + bytes(20))
    return {
        "query": hdr(1, 0x0100, 1, 0) + QA,
        "a": hdr(2, 0x8180, 1, 1) + QA + rr(PTR_Q, 1, a4),
        "a x3": hdr(3, 0x8180, 1, 3) + QA + rr(PTR_Q, 1, a4) + rr(PTR_Q, 1, bytes(4)) + rr(PTR_Q, 1, b"\xff" * 4),
        "aaaa": hdr(4, 0x8180, 1, 1) + Q + b"\0\x1c\0\1" + rr(PTR_Q, 28, v6),
        "aaaa zero runs": hdr(5, 0x8180, 1, 4) + Q + b"\0\x1c\0\1" + b"".join(rr(PTR_Q, 28, bytes.fromhex(x)) for x in (
            "20010db8000000010000000000000000", "fe800000000000000000000000000001", "20010000000100000001000000010001",
            "00010000000000000000000000000000")),
        "aaaa v4 tail": hdr(6, 0x8180, 1, 2) + Q + b"\0\x1c\0\1" + rr(PTR_Q, 28, bytes(10) + b"\xff\xff" + a4)
        + rr(PTR_Q, 28, bytes(12) + a4),
        "cname chain": hdr(7, 0x8180, 1, 2) + QA + chain,
        "cname chain + opt": hdr(8, 0x8180, 1, 2, 0, 1) + QA + chain + OPT,
        "a before cname": hdr(9, 0x8180, 1, 3) + QA + rr(PTR_Q, 1, a4) + cname + rr(PTR_Q, 28, v6),
        "nxdomain + soa": hdr(10, 0x8183, 1, 0, 1, 0) + QA + soa,
        "nxdomain + soa + opt": hdr(11, 0x8183, 1, 0, 1, 1) + QA + soa + OPT,
        "servfail": hdr(12, 0x8182, 1, 0) + QA,
        "refused": hdr(13, 0x8185, 1, 0) + QA,
        "rcode 11": hdr(14, 0x818B, 1, 0) + QA,
        "opt cookie": hdr(15, 0x0120, 1, 0, 0, 1) + QA + rr(b"\0", 41, struct.pack("!HH", 10, 8) + bytes(8), cls=4096),
        "opt ecs + padding": hdr(16, 0x8180, 1, 1, 0, 1) + QA + rr(PTR_Q, 1, a4) + rr(
            b"\0", 41, struct.pack("!HHHBB", 8, 7, 1, 24, 0) + bytes(3) + struct.pack("!HH", 12, 5) + bytes(5), cls=1232),
        "opt ext rcode": hdr(17, 0x8180, 1, 0, 0, 1) + QA + rr(b"\0", 41, b"", cls=1232, ttl=1 << 24),
        "opt unknown option": hdr(18, 0x8180, 1, 0, 0, 1) + QA + rr(b"\0", 41, struct.pack("!HH", 15, 2) + b"\0\1"),
        "glue in additional": hdr(19, 0x8180, 1, 1, 1, 2) + QA + rr(PTR_Q, 1, a4) + rr(b"\xc0\x10", 2, name(b"ns1", b"x"))
        + rr(name(b"ns1", b"x"), 1, b"\x0a\0\0\1") + rr(name(b"ns1", b"x"), 28, v6),
        "ns answers": hdr(20, 0x8180, 1, 1) + Q + b"\0\2\0\1" + rr(PTR_Q, 2, name(b"ns1", b"Example")),
        "mx answers": hdr(21, 0x8180, 1, 1) + Q + b"\0\x0f\0\1" + rr(PTR_Q, 15, b"\0\x0a" + name(b"mx", b"example")),
        "ptr": hdr(22, 0x8180, 1, 1) + name(b"7", b"2", b"0", b"192", b"in-addr", b"arpa") + b"\0\x0c\0\1"
        + rr(PTR_Q, 12, name(b"host", b"example")),
        "two questions": hdr(23, 0x0100, 2, 0) + QA + name(b"two") + b"\0\x1c\0\1",
        "two questions answered": hdr(24, 0x8180, 2, 2) + QA + name(b"two") + b"\0\x1c\0\1" + rr(PTR_Q, 1, a4)
        + rr(b"\xc0\x25", 28, v6),
        "no question": hdr(25, 0x8180, 0, 1) + rr(name(b"x"), 1, a4),
        "root query": hdr(26, 0x0100, 1, 0) + b"\0\0\2\0\1",
        "unknown qtype": hdr(27, 0x0100, 1, 0) + Q + b"\xff\x00\0\1",
        "https qtype": hdr(28, 0x0100, 1, 0) + Q + b"\0\x41\0\1",
        "trailing dot style": hdr(29, 0x0100, 1, 0) + name(b"a", b"b") + b"\0\1\0\1",
        "digits _ -": hdr(30, 0x0100, 1, 0) + name(b"_dmarc", b"x-1", b"9") + b"\0\x10\0\1",
        "odd chars": hdr(31, 0x0100, 1, 0) + name(b"a b", b"c,d", b"e.f", b"g\\h", b"\x01\xff") + b"\0\1\0\1",
        "utf-8 label": hdr(32, 0x0100, 1, 0) + name("été".encode(), b"example") + b"\0\1\0\1",
        "escaped cname": hdr(33, 0x8180, 1, 1) + QA + rr(PTR_Q, 5, name(b"a.b", b"c")),
        "name 253": hdr(34, 0x0100, 1, 0) + name(b"a" * 63, b"b" * 63, b"c" * 63, b"d" * 61) + b"\0\1\0\1",
        "name 254": hdr(35, 0x0100, 1, 0) + name(b"a" * 63, b"b" * 63, b"c" * 63, b"d" * 62) + b"\0\1\0\1",
        "forward pointer": hdr(36, 0x0100, 1, 0) + b"\xc0\x12\0\1\0\1" + name(b"fwd"),
        "pointer loop": hdr(37, 0x0100, 1, 0) + b"\x01a\xc0\x0c\0\1\0\1",
        "truncated": (hdr(38, 0x8180, 1, 1) + QA + rr(PTR_Q, 1, a4))[:-2],
        "trailing bytes": hdr(39, 0x8180, 1, 1) + QA + rr(PTR_Q, 1, a4) + b"\0\0",
        "tc bit": hdr(40, 0x8380, 1, 0) + QA,
        "update opcode": hdr(41, 0x2800, 1, 0) + Q + b"\0\6\0\1",
        "class chaos": hdr(42, 0x0100, 1, 0) + name(b"version", b"bind") + b"\0\x10\0\3",
        "a wrong length": hdr(43, 0x8180, 1, 1) + QA + rr(PTR_Q, 1, a4 + b"\0"),
        "txt answer": hdr(44, 0x8180, 1, 1) + Q + b"\0\x10\0\1" + rr(PTR_Q, 16, b"\x03abc"),
        "short": b"\0\1\1\0",
    }


def mutations(rng: random.Random, base: list[bytes], count: int) -> list[bytes]:
    out = []
    for _ in range(count):
        d = bytearray(rng.choice(base))
        for _ in range(rng.choice((1, 1, 2, 3))):
            kind = rng.random()
            if kind < 0.5 and d:
                d[rng.randrange(len(d))] = rng.choice((0, 1, 0xC0, 0xFF, rng.randrange(256), 0x3F, 0x20, 5, 41, 28))
            elif kind < 0.7 and d:
                del d[rng.randrange(len(d)):]
            elif kind < 0.85:
                at = rng.randrange(len(d) + 1)
                d[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 5)))
            elif len(d) > 12:  # counts
                d[rng.choice((5, 7, 9, 11))] = rng.randrange(4)
        out.append(bytes(d))
    return out


def random_message(rng: random.Random) -> bytes:
    """A well-formed message from random parts: names with compression and case, every record kind."""
    labels = [b"api", b"Cdn", b"x-1", b"_srv", b"EXAMPLE", b"com", b"a" * 40, b"9"]
    qn = name(*rng.sample(labels, rng.randrange(1, 5)))
    qd = rng.choice((0, 1, 1, 1, 2))
    body = b"".join(name(*rng.sample(labels, rng.randrange(1, 4))) + struct.pack("!HH", rng.choice((1, 28, 5, 65, 2)), 1)
                    for _ in range(max(qd - 1, 0)))
    body = (qn + struct.pack("!HH", rng.choice((1, 28, 5, 65, 2, 255)), 1) + body) if qd else body
    counts = [0, 0, 0]
    rrs = b""
    for sec in range(3):
        for _ in range(rng.choice((0, 0, 1, 2, 3)) if sec == 0 else rng.choice((0, 0, 0, 1))):
            owner = PTR_Q if qd and rng.random() < 0.7 else name(*rng.sample(labels, 2))
            kind = rng.choice((1, 1, 28, 28, 5, 5, 2, 6, 12, 15, 41))
            if kind == 1:
                rrs += rr(owner, 1, bytes(rng.randrange(256) for _ in range(4)))
            elif kind == 28:
                v = bytearray(rng.randrange(256) for _ in range(16))
                for i in range(16):  # zero runs of every length and place
                    if rng.random() < 0.4:
                        v[i] = 0
                rrs += rr(owner, 28, bytes(v))
            elif kind == 41:
                rrs += rr(b"\0", 41, b"", cls=1232)
            elif kind == 6:
                rrs += rr(owner, 6, name(*rng.sample(labels, 2)) + PTR_Q[: 2 if qd else 0] + (b"" if qd else b"\0") + bytes(20))
            else:
                target = name(*rng.sample(labels, rng.randrange(1, 3)))
                if qd and rng.random() < 0.5:
                    target = target[:-1] + PTR_Q  # labels, then a pointer to the question
                rrs += rr(owner, kind, (b"\0\5" if kind == 15 else b"") + target)
            counts[sec] += 1
    flags = rng.choice((0x0100, 0x8180, 0x8183, 0x8182, 0x8580, 0x8380))
    return hdr(rng.randrange(65536), flags, qd, *counts) + body + rrs


def common_message(rng: random.Random) -> bytes:
    """The shape capture/dnspeek.py reads with numpy: a query, or an answer of A/AAAA records owned by
    a pointer to the question (names of mixed case, addresses with zero runs)."""
    labels = [b"api", b"Cdn", b"x-1", b"_srv", b"EXAMPLE", b"com", b"b" * 63, b"9", b"a"]
    qn = name(*[rng.choice(labels) for _ in range(rng.randrange(1, 6))])
    qtype = rng.choice((1, 28, 65, 1))
    tid = rng.randrange(65536)
    if rng.random() < 0.3:
        return hdr(tid, rng.choice((0x0100, 0x0000)), 1, 0) + qn + struct.pack("!HH", qtype, 1)
    rrs = []
    for _ in range(rng.choice((0, 1, 1, 2, 3, 8, 9))):
        if rng.random() < 0.5:
            rrs.append(rr(PTR_Q, 1, bytes(rng.randrange(256) for _ in range(4))))
        else:
            v = bytearray(rng.randrange(256) for _ in range(16))
            for i in range(16):
                if rng.random() < 0.4:
                    v[i] = 0
            rrs.append(rr(PTR_Q, 28, bytes(v)))
    flags = rng.choice((0x8180, 0x8183, 0x8182, 0x8580, 0x8380, 0x818B))
    return hdr(tid, flags, 1, len(rrs)) + qn + struct.pack("!HH", qtype, 1) + b"".join(rrs)
