"""pcap/pcapng readers and the vectorised header walk on crafted captures (scapy builds the packets).

Covers the fast-path link types, stacked VLAN tags, IPv6 extension headers, IPv4 fragments,
big-endian and nanosecond pcap, and pcapng with several interfaces of different link types and
time resolutions; plus Community ID and JA4 against their references.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import numpy as np
import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop
from scapy.layers.l2 import CookedLinux, Dot1AD, Dot1Q, Ether, Loopback
from scapy.packet import Raw

from collector.capture import flows, headers
from collector.capture.community_id import community_id
from collector.capture.ja4 import ja4
from collector.capture.records import MappedFile, read_records
from collector.ingest import ingest
from collector.store import Store

T0 = 1_700_000_000


def write_pcap(path: Path, linktype: int, frames: list[bytes], *, endian: str = "<", nano: bool = False) -> None:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)]
    for i, f in enumerate(frames):
        frac = i * 1000 if nano else i
        out.append(struct.pack(endian + "IIII", T0 + i, frac, len(f), len(f)) + f)
    path.write_bytes(b"".join(out))


def _block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def write_pcapng(path: Path, ifaces: list[tuple[int, int | None, int]], packets: list[tuple[int, int, bytes]]) -> None:
    """ifaces: (linktype, if_tsresol byte or None, if_tsoffset seconds); packets: (iface, ticks, frame)."""
    out = [_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    for lt, res, off in ifaces:
        opts = b""
        if res is not None:
            opts += struct.pack("<HHB3x", 9, 1, res)
        if off:
            opts += struct.pack("<HHq", 14, 8, off)
        opts += struct.pack("<HH", 0, 0)
        out.append(_block(1, struct.pack("<HHI", lt, 0, 0) + opts))
    out.append(_block(0x0A, struct.pack("<II", 0x544C534B, 23) + b"CLIENT_RANDOM aa bb\n# x\n"[:23]))
    for iface, ticks, frame in packets:
        out.append(_block(6, struct.pack("<IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame)) + frame))
    path.write_bytes(b"".join(out))


def walk(path: Path):
    mf = MappedFile(path)
    rec = read_records(path, mf)
    return rec, headers.walk(mf.buf, rec)


def tcp4(sport: int = 40000, dport: int = 443, flags: str = "S", payload: bytes = b"") -> IP:
    p = IP(src="10.0.0.1", dst="10.0.0.2", id=7) / TCP(sport=sport, dport=dport, flags=flags, seq=100)
    return p / Raw(payload) if payload else p


@pytest.mark.parametrize(
    "linktype, frame",
    [
        (1, bytes(Ether() / tcp4())),
        (1, bytes(Ether() / Dot1AD(vlan=10) / Dot1Q(vlan=20) / Dot1Q(vlan=30) / tcp4())),  # QinQinQ
        (0, bytes(Loopback(type=2) / tcp4())),  # NULL, host byte order
        (108, struct.pack(">I", 2) + bytes(tcp4())),  # LOOP, network byte order
        (101, bytes(tcp4())),  # RAW
        (228, bytes(tcp4())),  # IPV4
        (113, bytes(CookedLinux(proto=0x0800) / tcp4())),  # LINUX_SLL
        (276, struct.pack(">HHIHBB8s", 0x0800, 0, 2, 1, 0, 6, b"\0" * 8) + bytes(tcp4())),  # LINUX_SLL2
    ],
    ids=["ether", "qinqinq", "null", "loop", "raw", "ipv4", "sll", "sll2"],
)
def test_link_types(tmp_path: Path, linktype: int, frame: bytes) -> None:
    path = tmp_path / "x.pcap"
    write_pcap(path, linktype, [frame])
    rec, h = walk(path)
    assert h.ok.tolist() == [True]
    assert (h.ver[0], h.proto[0], h.sport[0], h.dport[0], h.flags[0]) == (4, 6, 40000, 443, 0x02)
    assert int(h.src_lo[0]) & 0xFFFFFFFF == 0x0A000001
    assert int(h.dst_lo[0]) & 0xFFFFFFFF == 0x0A000002


def test_big_endian_and_nanosecond_pcap(tmp_path: Path) -> None:
    frames = [bytes(Ether() / tcp4(payload=b"x" * 10)), bytes(Ether() / tcp4(flags="A"))]
    for endian in "<>":
        for nano in (False, True):
            path = tmp_path / f"{endian == '>'}{nano}.pcap"
            write_pcap(path, 1, frames, endian=endian, nano=nano)
            rec, h = walk(path)
            assert rec.ts_ns.tolist() == [T0 * 10**9, (T0 + 1) * 10**9 + 1000]
            assert h.plen.tolist() == [10, 0]


def test_pcap_damage_is_reported_at_the_record_it_begins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every whole record before the damage is kept, on both sides of a release span; the error names
    the damaged record's offset."""
    import collector.capture.pcap as pcap

    monkeypatch.setattr(pcap, "RELEASE_SPAN", 4096)  # many spans in a small file
    frames = [bytes(Ether() / tcp4(payload=bytes(40 + i % 90))) for i in range(400)]
    path = tmp_path / "ok.pcap"
    write_pcap(path, 1, frames)
    whole = path.read_bytes()
    offsets, off = [], 24
    for f in frames:
        offsets.append(off)
        off += 16 + len(f)
    rec = read_records(path, MappedFile(path))
    assert (len(rec), rec.truncated, rec.error) == (400, False, None)
    assert (rec.data_off - 16).tolist() == offsets
    cases = {
        "packet": (whole[:offsets[300] + 20], 300, f"cut short in the middle of a packet at byte {offsets[300]}"),
        "header": (whole[:offsets[300] + 10], 300, f"cut short in the middle of a record header at byte {offsets[300]}"),
        "corrupt": (whole[:offsets[250] + 8] + struct.pack("<I", (1 << 20) + 1) + whole[offsets[250] + 12:], 250,
                    f"corrupt record at byte {offsets[250]}: captured length {(1 << 20) + 1}"),
        "last": (whole[:-1], 399, f"cut short in the middle of a packet at byte {offsets[399]}"),
    }
    for name, (data, kept, error) in cases.items():
        cut = tmp_path / f"{name}.pcap"
        cut.write_bytes(data)
        rec = read_records(cut, MappedFile(cut))
        assert (len(rec), rec.truncated, rec.error) == (kept, True, error), name
        assert (rec.data_off - 16).tolist() == offsets[:kept], name


