"""Write a large synthetic pcap quickly: many TLS 1.3 flows with varied SNI, each preceded by DNS.

Each connection: a DNS A query/response for its server name (UDP 53; every other connection, the
others hit the resolver cache), then TCP SYN, SYN-ACK, ACK,
ClientHello (SNI, ALPN, supported_versions, key_share), ServerHello + ChangeCipherSpec + encrypted
records, `data` application-data packets in both directions, and FIN/FIN/ACK. Connections overlap
in time like real traffic. Bytes are built with struct (no scapy per packet); checksums are left 0.

Used by the ingest tests and by bench/ingest.py; `python bench/gen_capture.py OUT.pcap` writes one.
"""

from __future__ import annotations

import struct

import numpy as np

ETH_HDR = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"


def _ip(src: bytes, dst: bytes, proto: int, payload_len: int, ipid: int) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, ipid & 0xFFFF, 0x4000, 64, proto, 0, src, dst)


def _tcp(sport: int, dport: int, seq: int, ack: int, flags: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0)


def _udp(sport: int, dport: int, payload_len: int) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + payload_len, 0)


def _qname(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"


MSS = 1460  # TCP payload bytes per segment at MTU 1500 (no TCP options)
PQ_KEY_SHARE = 1216  # X25519MLKEM768's client key share: the hello no longer fits one segment


def client_hello(sni: str, rnd: bytes, pq: bytes = b"") -> bytes:
    """A TLS 1.3 ClientHello record; `pq`: an X25519MLKEM768 key share (1,216 bytes) offered before
    X25519's, as OpenSSL 3.5+, Chrome, Go 1.24+ and Node do, and a GREASE encrypted_client_hello
    extension of 218 bytes like Chrome's (its bytes taken from `pq`): the record is then 1,666
    bytes, over two segments."""
    s = sni.encode()
    sn = struct.pack("!BH", 0, len(s)) + s
    ext = struct.pack("!HHH", 0, len(sn) + 2, len(sn)) + sn
    groups = (struct.pack("!H", 0x11EC) if pq else b"") + struct.pack("!HHH", 0x1D, 0x17, 0x18)
    ext += struct.pack("!HHH", 10, len(groups) + 2, len(groups)) + groups
    sigs = struct.pack("!HHHHH", 0x0403, 0x0804, 0x0401, 0x0503, 0x0805)
    ext += struct.pack("!HHH", 13, len(sigs) + 2, len(sigs)) + sigs
    alpn = b"\x02h2\x08http/1.1"
    ext += struct.pack("!HHH", 16, len(alpn) + 2, len(alpn)) + alpn
    ext += struct.pack("!HHB", 43, 5, 4) + b"\x03\x04\x03\x03"
    ks = (struct.pack("!HH", 0x11EC, len(pq)) + pq if pq else b"") + struct.pack("!HH", 0x1D, 32) + rnd
    ext += struct.pack("!HHH", 51, len(ks) + 2, len(ks)) + ks
    if pq:
        ext += struct.pack("!HH", 0xFE0D, 218) + pq[:218]
    ciphers = struct.pack("!HHHHH", 0x1301, 0x1302, 0x1303, 0xC02F, 0xC030)
    body = b"\x03\x03" + rnd + b"\x20" + rnd + struct.pack("!H", len(ciphers)) + ciphers + b"\x01\x00"
    body += struct.pack("!H", len(ext)) + ext
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def server_hello(rnd: bytes, filler: bytes) -> bytes:
    ext = struct.pack("!HHH", 43, 2, 0x0304) + struct.pack("!HHHH", 51, 36, 0x1D, 32) + rnd
    body = b"\x03\x03" + rnd + b"\x20" + rnd + b"\x13\x01\x00" + struct.pack("!H", len(ext)) + ext
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    rec = b"\x16\x03\x03" + struct.pack("!H", len(hs)) + hs + b"\x14\x03\x03\x00\x01\x01"
    return rec + b"\x17\x03\x03" + struct.pack("!H", len(filler)) + filler


def generate(path: str, packets: int = 500_000, data: int = 20, seed: int = 1, pq: bool = False) -> dict:
    """Write the capture; returns what it contains (for checking an ingest of it). `pq`: every
    ClientHello carries a post-quantum key share and goes out in two segments (MSS bytes, then the
    rest), as today's clients send it; the default capture is unchanged byte for byte."""
    rng = np.random.default_rng(seed)
    per_flow = 1 + 3 + 2 + data + 3  # DNS for every other connection
    flows = max(1, packets // per_flow)
    noise = rng.integers(0, 256, 1 << 16, dtype=np.uint8).tobytes()
    sizes = rng.integers(60, 1400, size=(flows, data)).tolist()
    ts_list: list[int] = []
    pkts: list[bytes] = []
    resolver = bytes([10, 0, 0, 53])
    base = 1_700_000_000_000_000  # microseconds
    names = set()
    for i in range(flows):
        client = bytes([10, 1 + (i >> 16) % 200, (i >> 8) & 0xFF, i & 0xFF])
        server = bytes([198, 18, (i >> 8) % 250, 1 + i % 250])
        sni = f"api{i}.router{i % 97}.example.com"
        names.add(sni)
        sport = 1024 + (i % 60000)
        t = base + i * 3_000  # a new connection every 3 ms; each lasts ~40 ms, so they overlap
        qn = _qname(sni)
        tid = i & 0xFFFF
        q = struct.pack("!HHHHHH", tid, 0x0100, 1, 0, 0, 0) + qn + b"\x00\x01\x00\x01"
        r = struct.pack("!HHHHHH", tid, 0x8180, 1, 1, 0, 0) + qn + b"\x00\x01\x00\x01"
        r += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + server
        dport_dns = 20000 + (i % 40000)
        if i % 2 == 0:  # every other name is still in the resolver's cache (PERF.md's capture: 1 DNS flow per 2 TCP)
            pkts.append(ETH_HDR + _ip(client, resolver, 17, 8 + len(q), i) + _udp(dport_dns, 53, len(q)) + q)
            ts_list.append(t)
            pkts.append(ETH_HDR + _ip(resolver, client, 17, 8 + len(r), i) + _udp(53, dport_dns, len(r)) + r)
            ts_list.append(t + 500)
            t += 1000
        cseq, sseq = 1000 + i, 5000 + i
        hello = client_hello(sni, noise[i % 60000 : i % 60000 + 32],
                             noise[i % 50000 : i % 50000 + PQ_KEY_SHARE] if pq else b"")
        seg = [
            (True, 0x02, b""),
            (False, 0x12, b""),
            (True, 0x10, b""),
            *[(True, 0x10 if k + MSS < len(hello) else 0x18, hello[k : k + MSS]) for k in range(0, len(hello), MSS)],
            (False, 0x18, server_hello(noise[i % 50000 : i % 50000 + 32], noise[:900])),
        ]
        for k, size in enumerate(sizes[i]):
            off = (i * 7 + k * 131) % 60000
            seg.append((k % 2 == 0, 0x18, b"\x17\x03\x03" + struct.pack("!H", size) + noise[off : off + size]))
        seg += [(True, 0x11, b""), (False, 0x11, b""), (True, 0x10, b"")]
        for from_client, flags, payload in seg:
            if from_client:
                s, d, sp, dp, seq, ack = client, server, sport, 443, cseq, sseq
            else:
                s, d, sp, dp, seq, ack = server, client, 443, sport, sseq, cseq
            tcp = _tcp(sp, dp, seq, ack if flags != 0x02 else 0, flags)
            pkts.append(ETH_HDR + _ip(s, d, 6, 20 + len(payload), i) + tcp + payload)
            ts_list.append(t)
            t += 1000
            step = len(payload) + (1 if flags & 0x03 else 0)
            if from_client:
                cseq += step
            else:
                sseq += step
    ts = np.asarray(ts_list, np.int64)
    order = np.argsort(ts, kind="stable")
    caplens = np.fromiter((len(p) for p in pkts), np.int64, len(pkts))
    hdr = np.zeros(len(pkts), dtype=[("s", "<u4"), ("u", "<u4"), ("c", "<u4"), ("o", "<u4")])
    hdr["s"], hdr["u"] = ts // 1_000_000, ts % 1_000_000
    hdr["c"], hdr["o"] = caplens, caplens
    hb = hdr.tobytes()
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        out = []
        for j in order.tolist():
            out.append(hb[j * 16 : j * 16 + 16])
            out.append(pkts[j])
            if len(out) >= 65536:
                f.write(b"".join(out))
                out.clear()
        f.write(b"".join(out))
    return {"packets": len(pkts), "tcp_flows": flows, "udp_flows": (flows + 1) // 2, "sni": len(names),
            "dns_queries": (flows + 1) // 2}
