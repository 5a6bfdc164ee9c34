"""Which packets tshark is handed (flows.select_for_dissection): decided by each flow's protocol
rule, never by the chance value of a DNS transaction id."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import numpy as np
import pytest

from collector.capture import flows, headers
from collector.capture.records import MappedFile, read_records
from tests.support.dns_capture import transactions


def _selection(cap: Path) -> tuple[list[int], list[int]]:
    """(select_for_dissection's records, dns_for_dissection's records) of the capture."""
    with MappedFile(cap) as mf:
        rec = read_records(cap, mf, None)
        hd = headers.walk_mapped(mf, rec)
        fa = flows.assign(hd)
        end = rec.data_off + rec.caplen
        dns = flows.dns_for_dissection(hd, fa, mf, end)
        selected = flows.select_for_dissection(hd, fa, mf, end).records.tolist()
        assert flows.select_for_dissection(hd, fa, mf, end, dns).records.tolist() == selected  # dns handed in
        return selected, dns.tolist()


@pytest.mark.parametrize("base_id", [0x1200, 0x9200, 0xC200], ids=["id<0x8000", "id>=0x8000", "id>=0xC000"])
def test_dns_flows_are_selected_by_the_dns_rule_alone(tmp_path: Path, base_id: int) -> None:
    """Answered UDP queries stay out whatever their id: a DNS message starts with its transaction id,
    and one >= 0x8000 (>= 0xC000: with the fixed bit too) looks like a QUIC long header. The QUIC rule
    handed such queries to tshark, which stored a query row for them: rows that depended on chance.
    The QUIC rule still takes the first two client long-header packets of a flow off port 53."""
    selected, dns_part = _selection(transactions(tmp_path / "c.pcap", base_id))
    assert dns_part == [1, 4, 5, 6]  # the responses and the unanswered query (see transactions())
    assert selected == [1, 4, 5, 6, 7, 8]  # and the first two client packets of the QUIC flow


def _read_dns(cap: Path) -> tuple[list[tuple[int, str | None, list[str]]], list[int]]:
    with MappedFile(cap) as mf:
        rec = read_records(cap, mf, None)
        hd = headers.walk_mapped(mf, rec)
        fa = flows.assign(hd)
        end = rec.data_off + rec.caplen
        part, read, left = flows.read_dns(hd, fa, mf, rec.data_off, end)
        assert part.tolist() == flows.dns_for_dissection(hd, fa, mf, end).tolist()
        return [(r, m.query, m.answers) for r, m in read], left.tolist()


def test_read_dns_reads_plain_datagrams_and_leaves_the_rest_to_tshark(tmp_path: Path) -> None:
    """The responses and the unanswered query are read here; a datagram behind IPv4 options (tshark
    would still read it: the check that the payload is exactly what tshark hands its DNS dissector
    declines it), a fragment and DNS over TCP are left to tshark."""
    from scapy.all import DNS, DNSQR, IP, TCP, UDP, Ether, IPOption_NOP, wrpcap

    cap = transactions(tmp_path / "c.pcap", 0x1200)
    read, left = _read_dns(cap)
    assert read == [(1, "one.example", ["192.0.2.1"]), (4, "two.example", ["192.0.2.2"]),
                    (5, "two.example", ["2001:db8::2"]), (6, "lost.example", [])]
    assert left == []
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    q = DNS(id=7, rd=1, qd=DNSQR(qname="odd.example"))
    wrpcap(str(tmp_path / "odd.pcap"), [
        eth / IP(src="10.0.0.2", dst="10.0.0.53", options=[IPOption_NOP()] * 4) / UDP(sport=40001, dport=53) / q,
        eth / IP(src="10.0.0.2", dst="10.0.0.53", flags="MF", id=9) / UDP(sport=40002, dport=53) / q,
        eth / IP(src="10.0.0.2", dst="10.0.0.53") / TCP(sport=40003, dport=53, flags="PA") / (b"\0\x1d" + bytes(q)),
        eth / IP(src="10.0.0.2", dst="10.0.0.53") / UDP(sport=40004, dport=53) / q,
    ])
    read, left = _read_dns(tmp_path / "odd.pcap")
    assert read == [(3, "odd.example", [])]
    assert left == [0, 1, 2]


def _tcp_capture(path: Path, flows_: list[list[tuple[int, bytes, int]]], snap: dict[tuple[int, int], int] | None = None
                 ) -> Path:
    """A pcap of TCP flows to port 443, one after the other: each a handshake, then its client
    segments as (seq offset from ISN+1, payload, TCP flags), then a server ACK. `snap`: (flow, segment)
    -> bytes of that segment's payload kept in the capture (a truncated record)."""
    import struct

    from tests.support.gen_capture import ETH_HDR, _ip, _tcp

    recs: list[tuple[bytes, int]] = []
    for i, segs in enumerate(flows_):
        c, s, sport, isn = bytes([10, 0, 0, 1 + i]), bytes([192, 0, 2, 1 + i]), 40000 + i, 1000 * (i + 1)

        def pkt(src: bytes, dst: bytes, sp: int, dp: int, seq: int, flags: int, payload: bytes = b"") -> bytes:
            return ETH_HDR + _ip(src, dst, 6, 20 + len(payload), 1) + _tcp(sp, dp, seq, 7, flags) + payload

        frames = [pkt(c, s, sport, 443, isn, 0x02), pkt(s, c, 443, sport, 7, 0x12), pkt(c, s, sport, 443, isn + 1, 0x10)]
        cut: list[int | None] = [None, None, None]
        for k, (off, payload, flags) in enumerate(segs):
            frames.append(pkt(c, s, sport, 443, isn + 1 + off, flags, payload))
            cut.append((snap or {}).get((i, k)))
        frames.append(pkt(s, c, 443, sport, 8, 0x10))
        cut.append(None)
        recs += [(f, len(f) if n is None else 54 + n) for f, n in zip(frames, cut, strict=True)]  # 54: headers
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for k, (f, caplen) in enumerate(recs):
            out.write(struct.pack("<IIII", 1_700_000_000 + k, 0, caplen, len(f)) + f[:caplen])
    return path