def test_pcap_chain_equals_the_record_loop_on_hostile_payloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pcap._chain (numpy) finds exactly the records a one-record-at-a-time walk finds: payloads full
    of fake record headers with the capture's timestamp bits, timestamps that cross 18-hour windows
    (the chain hands over to the loop there), in both byte orders, across many release spans, and
    with damage at the end."""
    import collector.capture.pcap as pcap

    monkeypatch.setattr(pcap, "RELEASE_SPAN", 4096)
    rng = random.Random(5)
    for endian in "<>":
        out = [struct.pack(endian + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
        offsets, off, sec = [], 24, T0
        for i in range(3000):
            sec += rng.choice([0, 1, 7, 70_000]) if i % 400 == 399 else rng.choice([0, 0, 1])
            fake_sec = rng.choice([sec, sec, T0, sec - 70_000, sec + 70_000])  # this window and others
            fake = struct.pack(endian + "IIII", fake_sec, rng.randrange(10**6), rng.randrange(1, 200), 60)
            body = bytearray(rng.randbytes(rng.randrange(0, 300)))
            for _ in range(rng.randrange(0, 4)):  # fake headers at random places, some half outside
                at = rng.randrange(-8, max(1, len(body)))
                for k, b in enumerate(fake):
                    if 0 <= at + k < len(body):
                        body[at + k] = b
            offsets.append(off)
            out.append(struct.pack(endian + "IIII", sec, i % 10**6, len(body), len(body) + i % 3) + bytes(body))
            off += 16 + len(body)
        path = tmp_path / f"hostile{endian == '>'}.pcap"
        whole = b"".join(out)
        for data, kept in ((whole, 3000), (whole[:offsets[2500] + 30], 2500), (whole[:offsets[2999] + 9], 2999)):
            path.write_bytes(data)
            rec = read_records(path, MappedFile(path))
            assert len(rec) == kept
            assert (rec.data_off - 16).tolist() == offsets[:kept]
            assert rec.truncated == (kept < 3000)


def test_ipv6_extension_headers_and_ipv4_fragments(tmp_path: Path) -> None:
    v6 = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop() / UDP(sport=5000, dport=53) / Raw(b"q" * 20)
    big = IP(src="10.0.0.1", dst="10.0.0.53", id=4242) / UDP(sport=5001, dport=53) / Raw(b"r" * 3000)
    frags = fragment(big, fragsize=1000)
    path = tmp_path / "x.pcap"
    write_pcap(path, 1, [bytes(Ether() / v6)] + [bytes(Ether() / f) for f in frags])
    rec, h = walk(path)
    assert (h.ver[0], h.proto[0], h.sport[0], h.dport[0], h.plen[0]) == (6, 17, 5000, 53, 20)
    assert h.frag_first.tolist() == [False, True] + [False] * (len(frags) - 1)
    assert h.frag_later.tolist() == [False, False] + [True] * (len(frags) - 1)
    fa = flows.assign(h)
    assert fa.count == 2
    assert len(set(fa.fid[1:].tolist())) == 1  # every fragment joined the first fragment's flow
    agg = flows.aggregate(h, fa, rec.ts_ns)
    assert agg.column("packets_out").to_pylist()[fa.fid[1]] == len(frags)
    assert agg.column("bytes_out").to_pylist()[fa.fid[1]] == 3000


def test_pcapng_interfaces_resolutions_and_secrets(tmp_path: Path) -> None:
    path = tmp_path / "x.pcapng"
    f_eth = bytes(Ether() / tcp4())
    f_raw = bytes(tcp4(sport=40001))
    write_pcapng(
        path,
        [(1, None, 0), (101, 9, 0), (1, 0x80 | 20, 10)],  # microseconds; nanoseconds; 2^-20 s + 10 s offset
        [(0, T0 * 10**6 + 5, f_eth), (1, T0 * 10**9 + 7, f_raw), (2, T0 << 20, f_eth)],
    )
    rec, h = walk(path)
    assert rec.linktypes == [1, 101, 1]
    assert rec.ts_ns.tolist() == [T0 * 10**9 + 5000, T0 * 10**9 + 7, (T0 + 10) * 10**9]
    assert h.sport.tolist() == [40000, 40001, 40000]
    assert rec.dsb_blocks == 1 and rec.dsb_secrets == 1


def _count_scans(monkeypatch: pytest.MonkeyPatch, reader) -> list[int]:  # noqa: ANN001 - the pcap or pcapng module
    """The bytes each call of the reader's _chain scans, appended as the reader runs."""
    scanned: list[int] = []
    real = reader._chain

    def counting(mapped, off, end, *rest):  # noqa: ANN001, ANN002
        scanned.append(end - off)
        return real(mapped, off, end, *rest)

    monkeypatch.setattr(reader, "_chain", counting)
    return scanned


