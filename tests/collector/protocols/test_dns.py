"""DNS wire messages and DoH exchanges: parsed against scapy's independent encoder, hostile input never
raises, and every DoH flavour (GET ?dns=, POST, JSON) becomes query + answer messages."""

from __future__ import annotations

import base64
import json

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR, dns_compress

from collector.protocols.dns import doh_messages, parse_message


def query(name: str, qtype: str = "A", tid: int = 0x1234) -> bytes:
    return bytes(DNS(id=tid, rd=1, qd=DNSQR(qname=name, qtype=qtype)))


def answer(name: str, tid: int = 0x1234) -> bytes:
    rrs = [DNSRR(rrname=name, type="CNAME", rdata="edge.cdn.example."),
           DNSRR(rrname="edge.cdn.example.", type="A", rdata="203.0.113.7"),
           DNSRR(rrname="edge.cdn.example.", type="AAAA", rdata="2001:db8::7")]
    return bytes(dns_compress(DNS(id=tid, qr=1, rd=1, ra=1, qd=DNSQR(qname=name), an=rrs)))


def test_query_and_compressed_answer():
    q = parse_message(query("Payload.Evil.Example"))
    assert (q.trans_id, q.is_response, q.query, q.qtype, q.rcode, q.answers) == (
        0x1234, False, "payload.evil.example", "A", None, [])
    raw = answer("payload.evil.example")
    assert b"\xc0" in raw  # names compressed
    a = parse_message(raw)
    assert (a.is_response, a.rcode, a.query) == (True, "NOERROR", "payload.evil.example")
    assert a.answers == ["edge.cdn.example", "203.0.113.7", "2001:db8::7"]
    nx = parse_message(bytes(DNS(id=9, qr=1, rcode=3, qd=DNSQR(qname="gone.example"))))
    assert (nx.rcode, nx.answers) == ("NXDOMAIN", [])


def test_hostile_messages_are_refused_not_raised():
    assert parse_message(b"") is None
    assert parse_message(b"\x00" * 11) is None
    # a compression pointer to itself: refused after the pointer limit, not an endless loop
    loop = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\xc0\x0c" + b"\x00\x01\x00\x01"
    assert parse_message(loop) is None
    assert parse_message(query("x.example")[:-3]) is None  # truncated question


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_refuse(data):
    m = parse_message(data)
    assert m is None or isinstance(m.answers, list)


def test_doh_get_post_and_json_flavours():
    q, a = query("get.example", "AAAA"), answer("get.example")
    dns_param = base64.urlsafe_b64encode(q).rstrip(b"=").decode()
    got = doh_messages("GET", f"/dns-query?dns={dns_param}", [("accept", "application/dns-message")], b"",
                       [("content-type", "application/dns-message")], a)
    assert [(m.query, m.qtype, m.is_response) for m in got] == [("get.example", "AAAA", False), ("get.example", "A", True)]
    assert got[1].answers[1] == "203.0.113.7"
    post = doh_messages("POST", "/dns-query", [("content-type", "application/dns-message")], q,
                        [("content-type", "application/dns-message")], a)
    assert [m.is_response for m in post] == [False, True]
    js = json.dumps({"Status": 0, "Question": [{"name": "j.example.", "type": 1}],
                     "Answer": [{"name": "j.example.", "type": 1, "TTL": 60, "data": "198.51.100.4"}]}).encode()
    got = doh_messages("GET", "/resolve?name=j.example&type=A", [("accept", "application/dns-json")], b"",
                       [("content-type", "application/dns-json")], js)
    assert [(m.query, m.qtype, m.rcode, m.answers) for m in got] == [
        ("j.example", "A", None, []), ("j.example", "A", "NOERROR", ["198.51.100.4"])]
    # not DoH: an LLM call, a JSON API that happens to take ?name=
    assert doh_messages("POST", "/v1/chat/completions", [("content-type", "application/json")], b"{}",
                        [("content-type", "application/json")], b"{}") is None
    assert doh_messages("GET", "/users?name=x", [("accept", "application/json")], b"", None, None) is None
