"""Community ID v1 (https://github.com/corelight/community-id-spec): the standard 5-tuple hash.

Used to join the same connection across sources (capture, eBPF, proxy), always within a time bound
because ports are reused. The one home of the algorithm: `community_id` for one flow (proxy, key-log
decryption, /proc), `community_ids` for many (ingest and the eBPF collector lay the hashed bytes out
with numpy; only sha1 runs once per flow). Both are tested against the specification's published
baseline vectors (tests/fixtures/community_id/baseline.json).

The hashed bytes: seed (2, big-endian) . lower address . higher address . proto (1) . 0 (1)
. lower port (2) . higher port (2), where "lower" orders the endpoints by (address, port). Port-less
protocols omit the ports. ICMP and ICMPv6 map type and code to ports with Zeek's tables; no source
here produces ICMP flows, so they are refused rather than hashed wrongly.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import struct

import numpy as np

PROTO_NUMBERS = {"tcp": 6, "udp": 17, "sctp": 132}
PORT_PROTOCOLS = frozenset(PROTO_NUMBERS.values())
_ICMP = frozenset({1, 58})


def _proto_number(proto: str | int) -> int:
    pnum = PROTO_NUMBERS[proto] if isinstance(proto, str) else int(proto)
    if pnum in _ICMP:
        raise ValueError("Community ID of ICMP flows needs the type/code mapping, which is not implemented")
    if not 0 <= pnum <= 255:
        raise ValueError(f"IP protocol number out of range: {pnum}")
    return pnum


def community_id(proto: str | int, src_ip: str, src_port: int | None, dst_ip: str, dst_port: int | None,
                 seed: int = 0) -> str:
    """'1:<base64 sha1>' for one flow; the same for both directions."""
    pnum = _proto_number(proto)
    a = ipaddress.ip_address(src_ip).packed
    b = ipaddress.ip_address(dst_ip).packed
    if len(a) != len(b):
        raise ValueError(f"address families differ: {src_ip} / {dst_ip}")
    if pnum in PORT_PROTOCOLS:
        sp, dp = int(src_port or 0), int(dst_port or 0)
        if (a, sp) > (b, dp):
            a, b, sp, dp = b, a, dp, sp
        ports = struct.pack("!HH", sp, dp)
    else:
        if a > b:
            a, b = b, a
        ports = b""
    data = struct.pack("!H", seed) + a + b + struct.pack("!BB", pnum, 0) + ports
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode()


def community_ids(proto: int | np.ndarray, src: np.ndarray, sport: np.ndarray, dst: np.ndarray,
                  dport: np.ndarray, v6: np.ndarray, seed: int = 0) -> list[str]:
    """Community ID v1 for many port-bearing flows (TCP, UDP, SCTP), in either direction.

    src, dst: (n, 16) uint8, network byte order, an IPv4 address in the first 4 bytes (the rest is
    ignored); sport, dport: integer columns; v6: bool per flow; proto: one number or one per flow."""
    n = len(sport)
    if n == 0:
        return []
    protos = np.broadcast_to(np.asarray(proto, dtype=np.int64), (n,))
    bad = ~np.isin(protos, list(PORT_PROTOCOLS))
    if bad.any():
        raise ValueError(f"community_ids takes TCP, UDP and SCTP flows, not protocol {int(protos[bad][0])}")
    src, dst = np.ascontiguousarray(src, np.uint8), np.ascontiguousarray(dst, np.uint8)
    sport, dport = np.asarray(sport).astype(np.int64), np.asarray(dport).astype(np.int64)
    v6 = np.asarray(v6, bool)
    # order the endpoints by (address, port): addresses as two big-endian words, an IPv4 one in the
    # top 32 bits of the first
    s_w, d_w = src.view(">u8").astype(np.uint64), dst.view(">u8").astype(np.uint64)
    v4 = ~v6
    for w in (s_w, d_w):
        w[v4, 0] >>= np.uint64(32)
        w[v4, 1] = 0
    s0, s1, d0, d1 = s_w[:, 0], s_w[:, 1], d_w[:, 0], d_w[:, 1]
    swap = (s0 > d0) | ((s0 == d0) & ((s1 > d1) | ((s1 == d1) & (sport > dport))))
    lo_addr, hi_addr = np.where(swap[:, None], dst, src), np.where(swap[:, None], src, dst)
    lo_port, hi_port = np.where(swap, dport, sport), np.where(swap, sport, dport)

    out = np.empty(n, dtype=object)
    for is6, width in ((False, 4), (True, 16)):
        sel = np.flatnonzero(v6 == is6)
        if len(sel) == 0:
            continue
        rows = np.zeros((len(sel), 2 + 2 * width + 6), np.uint8)
        rows[:, 0], rows[:, 1] = (seed >> 8) & 0xFF, seed & 0xFF
        rows[:, 2 : 2 + width] = lo_addr[sel, :width]
        rows[:, 2 + width : 2 + 2 * width] = hi_addr[sel, :width]
        p = 2 + 2 * width
        rows[:, p] = protos[sel]
        rows[:, p + 2 : p + 4] = lo_port[sel].astype(">u2").view(np.uint8).reshape(-1, 2)
        rows[:, p + 4 : p + 6] = hi_port[sel].astype(">u2").view(np.uint8).reshape(-1, 2)
        if len(sel) == n:
            return _hash_rows(rows)
        out[sel] = _hash_rows(rows)
    return out.tolist()


def _hash_rows(rows: np.ndarray) -> list[str]:
    """'1:' + base64(sha1(row)) per row of a 2-D uint8 array; only sha1 runs once per row.

    The digests are padded to 21 bytes and base64-encoded in one call: 21 bytes encode to 28
    characters whose first 27 are those of the 20-byte digest, and the 28th (the zero byte's 'A')
    becomes the digest's '=' padding."""
    w = rows.shape[1]
    items = np.ascontiguousarray(rows).view(f"V{w}").ravel().tolist()  # bytes per row (V keeps trailing zeros)
    sha1 = hashlib.sha1
    joined = b"\0".join([h.digest() for h in map(sha1, items)]) + b"\0"
    enc = np.frombuffer(base64.b64encode(joined), np.uint8).reshape(-1, 28)
    text = np.empty((len(enc), 30), np.uint8)
    text[:, 0], text[:, 1], text[:, 2:29], text[:, 29] = ord("1"), ord(":"), enc[:, :27], ord("=")
    flat = text.tobytes().decode("ascii")
    return [flat[i : i + 30] for i in range(0, len(flat), 30)]


def addresses_16(hi: np.ndarray, lo: np.ndarray, v6: np.ndarray) -> np.ndarray:
    """(n, 16) address bytes for `community_ids` from two uint64 halves (IPv4: the low 32 bits of lo)."""
    out = np.zeros((len(hi), 16), np.uint8)
    out[:, :8] = np.asarray(hi, np.uint64).astype(">u8").view(np.uint8).reshape(-1, 8)
    out[:, 8:] = np.asarray(lo, np.uint64).astype(">u8").view(np.uint8).reshape(-1, 8)
    v4 = ~np.asarray(v6, bool)
    out[v4, :4] = out[v4, 12:16]
    return out