def test_pcap_chain_scans_little_when_timestamps_keep_changing_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A capture whose timestamps alternate between two 18-hour windows every 200 records (the chain
    stops at each change) is read right, and _chain scans about the file once in all, not a 16 MiB
    span per stop (which would make such a file a denial of service)."""
    import collector.capture.pcap as pcap

    scanned = _count_scans(monkeypatch, pcap)
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    offsets, off = [], 24
    for i in range(20_000):
        body = bytes(60 + i % 40)
        sec = T0 + (70_000 if (i // 200) % 2 else 0)
        offsets.append(off)
        out.append(struct.pack("<IIII", sec, i, len(body), len(body)) + body)
        off += 16 + len(body)
    path = tmp_path / "windows.pcap"
    path.write_bytes(b"".join(out))
    rec = read_records(path, MappedFile(path))
    assert (rec.data_off - 16).tolist() == offsets and not rec.truncated
    assert sum(scanned) <= 4 * path.stat().st_size, sum(scanned) / path.stat().st_size


def test_pcapng_chain_equals_the_block_loop_on_hostile_payloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pcapng._chain (numpy, runs of packet blocks) finds exactly the blocks the one-block-at-a-time
    loop finds: packet bytes full of fake EPB headers, interface, secrets and simple packet blocks
    between the runs, a second section in the other byte order, and damage at the end."""
    import collector.capture.pcapng as pcapng

    monkeypatch.setattr(pcapng, "RELEASE_SPAN", 4096)
    monkeypatch.setattr(pcapng, "CHAIN_MIN", 4)
    rng = random.Random(9)
    out, offsets, off, frames = [], [], 0, []

    def add(block: bytes, packet: bytes | None = None) -> None:
        nonlocal off
        if packet is not None:
            offsets.append(off)
            frames.append(packet)
        out.append(block)
        off += len(block)

    for e in "<>":
        def blk(t: int, body: bytes, e: str = e) -> bytes:
            return struct.pack(e + "II", t, len(body) + 12) + body + struct.pack(e + "I", len(body) + 12)

        add(blk(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1)))
        add(blk(1, struct.pack(e + "HHI", 1, 0, 0) + struct.pack(e + "HH", 0, 0)))
        for i in range(1500):
            body = bytearray(rng.randbytes(rng.randrange(14, 200)))
            for _ in range(rng.randrange(0, 4)):  # fake EPB headers, some with lengths that point at real blocks
                fake = struct.pack(e + "II", 6, rng.choice([32, 36, 64, 4 * rng.randrange(8, 80), 7]))
                at = rng.randrange(0, len(body))
                body[at:at + 8] = fake[:len(body) - at]
            pad = bytes(-len(body) % 4)
            add(blk(6, struct.pack(e + "IIIII", 0, 0, i, len(body), len(body)) + bytes(body) + pad), bytes(body))
            if i % 300 == 299:
                add(blk(1, struct.pack(e + "HHI", 1, 0, 0) + struct.pack(e + "HH", 0, 0)))
            if i % 500 == 499:
                add(blk(0x0A, struct.pack(e + "II", 0x544C534B, 8) + b"# xy\n\n\n\n"))
    whole = b"".join(out)
    path = tmp_path / "hostile.pcapng"
    bad = offsets[1700] + 4  # block 1700's length (second section: big-endian) made odd
    odd = whole[:bad] + struct.pack(">I", struct.unpack_from(">I", whole, bad)[0] + 2) + whole[bad + 4:]
    for data, kept in ((whole, 3000), (whole[:offsets[2200] + 30], 2200), (odd, 1700)):
        path.write_bytes(data)
        rec = read_records(path, MappedFile(path))
        assert len(rec) == kept
        assert (rec.data_off - 28).tolist() == offsets[:kept]
        assert rec.truncated == (kept < 3000)
        mf = MappedFile(path)
        assert [bytes(mf.buf[a:a + c]) for a, c in zip(rec.data_off.tolist(), rec.caplen.tolist(), strict=True)] == frames[:kept]


