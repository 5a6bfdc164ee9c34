"""Vectorised link/IP/TCP/UDP header walk over the mapped capture (numpy gathers, no per-packet Python).

Fast path link types: EN10MB (with stacked 802.1Q/802.1ad/QinQ tags and PPPoE), NULL/LOOP, RAW
(and its IPv4/IPv6 variants), LINUX_SLL and LINUX_SLL2. Other link types go to the tshark fallback.
IPv4 fragments keep their IP id so non-first fragments can join the flow of their first fragment.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from collector.capture.records import MappedFile, Records, rows

EN10MB, NULL, RAW, RAW12, RAW14, LOOP, SLL, IPV4, IPV6, SLL2 = 1, 0, 101, 12, 14, 108, 113, 228, 229, 276
FAST_LINKTYPES = {EN10MB, NULL, RAW, RAW12, RAW14, LOOP, SLL, IPV4, IPV6, SLL2}
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100, 0x9200)
TCP, UDP = 6, 17


@dataclass
class Headers:
    """Per-packet header fields; `ok` marks packets with an IPv4/IPv6 TCP/UDP header (or a fragment)."""

    ok: np.ndarray  # bool
    ver: np.ndarray  # uint8: 4 | 6
    proto: np.ndarray  # uint8
    src_hi: np.ndarray  # uint64 (IPv4: 0)
    src_lo: np.ndarray  # uint64 (IPv4: 0xffff00000000 | address)
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    sport: np.ndarray  # int32
    dport: np.ndarray
    flags: np.ndarray  # uint8 TCP flags
    seq: np.ndarray  # uint32
    plen: np.ndarray  # int64 transport payload bytes (from the headers, not the capture length)
    iplen: np.ndarray  # int64 IP packet bytes
    payload_off: np.ndarray  # int64 file offset of the transport payload
    frag_later: np.ndarray  # bool: a non-first IP fragment (no transport header)
    frag_first: np.ndarray  # bool: the first fragment of a fragmented datagram
    ipid: np.ndarray  # int64 IP identification (walk_mapped: zeros when no packet is a fragment)


class _Gather:
    """Bounds-checked byte gathers from the file for a set of packets."""

    def __init__(self, buf: np.ndarray, end: np.ndarray):
        self.buf = buf
        self.end = end  # per packet: one past its last captured byte
        self.last = max(len(buf) - 1, 0)

    def has(self, idx: np.ndarray, n: int, m: np.ndarray | None = None) -> np.ndarray:
        """Whether `n` bytes from `idx` were captured (`m` selects the packets `idx` belongs to)."""
        return idx + n <= (self.end if m is None else self.end[m])

    def u8(self, idx: np.ndarray) -> np.ndarray:
        return self.buf.take(idx, mode="clip").astype(np.int64)

    def u16(self, idx: np.ndarray) -> np.ndarray:
        return (self.u8(idx) << 8) | self.u8(idx + 1)

    def u32(self, idx: np.ndarray) -> np.ndarray:
        return (self.u16(idx) << 16) | self.u16(idx + 2)

    def rows(self, idx: np.ndarray, width: int) -> np.ndarray:
        """`width` bytes from each index as one (n, width) gather (a row copy each, cache-friendly).
        Only rows with `has(idx, width)` hold real bytes; the others are clipped junk."""
        if len(self.buf) < width:
            return np.zeros((len(idx), width), np.uint8)
        return rows(self.buf, np.minimum(idx, len(self.buf) - width), width)


def _be(m: np.ndarray, col: int, n: int) -> np.ndarray:
    """Big-endian unsigned integer of `n` bytes at column `col` of a row matrix."""
    out = m[:, col].astype(np.int64)
    for k in range(1, n):
        out = (out << 8) | m[:, col + k]
    return out


def link_layer(buf: np.ndarray, rec: Records) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(l3 offset, ethertype-like protocol, handled) per packet."""
    n = len(rec)
    off = rec.data_off
    end = off + rec.caplen
    g = _Gather(buf, end)
    lt = rec.linktype()
    l3 = off.copy()
    et = np.zeros(n, np.int64)
    handled = np.zeros(n, bool)

    m = lt == EN10MB
    if m.any():
        l3[m] = off[m] + 14
        et[m] = np.where(g.has(off[m], 14, m), g.u16(off[m] + 12), 0)
        for _ in range(4):  # stacked VLAN tags (QinQ, QinQinQ)
            v = m & np.isin(et, VLAN_TPIDS) & g.has(l3, 4)
            if not v.any():
                break
            et[v] = g.u16(l3[v] + 2)
            l3[v] += 4
        ppp = m & (et == 0x8864) & g.has(l3, 8)  # PPPoE session
        if ppp.any():
            pp = g.u16(l3[ppp] + 6)
            et[ppp] = np.where(pp == 0x0021, 0x0800, np.where(pp == 0x0057, 0x86DD, 0))
            l3[ppp] += 8
        handled |= m
    m = (lt == NULL) | (lt == LOOP)
    if m.any():
        fam_be = g.u32(off[m])
        fam_le = ((fam_be & 0xFF) << 24) | ((fam_be & 0xFF00) << 8) | ((fam_be >> 8) & 0xFF00) | (fam_be >> 24)
        fam = np.where(lt[m] == LOOP, fam_be, np.where(fam_be > 0xFFFF, fam_le, fam_be))
        et[m] = np.where(fam == 2, 0x0800, np.where(np.isin(fam, (10, 23, 24, 28, 30)), 0x86DD, 0))
        l3[m] = off[m] + 4
        handled |= m
    m = np.isin(lt, (RAW, RAW12, RAW14, IPV4, IPV6))
    if m.any():
        v = g.u8(off[m]) >> 4
        et[m] = np.where(v == 4, 0x0800, np.where(v == 6, 0x86DD, 0))
        handled |= m
    m = lt == SLL
    if m.any():
        et[m] = g.u16(off[m] + 14)
        l3[m] = off[m] + 16
        handled |= m
    m = lt == SLL2
    if m.any():
        et[m] = g.u16(off[m])
        l3[m] = off[m] + 20
        handled |= m
    return l3, et, handled


