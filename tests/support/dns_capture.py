"""Small DNS captures for the ingest tests (scapy): transactions whose ids a test chooses, then a
QUIC-like flow; answers for one address with equal timestamps; both written as pcap."""

from __future__ import annotations

from pathlib import Path

from scapy.all import DNS, DNSQR, DNSRR, IP, TCP, UDP, Ether, Raw, wrpcap

CLIENT, RESOLVER, QUIC_SERVER = "10.0.0.2", "10.0.0.53", "192.0.2.44"
T0 = 1_700_000_000
# both addresses given (else scapy looks for a route to each destination); `/` copies it
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def query(sport: int, tid: int, name: str, qtype: str = "A"):
    return ETH / IP(src=CLIENT, dst=RESOLVER) / UDP(sport=sport, dport=53) / DNS(id=tid, rd=1, qd=DNSQR(qname=name, qtype=qtype))


def answer(sport: int, tid: int, name: str, rdata: str, qtype: str = "A"):
    return ETH / IP(src=RESOLVER, dst=CLIENT) / UDP(sport=53, dport=sport) / DNS(
        id=tid, qr=1, rd=1, ra=1, qd=DNSQR(qname=name, qtype=qtype), an=DNSRR(rrname=name, type=qtype, rdata=rdata))


def quic_initial_like(pn: int) -> bytes:
    """A client long header as QUIC v1 Initials start (long-header and fixed bits, version 1, an
    8-byte destination connection id), padded to the 1200 bytes a client Initial datagram has."""
    head = bytes([0xC3]) + (1).to_bytes(4, "big") + bytes([8]) + bytes(range(8)) + bytes([0]) + bytes([0, pn])
    return head + b"\0" * (1200 - len(head))


def transactions(path: Path, base_id: int) -> Path:
    """DNS over UDP with transaction ids from `base_id`, then a QUIC-like flow to 443.
    Records: 0 query (answered by 1); 2, 3 queries on one flow (answered by 4, 5); 6 an unanswered
    query; 7, 8, 9 client QUIC packets, 10 the server's."""
    pkts = [
        query(40001, base_id, "one.example"), answer(40001, base_id, "one.example", "192.0.2.1"),
        query(40002, base_id + 1, "two.example"), query(40002, base_id + 2, "two.example", "AAAA"),
        answer(40002, base_id + 1, "two.example", "192.0.2.2"),
        answer(40002, base_id + 2, "two.example", "2001:db8::2", "AAAA"),
        query(40003, base_id + 3, "lost.example"),
        *[ETH / IP(src=CLIENT, dst=QUIC_SERVER) / UDP(sport=40004, dport=443) / Raw(quic_initial_like(k)) for k in range(3)],
        ETH / IP(src=QUIC_SERVER, dst=CLIENT) / UDP(sport=443, dport=40004) / Raw(quic_initial_like(0)),
    ]
    for k, p in enumerate(pkts):
        p.time = T0 + k / 1000
    wrpcap(str(path), pkts)
    return path


def tied_answers(path: Path, names: tuple[str, ...], address: str = "192.0.2.9") -> Path:
    """Answers naming `names` in this order, all for `address` and all at the same instant, then a
    TCP SYN to the address a second later."""
    pkts = [answer(40001 + k, 0x100 + k, name, address) for k, name in enumerate(names)]
    for p in pkts:
        p.time = T0
    syn = ETH / IP(src=CLIENT, dst=address) / TCP(sport=42000, dport=443, flags="S")
    syn.time = T0 + 1
    wrpcap(str(path), [*pkts, syn])
    return path