def test_pcapng_chain_scans_little_between_frequent_other_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs of 200 packet blocks between other blocks (the chain stops at each): read right, and
    _chain scans about the file a few times in all, not a 16 MiB span per run."""
    import collector.capture.pcapng as pcapng

    scanned = _count_scans(monkeypatch, pcapng)

    def blk(t: int, body: bytes) -> bytes:
        return struct.pack("<II", t, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    out = [blk(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
           blk(1, struct.pack("<HHI", 1, 0, 0) + struct.pack("<HH", 0, 0))]
    offsets, off = [], sum(map(len, out))
    for i in range(20_000):
        if i % 200 == 199:
            out.append(blk(4, struct.pack("<HH", 0, 0)))  # a name resolution block, empty
            off += len(out[-1])
        body = bytes(60 + i % 40)
        offsets.append(off)
        out.append(blk(6, struct.pack("<IIIII", 0, 0, i, len(body), len(body)) + body + bytes(-len(body) % 4)))
        off += len(out[-1])
    path = tmp_path / "runs.pcapng"
    path.write_bytes(b"".join(out))
    rec = read_records(path, MappedFile(path))
    assert (rec.data_off - 28).tolist() == offsets and not rec.truncated
    assert sum(scanned) <= 4 * path.stat().st_size, sum(scanned) / path.stat().st_size


def test_port_reuse_with_new_isn_is_a_new_flow(tmp_path: Path) -> None:
    def conn(seq: int) -> list[bytes]:
        return [bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1234, dport=80, flags=f, seq=s))
                for f, s in (("S", seq), ("S", seq), ("F", seq + 1))]

    path = tmp_path / "x.pcap"
    write_pcap(path, 1, conn(1000) + conn(9000))  # a retransmitted SYN stays in its flow
    rec, h = walk(path)
    fa = flows.assign(h)
    assert fa.fid.tolist() == [0, 0, 0, 1, 1, 1] or fa.fid.tolist() == [1, 1, 1, 0, 0, 0]


def test_dns_answers_exclude_glue_records(tmp_path: Path, store_dir: Path) -> None:
    q = DNS(id=5, qd=DNSQR(qname="example.org", qtype="NS"))
    r = DNS(id=5, qr=1, qd=DNSQR(qname="example.org", qtype="NS"),
            an=DNSRR(rrname="example.org", type="A", rdata="192.0.2.1"),
            ar=DNSRR(rrname="ns1.example.org", type="A", rdata="192.0.2.53"))
    frames = [bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.53") / UDP(sport=3333, dport=53) / q),
              bytes(Ether() / IP(src="10.0.0.53", dst="10.0.0.1") / UDP(sport=53, dport=3333) / r)]
    path = tmp_path / "dns.pcap"
    write_pcap(path, 1, frames)
    res = ingest(path, store=str(store_dir), host_id="t")
    assert res.dns == 1  # the answered query is represented by its response, which repeats the question
    with Store.open(str(store_dir), read_only=True) as st:
        rows = st.sql("SELECT query, qtype, rcode, answers, is_response, trans_id FROM dns").fetchall()
    assert rows == [("example.org", "NS", "NOERROR", ["192.0.2.1"], True, 5)]


def test_vectorised_community_id_matches_reference() -> None:
    rnd = random.Random(7)
    rows = []
    for _ in range(200):
        v6 = rnd.random() < 0.3
        bits = 128 if v6 else 32
        a, b = rnd.getrandbits(bits), rnd.getrandbits(bits)
        rows.append((v6, a, b, rnd.choice((6, 17)), rnd.randrange(65536), rnd.randrange(65536)))
    n = len(rows)
    ver = np.array([6 if r[0] else 4 for r in rows], np.uint8)

    def split(x: int, v6: bool) -> tuple[int, int]:
        return (x >> 64, x & (2**64 - 1)) if v6 else (0, 0xFFFF00000000 | x)

    a = [split(r[1], r[0]) for r in rows]
    b = [split(r[2], r[0]) for r in rows]
    # canonical order as flows.assign produces it: (address, port) ascending
    lo_first = [(x, r[4]) <= (y, r[5]) for x, y, r in zip(a, b, rows, strict=True)]
    fa = flows.FlowAssignment(
        fid=np.zeros(0, np.int64), is_orig=np.zeros(0, bool), count=n, ver=ver,
        proto=np.array([r[3] for r in rows], np.uint8),
        a_hi=np.array([(x if f else y)[0] for x, y, f in zip(a, b, lo_first, strict=True)], np.uint64),
        a_lo=np.array([(x if f else y)[1] for x, y, f in zip(a, b, lo_first, strict=True)], np.uint64),
        a_port=np.array([(r[4] if f else r[5]) for r, f in zip(rows, lo_first, strict=True)], np.int64),
        b_hi=np.array([(y if f else x)[0] for x, y, f in zip(a, b, lo_first, strict=True)], np.uint64),
        b_lo=np.array([(y if f else x)[1] for x, y, f in zip(a, b, lo_first, strict=True)], np.uint64),
        b_port=np.array([(r[5] if f else r[4]) for r, f in zip(rows, lo_first, strict=True)], np.int64),
        orig_is_a=np.ones(n, bool), first_rec=np.zeros(n, np.int64), order=np.zeros(0, np.int64),
        starts=np.zeros(0, np.int64),
    )
    import ipaddress

    def txt(x: int, v6: bool) -> str:
        return str(ipaddress.IPv6Address(x) if v6 else ipaddress.IPv4Address(x))

    want = [community_id(r[3], txt(r[1], r[0]), r[4], txt(r[2], r[0]), r[5]) for r in rows]
    assert flows.community_ids(fa) == want


def test_ja4_reference_values() -> None:
    """FoxIO's published JA4 for Chrome (JA4_r from FoxIO-LLC/ja4 python/test/testdata)."""
    ciphers = [0x3A3A, 0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC013, 0xC014,
               0x009C, 0x009D, 0x002F, 0x0035]
    exts = [14906, 35, 65281, 0, 27, 18, 17513, 45, 43, 13, 16, 51, 10, 5, 23, 11, 6682, 21]
    sigs = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]
    got = ja4(proto="t", version=0x0303, ciphers=ciphers, extensions=exts,
              supported_versions=[0x6A6A, 0x0304, 0x0303], has_sni=True, alpn_first="h2", sig_algs=sigs)
    assert got == "t13d1516h2_8daaf6152771_e5627efa2ab1"
    assert ja4(proto="q", version=0x0303, ciphers=[], extensions=[], supported_versions=[], has_sni=False,
               alpn_first=None, sig_algs=[]) == "q12i000000_000000000000_000000000000"


