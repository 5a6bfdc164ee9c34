"""DNS messages in wire format (RFC 1035), and DNS-over-HTTPS exchanges (RFC 8484) as `dns` rows.

Sans-IO and defensive: every length and compression pointer is bounds-checked, pointer chains are
limited, and a message that does not parse yields None (never an exception). DoH is recognised by
its media types: `application/dns-message` (GET `?dns=` base64url, or POST body) and the JSON
flavour `application/dns-json` (GET `?name=&type=`, as dns.google and Cloudflare serve it), over any
HTTP version the connection parsers handle (HTTP/1.1, h2, h2c with prior knowledge).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
import socket
import struct
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

MAX_POINTERS = 32
MAX_RECORDS = 256
DNS_MESSAGE = "application/dns-message"
DNS_JSON = ("application/dns-json", "application/x-javascript")
QTYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV",
          35: "NAPTR", 41: "OPT", 43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 64: "SVCB", 65: "HTTPS",
          252: "AXFR", 255: "ANY", 257: "CAA"}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 6: "YXDOMAIN",
          7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE"}


_PLAIN_LABELS = re.compile(rb"[A-Za-z0-9_-]*")
_RR = struct.Struct("!HHIH")
TSHARK_MAX_NAME = 253  # longest name text parse_like_tshark reads (tshark's limits are beyond it)


@dataclass
class DnsMessage:
    """One DNS message, however it was read: the wire parser here, DoH, or tshark's fields."""

    trans_id: int
    is_response: bool
    rcode: str | None
    query: str | None
    qtype: str | None
    answers: list[str] = field(default_factory=list)
    frame: int = 0  # tshark's frame number (capture/dissect.py); 0 where no capture frame is behind it


def parse_message(data: bytes) -> DnsMessage | None:
    """One DNS message (no TCP length prefix) -> its first question and its answer data."""
    if len(data) < 12:
        return None
    tid = int.from_bytes(data[0:2], "big")
    flags = int.from_bytes(data[2:4], "big")
    qd, an = int.from_bytes(data[4:6], "big"), int.from_bytes(data[6:8], "big")
    if qd > MAX_RECORDS or an > MAX_RECORDS:
        return None
    pos = 12
    query = qtype = None
    for i in range(qd):
        name, pos = _name(data, pos)
        if name is None or pos + 4 > len(data):
            return None
        if i == 0:
            query = name
            t = int.from_bytes(data[pos:pos + 2], "big")
            qtype = QTYPES.get(t, str(t))
        pos += 4
    is_resp = bool(flags & 0x8000)
    answers: list[str] = []
    for _ in range(an):
        _owner, pos = _name(data, pos)
        if _owner is None or pos + 10 > len(data):
            break
        rtype = int.from_bytes(data[pos:pos + 2], "big")
        rdlen = int.from_bytes(data[pos + 8:pos + 10], "big")
        start = pos + 10
        end = start + rdlen
        if end > len(data):
            break
        rdata = data[start:end]
        if rtype == 1 and rdlen == 4:
            answers.append(str(ipaddress.IPv4Address(rdata)))
        elif rtype == 28 and rdlen == 16:
            answers.append(str(ipaddress.IPv6Address(rdata)))
        elif rtype in (5, 2, 12):  # CNAME, NS, PTR: a (possibly compressed) name
            target, _ = _name(data, start)
            if target:
                answers.append(target)
        pos = end
    return DnsMessage(tid, is_resp, RCODES.get(flags & 0xF, str(flags & 0xF)) if is_resp else None, query, qtype, answers)