@dataclass
class _Ip:
    """Per-record IP-layer columns, filled by _ipv4 and _ipv6 (zero where a record is neither)."""

    ver: np.ndarray
    proto: np.ndarray
    src_hi: np.ndarray
    src_lo: np.ndarray
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    l4: np.ndarray  # where the transport header starts
    l4len: np.ndarray  # bytes from there to the end of the IP payload
    iplen: np.ndarray
    frag_off: np.ndarray
    mf: np.ndarray
    ipid: np.ndarray
    ok: np.ndarray

    @classmethod
    def empty(cls, n: int) -> _Ip:
        z64 = np.zeros(n, np.int64)
        return cls(ver=np.zeros(n, np.uint8), proto=z64.copy(), src_hi=np.zeros(n, np.uint64),
                   src_lo=np.zeros(n, np.uint64), dst_hi=np.zeros(n, np.uint64), dst_lo=np.zeros(n, np.uint64),
                   l4=z64.copy(), l4len=z64.copy(), iplen=z64.copy(), frag_off=z64.copy(), mf=np.zeros(n, bool),
                   ipid=z64.copy(), ok=np.zeros(n, bool))


WALK_CHUNK = 1 << 15  # records per slice of walk_mapped (its temporaries and resident file pages are those of one slice)


def walk_mapped(mapped: MappedFile, rec: Records, chunk: int = WALK_CHUNK) -> Headers:
    """walk() over a mapped capture a slice of records at a time, releasing each slice's pages
    behind it: the walk's temporaries and the capture's resident pages stay those of one slice;
    the result is the same."""
    if len(rec) <= chunk:
        out = walk(mapped.buf, rec)
        mapped.release()
        return _unused_as_zeros(out)
    out: Headers | None = None  # filled a slice at a time (concatenating the slices' parts would hold both)
    for i in range(0, len(rec), chunk):
        j = min(i + chunk, len(rec))
        part = walk(mapped.buf, rec.slice(i, j))
        if out is None:
            out = Headers(**{f.name: np.empty(len(rec), getattr(part, f.name).dtype) for f in fields(Headers)})
        for f in fields(Headers):
            getattr(out, f.name)[i:j] = getattr(part, f.name)
        del part
        mapped.release(int(rec.data_off[j - 1]))
    mapped.release()
    assert out is not None
    return _unused_as_zeros(out)