def test_simple_packet_blocks_read_in_their_own_sections_byte_order(tmp_path: Path) -> None:
    """An SPB in a little-endian section followed by a big-endian section: its length fields are read
    little-endian (found by the fuzz run: read in the last section's order, a 1.4 GB captured length)."""
    from tests.support.ingest_fuzz import epb, idb, shb, spb

    f1, f2 = bytes(Ether() / tcp4()), bytes(Ether() / tcp4(sport=40001))
    path = tmp_path / "x.pcapng"
    path.write_bytes(shb("<") + idb(1, "<") + spb(f1, "<") + shb(">") + idb(1, ">") + epb(0, T0 * 10**6, f2, ">"))
    rec, h = walk(path)
    assert rec.caplen.tolist() == [len(f1), len(f2)] and not rec.truncated
    assert h.sport.tolist() == [40000, 40001]


def test_unused_header_columns_take_no_memory(tmp_path: Path) -> None:
    """An IPv4 capture without fragments has no high address halves and no IP ids to keep (only the
    fragment join reads them): walk_mapped gives read-only zero views (no memory behind them); an
    IPv6 packet or a fragment keeps the columns real, with the walk's values."""
    v4 = [bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2", id=7) / TCP(sport=1000 + i, dport=443)) for i in range(3)]
    path = tmp_path / "v4.pcap"
    write_pcap(path, 1, v4)
    with MappedFile(path) as mf:
        h = headers.walk_mapped(mf, read_records(path, mf))
    for name in headers.ZERO_WHEN_UNUSED:
        col = getattr(h, name)
        assert col.strides == (0,) and not col.flags.writeable and col.tolist() == [0, 0, 0]
    assert h.src_lo.strides != (0,)
    big = IP(src="10.0.0.1", dst="10.0.0.2", id=9) / UDP(sport=5, dport=6) / Raw(b"x" * 3000)
    v6 = bytes(Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=7, dport=443))
    path = tmp_path / "mixed.pcap"
    write_pcap(path, 1, v4 + [v6] + [bytes(Ether() / f) for f in fragment(big, fragsize=1000)])
    with MappedFile(path) as mf:
        h = headers.walk_mapped(mf, read_records(path, mf))
    assert h.src_hi[3] == 0x20010DB800000000 and h.dst_hi[3] == 0x20010DB800000000
    assert h.ipid[4:].tolist() == [9] * (len(h.ipid) - 4) and h.ipid[0] == 7
    assert all(getattr(h, name).strides != (0,) for name in headers.ZERO_WHEN_UNUSED)