def _name(data: bytes, pos: int, strict: bool = False) -> tuple[str | None, int]:
    """A domain name at `pos` -> (name without the trailing dot, position after it). `strict` (for
    parse_like_tshark): labels of letters, digits, '-' and '_' only (what tshark prints as they are),
    case kept, and every compression pointer pointing before the labels that led to it (no loops)."""
    labels: list[bytes] = []
    jumps = 0
    end = None
    seen = 0
    run = pos  # where the labels read since the last pointer began
    while True:
        if pos >= len(data):
            return None, pos
        n = data[pos]
        if n == 0:
            pos += 1
            break
        if n & 0xC0 == 0xC0:
            if pos + 1 >= len(data) or jumps >= MAX_POINTERS:
                return None, pos
            if end is None:
                end = pos + 2
            pos = ((n & 0x3F) << 8) | data[pos + 1]
            if strict and pos >= run:
                return None, pos
            run = pos
            jumps += 1
            continue
        if n & 0xC0:
            return None, pos  # reserved label types
        label = data[pos + 1:pos + 1 + n]
        if len(label) < n:
            return None, pos
        seen += n + 1
        if seen > 255:
            return None, pos
        labels.append(label)
        pos += 1 + n
    after = end if end is not None else pos
    if strict:
        if not _PLAIN_LABELS.fullmatch(b"".join(labels)):
            return None, after
        return b".".join(labels).decode("ascii"), after
    return ".".join(x.decode("ascii", "replace").lower() for x in labels), after


def parse_like_tshark(data: bytes) -> DnsMessage | None:
    """A DNS-over-UDP payload -> the DnsMessage the ingest reads from tshark's fields for it
    (capture/dissect.py), without tshark; None wherever the two could differ: then tshark reads it.

    Read here: opcode QUERY, questions and records of class IN with plain names (_name strict, at most
    TSHARK_MAX_NAME characters), records A, AAAA (not the ::/80 addresses tshark prints with an IPv4
    tail), CNAME, NS, PTR, MX, SOA and OPT (options cookie, padding, client subnet, no extended RCODE),
    every record whole and the message ending where its last record ends. What dissect.py makes of
    tshark's fields is kept, oddities included: the query is lower-cased (CNAME answers are not), and a
    message with one question, nothing in Authority/Additional and only A/AAAA/CNAME answers lists its
    answers grouped by type (A, then AAAA, then CNAME: dissect._dns_simple), any other in wire order."""
    n = len(data)
    if n < 12:
        return None
    tid, flags, qd, an, ns, ar = struct.unpack_from("!6H", data)
    if flags & 0x7800:  # opcode: UPDATE and others name their sections (and count fields) differently
        return None
    pos = 12
    query = qtype = None
    for i in range(qd):
        name, pos = _name(data, pos, True)
        if name is None or len(name) > TSHARK_MAX_NAME or pos + 4 > n:
            return None
        t, cls = struct.unpack_from("!HH", data, pos)
        if cls != 1:
            return None
        if i == 0:
            query, qtype = name.lower() if name else "<root>", QTYPES.get(t, str(t))
        pos += 4
    values: list[tuple[int, str]] = []  # the Answer section's A/AAAA/CNAME (type, value), wire order
    for k in range(an + ns + ar):
        owner, pos = _name(data, pos, True)
        if owner is None or len(owner) > TSHARK_MAX_NAME or pos + 10 > n:
            return None
        rtype, cls, ttl, rdlen = _RR.unpack_from(data, pos)
        start = pos + 10
        pos = start + rdlen
        if pos > n:
            return None
        if rtype == 41:
            if owner or ttl >> 24 or not _opt_ok(data, start, pos):
                return None
            continue
        if cls != 1:
            return None
        if rtype == 1:
            if rdlen != 4:
                return None
            value = socket.inet_ntoa(data[start:pos])
        elif rtype == 28:
            if rdlen != 16 or not any(data[start:start + 10]):
                return None
            value = socket.inet_ntop(socket.AF_INET6, data[start:pos])
        elif rtype in (5, 2, 12, 15, 6):  # CNAME, NS, PTR, MX (preference first), SOA (two names, 20 bytes)
            value, at = _name(data, start + 2 if rtype == 15 else start, True)
            if rtype == 6 and value:
                second, at = _name(data, at, True)
                value = value if second and len(second) <= TSHARK_MAX_NAME else None
                at += 20
            if not value or len(value) > TSHARK_MAX_NAME or at != pos:
                return None
        else:
            return None
        if k < an and rtype in (1, 28, 5):
            values.append((rtype, value))
    if pos != n:
        return None
    if qd == 1 and ns == 0 and ar == 0 and len(values) == an:  # dissect._dns_simple: grouped by type
        answers = [v for t in (1, 28, 5) for vt, v in values if vt == t]
    else:
        answers = [v for _, v in values]
    rcode = RCODES.get(flags & 0xF, str(flags & 0xF)) if flags & 0x8000 else None
    return DnsMessage(tid, bool(flags & 0x8000), rcode, query, qtype, answers)


