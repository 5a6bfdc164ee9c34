"""Packets -> flows: numpy assigns each packet a flow id, DuckDB aggregates the flows.

Flow identity follows tshark's conversation semantics: one flow per 5-tuple, except that a TCP SYN
(without ACK) carrying a new initial sequence number starts a new connection on a reused port.
Non-first IPv4/IPv6 fragments join the flow of their first fragment (same addresses, protocol and id).
The originator is the sender of the first SYN, else the receiver of a first SYN-ACK, else the sender
of the first packet. TCP state and history letters follow Zeek's conn.log.
"""

from __future__ import annotations

import base64
import hashlib
import socket
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from collector.capture.headers import TCP, UDP, Headers

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
SYN, FIN, RST, ACK = 0x02, 0x01, 0x04, 0x10


def _mix(*cols: np.ndarray) -> np.ndarray:
    """A 64-bit hash of several integer columns (collisions are negligible for flow counts)."""
    h = np.zeros(len(cols[0]), np.uint64)
    with np.errstate(over="ignore"):
        for c in cols:
            h = (h ^ c.astype(np.uint64)) * _M1
            h ^= h >> np.uint64(29)
            h *= _M2
            h ^= h >> np.uint64(32)
    return h


@dataclass
class FlowAssignment:
    """Per-record flow id (-1: not part of a TCP/UDP flow) and direction; per-flow key."""

    fid: np.ndarray  # int64 per record
    is_orig: np.ndarray  # bool per record
    count: int
    # per flow
    ver: np.ndarray
    proto: np.ndarray
    a_hi: np.ndarray
    a_lo: np.ndarray
    a_port: np.ndarray
    b_hi: np.ndarray
    b_lo: np.ndarray
    b_port: np.ndarray
    orig_is_a: np.ndarray
    first_rec: np.ndarray  # record index of each flow's first packet