def _split(hello: bytes, *cuts: int) -> list[tuple[int, bytes, int]]:
    """The hello in consecutive segments ending at `cuts` (and the record's end)."""
    bounds = [0, *cuts, len(hello)]
    return [(a, hello[a:z], 0x18 if z == len(hello) else 0x10) for a, z in itertools.pairwise(bounds)]


def test_split_client_hellos_equal_tshark_and_doubtful_ones_go_to_tshark(tmp_path: Path) -> None:
    """A ClientHello whose record runs past its first segment is read here when the next segments
    carry exactly the rest, in sequence (2 or 3 segments, like a post-quantum key share's); its
    fields equal tshark's reassembly of the same capture, in the frame tshark reports it in (the
    last segment). Retransmitted, reordered, gapped, overlapping, truncated, over-long or
    over-filled ones are declined: tshark gets the flow's first segments, as before."""
    from tests.support.gen_capture import PQ_KEY_SHARE, client_hello

    def hello(i: int) -> bytes:
        return client_hello(f"h{i}.example", bytes([i]) * 32, bytes([i + 1]) * PQ_KEY_SHARE)

    h = [hello(i) for i in range(11)]
    assert len(h[0]) > 1460
    read_here = [_split(h[0], 1460), _split(h[1], 700, 1400), _split(h[2], 5)]
    declined = [
        [*_split(h[3], 1460)[:1], *_split(h[3], 1460)],  # the first segment retransmitted
        _split(h[4], 1460)[::-1],  # reordered
        [_split(h[5], 1460)[0], (1470, h[5][1470:], 0x18)],  # a gap: 10 bytes never sent
        [_split(h[6], 1460)[0], (1450, h[6][1450:], 0x18)],  # overlapping the first segment by 10 bytes
        _split(h[7], 1460),  # truncated by the capture (snap below)
        _split(h[8], 400, 800, 1200),  # 4 segments
        [*_split(h[9], 1460)[:1], (1460, h[9][1460:] + b"\x17\x03\x03\x00\x01\x00", 0x18)],  # more after it
        [*_split(h[10], 1460)[:1], (1460, h[10][1460:1600], 0x10)],  # the rest never sent
    ]
    cap = _tcp_capture(tmp_path / "split.pcap", read_here + declined, snap={(7, 1): 100})
    fa, sel, theirs = _selection_and_tshark_hellos(cap)
    flow = np.maximum(fa.a_port, fa.b_port) - 40000  # flow id -> the flow's index above
    mine = {int(flow[fa.fid[r]]): (r, ch) for r, ch in sel.client_hellos.values()}
    assert sorted(mine) == [0, 1, 2]
    for r, ch in mine.values():
        t = theirs[r + 1]  # tshark's frame N is record N-1
        assert ch == (t.version, t.sni, ",".join(t.alpn) or None, t.ja4("t"))
    assert [mine[i][1].sni for i in range(3)] == ["h0.example", "h1.example", "h2.example"]
    fid = flow[fa.fid[sel.records]]
    assert not set(fid.tolist()) & {0, 1, 2}  # nothing of them goes to tshark
    # the first 3 client segments, as before (the reordered flow: its first one only, which does not
    # start with a TLS record header)
    assert [int((fid == i).sum()) for i in range(3, 11)] == [3, 1, 2, 2, 2, 3, 2, 2]


