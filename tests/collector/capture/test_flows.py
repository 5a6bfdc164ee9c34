"""Which packets tshark is handed (flows.select_for_dissection): decided by each flow's protocol
rule, never by the chance value of a DNS transaction id."""

from __future__ import annotations

from pathlib import Path

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
        read, left = flows.read_dns(hd, mf, flows.dns_for_dissection(hd, fa, mf, end), rec.data_off, end)
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