def assign(h: Headers) -> FlowAssignment:
    n = len(h.ok)
    valid = h.ok & ~h.frag_later
    idx = np.nonzero(valid)[0]
    s_hi, s_lo, sp = h.src_hi[idx], h.src_lo[idx], h.sport[idx].astype(np.int64)
    d_hi, d_lo, dp = h.dst_hi[idx], h.dst_lo[idx], h.dport[idx].astype(np.int64)
    swap = (s_hi > d_hi) | ((s_hi == d_hi) & ((s_lo > d_lo) | ((s_lo == d_lo) & (sp > dp))))
    a_hi, a_lo, a_p = np.where(swap, d_hi, s_hi), np.where(swap, d_lo, s_lo), np.where(swap, dp, sp)
    b_hi, b_lo, b_p = np.where(swap, s_hi, d_hi), np.where(swap, s_lo, d_lo), np.where(swap, sp, dp)
    proto = h.proto[idx]
    key = _mix(proto, a_hi, a_lo, a_p, b_hi, b_lo, b_p)
    perm = np.argsort(key, kind="stable")  # stable: packets stay in file order within a key
    order = idx[perm]
    k = key[perm]
    m = len(order)
    grp_start = np.ones(m, bool)
    if m:
        grp_start[1:] = k[1:] != k[:-1]
    fl = h.flags[order]
    syn_only = (proto[perm] == TCP) & ((fl & (SYN | ACK)) == SYN)
    seg_start = grp_start.copy()
    s_pos = np.nonzero(syn_only)[0]
    if len(s_pos):
        grp_id = np.cumsum(grp_start) - 1
        sg = grp_id[s_pos]
        sq = h.seq[order][s_pos]
        new = np.ones(len(s_pos), bool)
        new[1:] = (sg[1:] != sg[:-1]) | (sq[1:] != sq[:-1])
        # a SYN directly at a group start is that group's start, not a second flow
        seg_start[s_pos[new]] = True
    fid_sorted = np.cumsum(seg_start) - 1
    count = int(fid_sorted[-1] + 1) if m else 0
    starts = np.nonzero(seg_start)[0]

    src_is_a = ~swap[perm]
    big = np.int64(m + 1)
    pos = np.arange(m, dtype=np.int64)
    first_syn = np.minimum.reduceat(np.where(syn_only, pos, big), starts) if m else np.zeros(0, np.int64)
    first = starts
    first_synack = ((fl[first] & (SYN | ACK)) == (SYN | ACK)) if m else np.zeros(0, bool)
    orig_is_a = np.where(
        first_syn < big,
        src_is_a[np.minimum(first_syn, max(m - 1, 0))],
        np.where(first_synack, ~src_is_a[first], src_is_a[first]),
    )
    fid = np.full(n, -1, np.int64)
    fid[order] = fid_sorted
    is_orig = np.zeros(n, bool)
    is_orig[order] = src_is_a == orig_is_a[fid_sorted]

    # non-first fragments: join the flow of their first fragment
    later = np.nonzero(h.frag_later)[0]
    if len(later):
        firsts = np.nonzero(valid & h.frag_first)[0]
        fk_first = _mix(h.ver[firsts], h.proto[firsts], h.src_hi[firsts], h.src_lo[firsts], h.dst_hi[firsts], h.dst_lo[firsts], h.ipid[firsts])
        fk_later = _mix(h.ver[later], h.proto[later], h.src_hi[later], h.src_lo[later], h.dst_hi[later], h.dst_lo[later], h.ipid[later])
        srt = np.argsort(fk_first, kind="stable")
        pos_f = np.searchsorted(fk_first[srt], fk_later)
        pos_f = np.minimum(pos_f, max(len(srt) - 1, 0))
        hit = (fk_first[srt][pos_f] == fk_later) if len(srt) else np.zeros(len(later), bool)
        src_rec = firsts[srt][pos_f] if len(srt) else later
        fid[later] = np.where(hit, fid[src_rec], -1)
        is_orig[later] = np.where(hit, is_orig[src_rec], False)

    return FlowAssignment(
        fid=fid,
        is_orig=is_orig,
        count=count,
        ver=h.ver[order[first]] if m else np.zeros(0, np.uint8),
        proto=proto[perm][first] if m else np.zeros(0, np.uint8),
        a_hi=a_hi[perm][first],
        a_lo=a_lo[perm][first],
        a_port=a_p[perm][first],
        b_hi=b_hi[perm][first],
        b_lo=b_lo[perm][first],
        b_port=b_p[perm][first],
        orig_is_a=orig_is_a,
        first_rec=order[first] if m else np.zeros(0, np.int64),
    )