OPT_CODES = {10, 12, 8}  # cookie, padding, client subnet: options whose bytes tshark reads within them


def _opt_ok(data: bytes, pos: int, end: int) -> bool:
    """An OPT record's options: each whole, of a kind whose bytes tshark reads within its length."""
    while pos < end:
        if pos + 4 > end:
            return False
        code, ln = struct.unpack_from("!HH", data, pos)
        pos += 4
        if code not in OPT_CODES or pos + ln > end:
            return False
        if code == 10 and not (ln == 8 or 16 <= ln <= 40):
            return False
        if code == 8:
            if ln < 4:
                return False
            family, prefix = struct.unpack_from("!HB", data, pos)
            if family not in (1, 2) or prefix > (32 if family == 1 else 128) or ln != 4 + (prefix + 7) // 8:
                return False
        pos += ln
    return True


def _header(headers: list[tuple[str, str]], name: str) -> str:
    for k, v in headers:
        if k.lower() == name:
            return v.lower()
    return ""


def _b64url(s: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except (binascii.Error, ValueError):
        return None


def doh_messages(method: str, path: str, req_headers: list[tuple[str, str]], req_body: bytes,
                 resp_headers: list[tuple[str, str]] | None, resp_body: bytes | None) -> list[DnsMessage] | None:
    """The DNS query and answer a DoH exchange carries; None when the exchange is not DoH."""
    ctype = _header(req_headers, "content-type")
    accept = _header(req_headers, "accept")
    rtype = _header(resp_headers or [], "content-type")
    params = parse_qs(urlsplit(path).query) if "?" in path else {}
    wire = DNS_MESSAGE in ctype or DNS_MESSAGE in accept or DNS_MESSAGE in rtype
    json_doh = any(t in accept or t in rtype for t in DNS_JSON) and "name" in params
    out: list[DnsMessage] = []
    if wire:
        q = None
        if method == "POST" and req_body:
            q = parse_message(req_body)
        elif "dns" in params:
            raw = _b64url(params["dns"][0])
            q = parse_message(raw) if raw else None
        if q is not None:
            out.append(q)
        if resp_body and DNS_MESSAGE in rtype:
            r = parse_message(resp_body)
            if r is not None:
                out.append(r)
        return out if out or method == "POST" or "dns" in params else None
    if json_doh:
        name = params["name"][0].rstrip(".").lower()
        t = params.get("type", ["A"])[0]
        qtype = QTYPES.get(int(t), t) if t.isdigit() else t.upper()
        out.append(DnsMessage(0, False, None, name, qtype))
        if resp_body:
            try:
                doc = json.loads(resp_body)
            except (ValueError, RecursionError):
                doc = None
            if isinstance(doc, dict):
                st = doc.get("Status")
                answers = [str(a.get("data")).rstrip(".") for a in doc.get("Answer") or []
                           if isinstance(a, dict) and a.get("type") in (1, 28, 5) and a.get("data")]
                out.append(DnsMessage(0, True, RCODES.get(st, str(st)) if isinstance(st, int) else None, name, qtype,
                                      answers[:MAX_RECORDS]))
        return out
    return None