ZERO_WHEN_UNUSED = ("src_hi", "dst_hi", "ipid")  # see _unused_as_zeros


def _unused_as_zeros(h: Headers) -> Headers:
    """The high address halves when every packet is IPv4 (all zeros), and the IP ids when no packet
    is a fragment (only the fragment join reads them), as read-only zero views (no memory): they
    stayed resident through every later stage, 4 MB each on the 500k-packet capture."""
    unused = {"src_hi": not h.src_hi.any(), "dst_hi": not h.dst_hi.any(),
              "ipid": not (h.frag_first.any() or h.frag_later.any())}
    for name in ZERO_WHEN_UNUSED:
        col = getattr(h, name)
        if len(col) and unused[name]:
            setattr(h, name, np.broadcast_to(col.dtype.type(0), col.shape))
    return h


def walk(buf: np.ndarray, rec: Records) -> Headers:
    """IP and transport headers of every record (fast-path link types): the link layer, IPv4, IPv6
    (extension headers, fragments), then TCP and UDP, each step one numpy pass over all records."""
    g = _Gather(buf, rec.data_off + rec.caplen)
    l3, et, _ = link_layer(buf, rec)
    ip = _Ip.empty(len(rec))
    _ipv4(g, rec, l3, et, ip)
    _ipv6(g, buf, l3, et, ip)
    return _transport(g, ip)


def _ipv4(g: _Gather, rec: Records, l3: np.ndarray, et: np.ndarray, ip: _Ip) -> None:
    v4 = (et == 0x0800) & g.has(l3, 20)
    v4 &= (g.u8(l3) >> 4) == 4
    if not v4.any():
        return
    a = l3[v4]
    m = g.rows(a, 20)
    ihl = (m[:, 0].astype(np.int64) & 0xF) * 4
    tot = _be(m, 2, 2)
    # TSO/offloaded captures carry total length 0: fall back to the frame length
    frame_rest = (rec.data_off[v4] + rec.origlen[v4]) - a
    tot = np.where(tot == 0, frame_rest, tot)
    fo = _be(m, 6, 2)
    ip.ver[v4] = 4
    ip.proto[v4] = m[:, 9]
    ip.src_lo[v4] = (_be(m, 12, 4) | 0xFFFF00000000).astype(np.uint64)
    ip.dst_lo[v4] = (_be(m, 16, 4) | 0xFFFF00000000).astype(np.uint64)
    ip.l4[v4] = a + ihl
    ip.l4len[v4] = tot - ihl
    ip.iplen[v4] = tot
    ip.frag_off[v4] = fo & 0x1FFF
    ip.mf[v4] = (fo & 0x2000) != 0
    ip.ipid[v4] = _be(m, 4, 2)
    ip.ok[v4] = ihl >= 20