def select_for_dissection(h: Headers, fa: FlowAssignment, buf: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Record indices tshark must see: every packet of DNS flows (port 53, UDP or TCP, with their
    fragments), the first 3 client and first server payload packets of other TCP flows (TLS
    ClientHello/ServerHello, even when split over segments), and the first 2 client long-header
    packets of other UDP flows (QUIC Initial)."""
    rec = np.nonzero(fa.fid >= 0)[0]
    if not len(rec):
        return rec
    f = fa.fid[rec]
    dns_flow = (fa.a_port == 53) | (fa.b_port == 53)
    # (flow, record) order so per-flow ranks are cumulative counts
    o = np.lexsort((rec, f))
    rec, f = rec[o], f[o]
    payload = (h.plen[rec] > 0) & ~h.frag_later[rec]
    orig = fa.is_orig[rec]
    starts = np.r_[0, np.nonzero(f[1:] != f[:-1])[0] + 1]
    grp = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(rec)]))

    def rank(mask: np.ndarray) -> np.ndarray:
        cs = np.cumsum(mask)
        before = (cs - mask)[starts]
        return cs - before[grp] - 1

    r_o = rank(payload & orig)
    r_r = rank(payload & ~orig)
    proto = fa.proto[f]
    po = h.payload_off[rec]
    first_byte = np.where(payload & (po < end[rec]), buf[np.minimum(po, len(buf) - 1)], 0)
    tcp = proto == TCP
    udp = proto == UDP
    sel = dns_flow[f]
    sel |= tcp & payload & ((orig & (r_o < 3)) | (~orig & (r_r < 1)))
    sel |= udp & payload & orig & (r_o < 2) & (((first_byte & 0x80) != 0) | (po < 0))
    return np.sort(rec[sel])


def aggregate(con: duckdb.DuckDBPyConnection, h: Headers, fa: FlowAssignment, ts_ns: np.ndarray) -> pa.Table:
    """Per-flow counters, times, Zeek-style history and state (DuckDB GROUP BY over Arrow)."""
    rec = np.nonzero(fa.fid >= 0)[0]
    fl = h.flags[rec]
    pk = pa.table(
        {
            "fid": fa.fid[rec],
            "i": rec,
            "ts": ts_ns[rec],
            "o": fa.is_orig[rec],
            "plen": h.plen[rec],
            "iplen": h.iplen[rec],
            "syn": (fl & SYN) != 0,
            "ack": (fl & ACK) != 0,
            "fin": (fl & FIN) != 0,
            "rst": (fl & RST) != 0,
        }
    )
    con.register("__rw_pk", pk)
    letters = []
    conds = {
        "S": "syn AND NOT ack",
        "H": "syn AND ack",
        "A": "ack AND NOT syn AND NOT fin AND NOT rst AND plen = 0",
        "D": "plen > 0",
        "F": "fin",
        "R": "rst",
    }
    for c, cond in conds.items():
        letters.append(f"min(i) FILTER (WHERE o AND {cond}) AS {c}_o")
        letters.append(f"min(i) FILTER (WHERE NOT o AND {cond}) AS {c}_r")
    parts = []
    for c in conds:
        parts.append(f"{{'i': {c}_o, 'c': '{c}'}}")
        parts.append(f"{{'i': {c}_r, 'c': '{c.lower()}'}}")
    hist = (
        "array_to_string(list_transform(list_sort(list_filter(["
        + ", ".join(parts)
        + "], x -> x.i IS NOT NULL)), x -> x.c), '')"
    )
    sql = f"""
    WITH g AS (
      SELECT fid, min(ts) AS ts0, max(ts) AS ts1,
        coalesce(sum(plen) FILTER (WHERE o), 0) AS bytes_out,
        coalesce(sum(plen) FILTER (WHERE NOT o), 0) AS bytes_in,
        count(*) FILTER (WHERE o) AS packets_out,
        count(*) FILTER (WHERE NOT o) AS packets_in,
        coalesce(sum(iplen) FILTER (WHERE o), 0) AS ip_bytes_out,
        coalesce(sum(iplen) FILTER (WHERE NOT o), 0) AS ip_bytes_in,
        {", ".join(letters)}
      FROM __rw_pk GROUP BY fid)
    SELECT fid, ts0, ts1, bytes_out, bytes_in, packets_out, packets_in, ip_bytes_out, ip_bytes_in,
      {hist} AS history,
      CASE
        WHEN S_o IS NOT NULL AND H_r IS NOT NULL THEN
          CASE WHEN R_o IS NOT NULL THEN 'RSTO' WHEN R_r IS NOT NULL THEN 'RSTR'
               WHEN F_o IS NOT NULL AND F_r IS NOT NULL THEN 'SF'
               WHEN F_o IS NOT NULL THEN 'S2' WHEN F_r IS NOT NULL THEN 'S3' ELSE 'S1' END
        WHEN S_o IS NOT NULL THEN
          CASE WHEN R_r IS NOT NULL THEN 'REJ' WHEN R_o IS NOT NULL THEN 'RSTOS0'
               WHEN F_o IS NOT NULL THEN 'SH' WHEN packets_in = 0 THEN 'S0' ELSE 'OTH' END
        WHEN H_r IS NOT NULL THEN
          CASE WHEN R_r IS NOT NULL THEN 'RSTRH' WHEN F_r IS NOT NULL THEN 'SHR' ELSE 'OTH' END
        ELSE 'OTH' END AS tcp_state
    FROM g ORDER BY fid"""
    try:
        out = con.execute(sql).to_arrow_table()
    finally:
        con.unregister("__rw_pk")
    return out


def _format_ips(ver: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> list[str]:
    """Text addresses, formatting each distinct address once."""
    if not len(ver):
        return []
    keys = np.stack([ver.astype(np.uint64), hi, lo], axis=1)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    txt = []
    for v, a, b in uniq.tolist():
        if v == 4:
            txt.append(socket.inet_ntop(socket.AF_INET, (b & 0xFFFFFFFF).to_bytes(4, "big")))
        else:
            txt.append(socket.inet_ntop(socket.AF_INET6, a.to_bytes(8, "big") + b.to_bytes(8, "big")))
    arr = np.asarray(txt, dtype=object)
    return arr[inv.reshape(-1)].tolist()


def community_ids(fa: FlowAssignment, seed: int = 0) -> list[str]:
    """Community ID v1 for every flow: the hashed bytes are built with numpy, hashed in one loop.

    Same result as `community_id.community_id()` (the canonical a/b order is (address, port))."""
    n = fa.count
    out: list[str] = [""] * n
    for v, width in ((4, 4), (6, 16)):
        sel = np.nonzero(fa.ver == v)[0]
        if not len(sel):
            continue
        rows = np.zeros((len(sel), 2 + 2 * width + 2 + 4), np.uint8)
        rows[:, 0], rows[:, 1] = seed >> 8, seed & 0xFF

        for col, hi, lo in ((2, fa.a_hi, fa.a_lo), (2 + width, fa.b_hi, fa.b_lo)):
            if width == 4:
                rows[:, col : col + 4] = (lo[sel] & np.uint64(0xFFFFFFFF)).astype(">u4").view(np.uint8).reshape(-1, 4)
            else:
                rows[:, col : col + 8] = hi[sel].astype(">u8").view(np.uint8).reshape(-1, 8)
                rows[:, col + 8 : col + 16] = lo[sel].astype(">u8").view(np.uint8).reshape(-1, 8)
        p = 2 + 2 * width
        rows[:, p] = fa.proto[sel]
        rows[:, p + 2 : p + 4] = fa.a_port[sel].astype(">u2").view(np.uint8).reshape(-1, 2)
        rows[:, p + 4 : p + 6] = fa.b_port[sel].astype(">u2").view(np.uint8).reshape(-1, 2)
        blob = rows.tobytes()
        w = rows.shape[1]
        sha1, b64 = hashlib.sha1, base64.b64encode
        for j, i in enumerate(sel.tolist()):
            out[i] = "1:" + b64(sha1(blob[j * w : (j + 1) * w]).digest()).decode()
    return out


def flow_uids(host_id: str, capture_sha: str, cids: list[str], ts0: np.ndarray) -> list[str]:
    """Deterministic ids: the same capture on the same host always yields the same uids."""
    prefix = f"{host_id}|{capture_sha}|".encode()
    b2, b32 = hashlib.blake2b, base64.b32encode
    return [
        "C" + b32(b2(prefix + c.encode() + b"|" + str(t).encode(), digest_size=10).digest()).decode().lower()
        for c, t in zip(cids, ts0.tolist(), strict=True)
    ]


def endpoints(fa: FlowAssignment) -> dict[str, object]:
    """Originator/responder addresses and ports per flow."""
    oa = fa.orig_is_a
    src_hi, src_lo = np.where(oa, fa.a_hi, fa.b_hi), np.where(oa, fa.a_lo, fa.b_lo)
    dst_hi, dst_lo = np.where(oa, fa.b_hi, fa.a_hi), np.where(oa, fa.b_lo, fa.a_lo)
    return {
        "src_ip": _format_ips(fa.ver, src_hi, src_lo),
        "dst_ip": _format_ips(fa.ver, dst_hi, dst_lo),
        "src_port": np.where(oa, fa.a_port, fa.b_port).astype(np.int32),
        "dst_port": np.where(oa, fa.b_port, fa.a_port).astype(np.int32),
        "proto": np.where(fa.proto == TCP, "tcp", "udp"),
    }