def test_generated_post_quantum_hellos_are_read_here_as_tshark_reads_them(tmp_path: Path) -> None:
    """bench/gen_capture.py --pq's hellos (1,666 bytes, two segments): every one read here, none
    handed to tshark, each equal to tshark's reassembly in the frame tshark reports it in."""
    from tests.support.gen_capture import generate

    cap = tmp_path / "pq.pcap"
    info = generate(str(cap), packets=600, data=2, pq=True)
    fa, sel, theirs = _selection_and_tshark_hellos(cap)
    assert len(sel.client_hellos) == len(theirs) == info["tcp_flows"]
    for r, ch in sel.client_hellos.values():
        t = theirs[r + 1]
        assert ch == (t.version, t.sni, ",".join(t.alpn) or None, t.ja4("t"))
    assert not (fa.proto[fa.fid[sel.records]] == headers.TCP).any()


def _selection_and_tshark_hellos(cap: Path) -> tuple:
    """The flows and the dissection selection of capture `cap`, and tshark's ClientHellos by frame."""
    from collector.capture import dissect, tshark

    with MappedFile(cap) as mf:
        rec = read_records(cap, mf, None)
        hd = headers.walk_mapped(mf, rec)
        fa = flows.assign(hd)
        sel = flows.select_for_dissection(hd, fa, mf, rec.data_off + rec.caplen)
    args = tshark.base_args() + ["-r", str(cap), "-Y", "tls.handshake.type == 1"] + tshark.fields_args(dissect.FIELDS)
    theirs = {x.frame: x for x in dissect.parse(subprocess.run(args, capture_output=True, text=True).stdout)[1]}
    return fa, sel, theirs


@pytest.mark.parametrize("name", ["dns-edns-udp-tcp-ipv6-ipv4frag.pcap", "https-tls12-tcp-split-records.pcap",
                                  "mixed-windows-dns-tls-http.pcapng"])
def test_flow_order_is_the_selections_order_but_for_joined_fragments(corpus: Path, name: str) -> None:
    """select_for_dissection takes fa.order as its (flow, record) order when no IP fragment joined a
    flow, instead of sorting every flow record again: so fa.order must be exactly the flow records
    sorted stably by flow, less the non-first fragments that joined one (the first capture has them)."""
    cap = corpus / name
    with MappedFile(cap) as mf:
        hd = headers.walk_mapped(mf, read_records(cap, mf, None))
    fa = flows.assign(hd)
    rec = np.nonzero(fa.fid >= 0)[0]
    ordered = rec[np.argsort(fa.fid[rec], kind="stable")]
    joined = hd.frag_later[ordered]
    assert np.array_equal(fa.order, ordered[~joined])
    assert joined.any() == (name == "dns-edns-udp-tcp-ipv6-ipv4frag.pcap")


def test_flow_uids_are_c_and_the_two_mixes_in_hex(tmp_path: Path) -> None:
    """flow_uids writes its hex digits with numpy: the same strings as formatting each flow's two
    64-bit mixes (the ids of every earlier ingest stay the same)."""
    import hashlib

    from tests.support.gen_capture import generate

    cap = tmp_path / "flows.pcap"
    generate(str(cap), 5_000)
    with MappedFile(cap) as mf:
        fa = flows.assign(headers.walk_mapped(mf, read_records(cap, mf, None)))
    ts0 = np.arange(fa.count, dtype=np.int64) * 1_000_003 + 1_700_000_000_000_000_000
    seed = hashlib.sha256(b"host-a|" + b"ab" * 32).digest()
    cols = (fa.proto, fa.a_hi, fa.a_lo, fa.a_port, fa.b_hi, fa.b_lo, fa.b_port, ts0.astype(np.uint64))
    h1 = flows._mix(np.full(fa.count, int.from_bytes(seed[:8], "big"), np.uint64), *cols)
    h2 = flows._mix(np.full(fa.count, int.from_bytes(seed[8:16], "big"), np.uint64), *cols)
    want = [f"C{a:016x}{b:016x}" for a, b in zip(h1.tolist(), h2.tolist(), strict=True)]
    assert fa.count > 100 and flows.flow_uids("host-a", "ab" * 32, fa, ts0) == want
    empty = flows.FlowAssignment(**{k: (v[:0] if isinstance(v, np.ndarray) else 0) for k, v in vars(fa).items()})
    assert flows.flow_uids("host-a", "ab" * 32, empty, ts0[:0]) == []


def test_ipv4_texts_equal_inet_ntoa() -> None:
    """The numpy dotted-quad writer gives socket.inet_ntoa's text for every octet length mix."""
    import socket

    rng = np.random.default_rng(11)
    edges = [0, 0xFFFFFFFF, 0x7F000001, 0x0A000001, 0x01020304, 0x64646464, 0x0A630A63, 0xC0A80001]
    addr = np.concatenate([edges, rng.integers(0, 2**32, 5000)]).astype(np.uint64)
    want = [socket.inet_ntoa(int(a).to_bytes(4, "big")) for a in addr.tolist()]
    assert flows._ipv4_texts(addr) == want
    assert flows._ipv4_texts(np.zeros(0, np.uint64)) == []