def _ipv6(g: _Gather, buf: np.ndarray, l3: np.ndarray, et: np.ndarray, ip: _Ip) -> None:
    v6 = (et == 0x86DD) & g.has(l3, 40)
    v6 &= (g.u8(l3) >> 4) == 6
    if not v6.any():
        return
    a = l3[v6]
    idx = a[:, None] + np.arange(8, 40)
    raw = buf[np.minimum(idx, len(buf) - 1)]
    words = np.ascontiguousarray(raw).view(">u8").astype(np.uint64)
    ip.src_hi[v6], ip.src_lo[v6], ip.dst_hi[v6], ip.dst_lo[v6] = words[:, 0], words[:, 1], words[:, 2], words[:, 3]
    plen6 = g.u16(a + 4)
    ip.ver[v6] = 6
    nh = g.u8(a + 6)
    pos = a + 40
    rest = plen6.copy()
    fo6 = np.zeros(len(a), np.int64)
    mf6 = np.zeros(len(a), bool)
    id6 = np.zeros(len(a), np.int64)
    for _ in range(6):  # extension headers
        ext = np.isin(nh, (0, 43, 60, 51, 44)) & g.has(pos, 8, v6)
        if not ext.any():
            break
        fr = ext & (nh == 44)
        hl = np.where(nh == 51, (g.u8(pos + 1) + 2) * 4, (g.u8(pos + 1) + 1) * 8)
        hl = np.where(fr, 8, hl)
        fw = g.u16(pos + 2)
        fo6 = np.where(fr, fw >> 3, fo6)
        mf6 = np.where(fr, (fw & 1) != 0, mf6)
        id6 = np.where(fr, g.u32(pos + 4), id6)
        nh = np.where(ext, g.u8(pos), nh)
        pos = np.where(ext, pos + hl, pos)
        rest = np.where(ext, rest - hl, rest)
    ip.proto[v6] = nh
    ip.l4[v6] = pos
    ip.l4len[v6] = rest
    ip.iplen[v6] = plen6 + 40
    ip.frag_off[v6] = fo6
    ip.mf[v6] = mf6
    ip.ipid[v6] = id6
    ip.ok[v6] = True


def _transport(g: _Gather, ip: _Ip) -> Headers:
    """TCP and UDP headers where the IP layer holds them (not in a later fragment), and the Headers."""
    n = len(ip.ok)
    proto, l4, l4len = ip.proto, ip.l4, ip.l4len
    frag_later = ip.ok & (ip.frag_off > 0)
    sport = np.zeros(n, np.int64)
    dport = np.zeros(n, np.int64)
    flags = np.zeros(n, np.int64)
    seq = np.zeros(n, np.int64)
    plen = np.zeros(n, np.int64)
    poff = np.zeros(n, np.int64)
    ok = frag_later & np.isin(proto, (TCP, UDP))

    t = ip.ok & ~frag_later & (proto == TCP) & g.has(l4, 14)
    if t.any():
        a = l4[t]
        m = g.rows(a, 14)
        sport[t] = _be(m, 0, 2)
        dport[t] = _be(m, 2, 2)
        seq[t] = _be(m, 4, 4)
        doff = (m[:, 12].astype(np.int64) >> 4) * 4
        flags[t] = m[:, 13]
        plen[t] = np.maximum(l4len[t] - doff, 0)
        poff[t] = a + doff
        ok[t] = True
    u = ip.ok & ~frag_later & (proto == UDP) & g.has(l4, 8)
    if u.any():
        a = l4[u]
        m = g.rows(a, 8)
        sport[u] = _be(m, 0, 2)
        dport[u] = _be(m, 2, 2)
        ulen = _be(m, 4, 2)
        plen[u] = np.maximum(np.where(ulen >= 8, ulen, l4len[u]) - 8, 0)
        poff[u] = a + 8
        ok[u] = True
    return Headers(
        ok=ok,
        ver=ip.ver,
        proto=proto.astype(np.uint8),
        src_hi=ip.src_hi,
        src_lo=ip.src_lo,
        dst_hi=ip.dst_hi,
        dst_lo=ip.dst_lo,
        sport=sport.astype(np.int32),
        dport=dport.astype(np.int32),
        flags=flags.astype(np.uint8),
        seq=seq.astype(np.uint32),
        plen=plen,
        iplen=ip.iplen,
        payload_off=poff,
        frag_later=frag_later,
        frag_first=ip.ok & (ip.frag_off == 0) & ip.mf,
        ipid=ip.ipid,
    )
