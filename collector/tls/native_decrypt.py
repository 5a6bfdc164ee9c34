"""Native decryptor: capture + key-log secrets -> the Segments StreamAssembler consumes, without tshark.

The capture is read with ingest's readers (collector.capture.records / headers.walk / flows.assign,
so connections on reused ports split exactly as the flows table does); each TCP direction is
reassembled here (retransmissions dropped, out-of-order segments reordered, holes the capture
missed skipped and counted); TLS records are parsed and opened with collector.tls.records. A
connection's Segments come out when the connection has been processed: one per packet that
completes a TLS record or carries cleartext, plus SYN/FIN/RST, with `seq`/`nxtseq` 0 (the bytes are
already in order) and the connection's retransmission and gap counts on its first Segment.

Whenever this path cannot be sure it gives the same bytes as tshark, it raises NativeUnsure and the
pipeline decodes the whole capture with tshark instead: link types the fast walk does not cover, IP
fragments of TCP, SSLv3-TLS 1.1, cipher suites other than AES-GCM/ChaCha20-Poly1305, compression,
HelloRetryRequest, 0-RTT, RSA pre-master keys, TCP Fast Open, a hole or snaplen cut inside a TLS
stream, renegotiation, a record that fails after others of its direction decrypted, a connection
of more than 64 MiB (held whole in memory here, while tshark's output is streamed). These checks
come before any Segment of the capture where they can (link types, fragments, connection sizes);
otherwise the pipeline discards what it decoded and starts over with tshark.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from collector.capture.flows import FlowAssignment, assign, endpoints
from collector.capture.headers import FAST_LINKTYPES, TCP, Headers, walk_mapped
from collector.capture.records import MappedFile, NotACapture, Records, read_records
from collector.capture.tlspeek import client_hello_body
from collector.tls.keylog import Secrets, load_secrets
from collector.tls.records import TLS12, TLS13, RecordKey, suite_info, tls12_keys, tls13_key
from collector.tls.tshark_decrypt import Segment

SYN, FIN, RST, ACK = 0x02, 0x01, 0x04, 0x10
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
MAX_RECORD = (1 << 14) + 2048
MAX_FLOW_BYTES = 64 << 20  # a connection's payload is reassembled in memory: bigger ones go to tshark
QUEUE_CHUNKS = 8192  # at most this many chunks of connections in a split capture's queue (32 KiB: one pipe buffer)


class NativeUnsure(Exception):
    """The native path cannot vouch for this capture; the message says why (never secret content)."""


def _looks_tls(b: bytes) -> bool:
    return len(b) >= 5 and 20 <= b[0] <= 23 and b[1] == 3 and b[2] <= 4


def _records(buf: bytes) -> Iterator[tuple[int, int, bytes, bytes]]:
    """(end offset, content type, 5-byte header, fragment) of each whole record; stops at a partial one."""
    pos, n = 0, len(buf)
    while pos + 5 <= n:
        ct = buf[pos]
        ln = (buf[pos + 3] << 8) | buf[pos + 4]
        if not 20 <= ct <= 24 or buf[pos + 1] != 3 or ln > MAX_RECORD:
            raise NativeUnsure("bytes that are not a TLS record inside a TLS stream")
        end = pos + 5 + ln
        if end > n:
            return
        yield end, ct, buf[pos : pos + 5], buf[pos + 5 : end]
        pos = end


def _first_handshake(buf: bytes, want: int) -> tuple[bytes | None, int]:
    """The first handshake message (body) of a direction if it is of type `want`, and the end offset
    of the record completing it. Cleartext records only (before any encrypted one)."""
    hs = b""
    for end, ct, _h, frag in _records(buf):
        if ct == 20 or ct == 21:
            continue
        if ct != 22:
            return None, 0
        hs += frag
        if len(hs) >= 4:
            ln = (hs[1] << 16) | (hs[2] << 8) | hs[3]
            if len(hs) >= 4 + ln:
                return (hs[4 : 4 + ln] if hs[0] == want else None), end
    return None, 0


def _server_hello(body: bytes) -> tuple[bytes, int, int, int, str | None]:
    """(random, version, cipher suite, compression, selected ALPN) of a ServerHello body."""
    version = (body[0] << 8) | body[1]
    rnd = body[2:34]
    p = 35 + body[34]
    suite = (body[p] << 8) | body[p + 1]
    comp = body[p + 2]
    p += 3
    alpn = None
    if p + 2 <= len(body):
        end = min(len(body), p + 2 + ((body[p] << 8) | body[p + 1]))
        p += 2
        while p + 4 <= end:
            t, ln = (body[p] << 8) | body[p + 1], (body[p + 2] << 8) | body[p + 3]
            d = body[p + 4 : p + 4 + ln]
            if t == 43 and ln == 2:
                version = (d[0] << 8) | d[1]
            elif t == 16 and ln >= 3:
                alpn = d[3 : 3 + d[2]].decode("utf-8", "replace")
            p += 4 + ln
    return rnd, version, suite, comp, alpn


class _Direction:
    """One direction's record keys: TLS 1.3 handshake key then application key (the switch is found
    by which key's tag verifies), or the TLS 1.2 key after ChangeCipherSpec."""

    __slots__ = ("keys", "cur", "opened", "tls13", "encrypted", "hs", "finished", "alpn")

    def __init__(self, keys: list[RecordKey | None], tls13: bool):
        self.keys = keys
        self.cur = 0
        self.opened = 0
        self.tls13 = tls13
        self.encrypted = tls13  # TLS 1.3: every type-23 record; TLS 1.2: after ChangeCipherSpec
        self.hs = b""  # TLS 1.3 decrypted handshake bytes (KeyUpdate)
        self.finished = False  # TLS 1.2: the encrypted Finished was seen
        self.alpn: str | None = None  # TLS 1.3: the server's choice, from EncryptedExtensions

    def open(self, header: bytes, frag: bytes) -> bytes | None:
        for j in range(self.cur, len(self.keys)):
            key = self.keys[j]
            if key is None:
                continue
            pt = key.open(header, frag)
            if pt is not None:
                self.cur = j
                self.opened += 1
                return pt
        if self.opened:
            raise NativeUnsure("a TLS record failed to decrypt after earlier records of its direction decrypted")
        return None

    def handshake13(self, data: bytes) -> None:
        """Decrypted handshake messages: the ALPN of EncryptedExtensions; under the application key,
        KeyUpdate switches to the next secret."""
        app = self.cur == len(self.keys) - 1 and self.cur > 0
        self.hs += data
        while len(self.hs) >= 4:
            ln = (self.hs[1] << 16) | (self.hs[2] << 8) | self.hs[3]
            if len(self.hs) < 4 + ln:
                return
            t, body, self.hs = self.hs[0], self.hs[4 : 4 + ln], self.hs[4 + ln :]
            if t == 8 and self.alpn is None:
                self.alpn = _ee_alpn(body)
            elif t == 24 and app:
                key = self.keys[self.cur]
                assert key is not None
                self.keys[self.cur] = key.updated()


def _walkable(rec: Records) -> None:
    odd = set(rec.linktypes) - FAST_LINKTYPES
    if odd:
        raise NativeUnsure(f"link type {sorted(odd)[0]} is not walked natively")


@dataclass
class Walked:
    """A capture already read by the caller with the same readers (ingest: record walk, numpy header
    walk, flow assignment), handed over so the native decryptor does not read it again. The caller
    keeps `mf` open until decryption is done and closes it."""

    mf: MappedFile
    rec: Records
    headers: Headers
    flows: FlowAssignment


class NativeDecrypt:
    """Iterate the Segments of a capture decrypted here; raises NativeUnsure (before or while
    iterating) when tshark must do it. Same surface as TsharkDecrypt (`rows`, `returncode`)."""

    def __init__(self, capture: Path, keylog: Path | None, walked: Walked | None = None):
        self.capture = capture
        self.keylog = keylog
        self.walked = walked  # the caller's read of this capture (ingest's): not read a second time
        self.rows = 0
        self.returncode: int | None = None
        self.records_decrypted = 0
        self.records_undecrypted = 0
        # queue: a pipe of 4-byte chunk numbers shared by the processes of a split capture (decode_capture
        # forks after prepare()): each takes the next chunk of connections when it is ready for one;
        # rank: connection -> position in the capture's connection order
        self.queue: int | None = None
        self.rank: dict[int, int] = {}
        self.current = -1  # rank of the connection being decrypted (which one a NativeUnsure is about)
        self._mf: MappedFile | None = None
        self._ready: tuple | None = None

    def stderr_text(self) -> str:
        return ""

    def prepare(self) -> None:
        """Read the capture and make the up-front checks (raises NativeUnsure), before any connection
        is decrypted: a caller that shares the connections between processes forks after this."""
        if self._mf is not None:
            return
        if self.walked is not None:
            self._ready = self._check(self.walked)
            self._mf = self.walked.mf
            return
        mf = MappedFile(self.capture)
        try:
            self._ready = self._check(self._read(mf))
        except BaseException:
            mf.close()
            raise
        self._mf = mf

    def __iter__(self) -> Iterator[Segment]:
        self.prepare()
        assert self._mf is not None
        try:
            if self._ready is not None:
                yield from self._flows(self._mf, *self._ready)
        finally:
            if self.walked is None:  # the caller's mapping is the caller's to close
                self._mf.close()

    def queue_chunks(self) -> tuple[int, int]:
        """(chunks, connections per chunk) for a queue: at most QUEUE_CHUNKS 4-byte numbers, so the
        whole queue fits in a pipe's buffer and is written before the fork. After prepare()."""
        n = int((self._ready[2].proto == TCP).sum()) if self._ready is not None else 0
        per = max(1, -(-n // QUEUE_CHUNKS))
        return -(-n // per), per

    def _take(self, ordered: list[int]) -> Iterator[int]:
        _chunks, per = self.queue_chunks()
        assert self.queue is not None
        while len(b := os.read(self.queue, 4)) == 4:  # a 4-byte read of a pipe is atomic between readers
            k = int.from_bytes(b, "little")
            yield from ordered[k * per : (k + 1) * per]

    def _read(self, mf: MappedFile) -> Walked | None:
        """The capture read with ingest's readers, when no caller handed its own read over."""
        try:
            rec = read_records(self.capture, mf)
        except NotACapture as e:
            raise NativeUnsure(str(e)) from None
        if len(rec) == 0:
            return None
        _walkable(rec)
        h = walk_mapped(mf, rec)
        return Walked(mf, rec, h, assign(h))

    def _check(self, w: Walked | None) -> tuple | None:
        if w is None or len(w.rec) == 0:
            return None
        rec, h, fa = w.rec, w.headers, w.flows
        _walkable(rec)
        secrets = load_secrets(self.keylog, rec.dsb_keylog)
        if ("RSA", b"") in secrets:
            raise NativeUnsure("RSA pre-master keys in the key log")
        if ((h.frag_later | h.frag_first) & (h.proto == TCP)).any():
            raise NativeUnsure("fragmented IP packets carrying TCP")
        tcp = (fa.fid >= 0) & (h.proto == TCP)
        per_flow = np.bincount(fa.fid[tcp], weights=h.plen[tcp], minlength=fa.count) if tcp.any() else np.zeros(1)
        if per_flow.max() > MAX_FLOW_BYTES:  # a connection is held whole here; tshark streams it
            raise NativeUnsure(f"a connection carries more than {MAX_FLOW_BYTES >> 20} MiB")
        return rec, h, fa, secrets

    def _flows(self, mf: MappedFile, rec, h, fa, secrets: Secrets) -> Iterator[Segment]:
        tcp_flows = np.nonzero(fa.proto == TCP)[0]
        if not len(tcp_flows):
            return
        ep = endpoints(fa)
        src_ip, dst_ip = ep["src_ip"], ep["dst_ip"]
        sport, dport = ep["src_port"].tolist(), ep["dst_port"].tolist()
        ends = np.append(fa.starts[1:], len(fa.order)).tolist()
        starts = fa.starts.tolist()
        order = fa.order
        # per-packet columns stay numpy; each connection gathers its own rows as short lists
        cols = np.stack([h.flags.astype(np.int64), h.seq.astype(np.int64), h.plen, h.payload_off,
                         rec.data_off + rec.caplen, fa.is_orig.astype(np.int64)], axis=1)
        ts_all = rec.ts_ns / 1e9
        ordered = tcp_flows[np.argsort(fa.first_rec[tcp_flows], kind="stable")].tolist()
        self.rank = {f: k for k, f in enumerate(ordered)}
        for f in ordered if self.queue is None else self._take(ordered):
            self.current = self.rank[f]
            pk = order[starts[f] : ends[f]]
            flags, seq, plen, poff, cap_end, is_orig = cols[pk].T.tolist()
            self._pk = (ts_all[pk].tolist(), flags, seq, plen, poff, cap_end, mf.mm)
            o = (src_ip[f], sport[f], dst_ip[f], dport[f])
            segs = self._flow(f, list(range(len(flags))), is_orig, o, secrets)
            self.rows += len(segs)
            yield from segs

    # -- one connection ------------------------------------------------------------------------
    def _reassemble(self, pkts: list[int]) -> tuple[list[tuple[int, bytes]], int, int, bool]:
        """(pieces in stream order as (packet, bytes), retransmissions, holes, snaplen-cut payload)."""
        _ts, flags, seq, plen, poff, cap_end, mm = self._pk
        base: int | None = None
        nxt = 0
        out: list[tuple[int, bytes]] = []
        pending: dict[int, tuple[int, bytes]] = {}
        retrans = gaps = 0
        cut = False
        for i in pkts:
            n = plen[i]
            if flags[i] & SYN:
                if n:
                    raise NativeUnsure("data on a SYN (TCP Fast Open)")
                if base is None:
                    base, nxt = seq[i], 1
                continue
            if not n:
                continue
            if base is None:
                base = seq[i]
            s = (seq[i] - base) & 0xFFFFFFFF
            if s >= 0x80000000:
                s -= 1 << 32
            e = s + n
            if e <= nxt:
                retrans += 1
                continue
            o = poff[i]
            data = mm[o : min(o + n, cap_end[i])]
            if len(data) < n:
                cut = True  # snaplen: the missing tail is skipped like a hole
                gaps += 1
            if s > nxt:
                prev = pending.get(s)
                if prev is None or prev[0] < e:
                    pending[s] = (e, data)
                continue
            out.append((i, data[nxt - s :] if nxt > s else data))
            nxt = e
            while pending:
                fill = [k for k in pending if k <= nxt]
                if not fill:
                    break
                for k in sorted(fill):
                    pe, pd = pending.pop(k)
                    if pe > nxt:
                        out.append((i, pd[nxt - k :]))
                        nxt = pe
                    else:
                        retrans += 1
        last = pkts[-1] if pkts else 0
        while pending:  # holes the capture never filled: skip them
            k = min(pending)
            pe, pd = pending.pop(k)
            if k > nxt:
                gaps += 1
                out.append((last, pd))
                nxt = pe
            elif pe > nxt:
                out.append((last, pd[nxt - k :]))
                nxt = pe
            else:
                retrans += 1
        return out, retrans, gaps, cut

    def _flow(self, f: int, pkts: list[int], is_orig: list[int], o: tuple[str, int, str, int],
              secrets: Secrets) -> list[Segment]:
        ts, flags, *_ = self._pk
        a_pk = [i for i in pkts if is_orig[i]]
        b_pk = [i for i in pkts if not is_orig[i]]
        a_pieces, a_re, a_gap, a_cut = self._reassemble(a_pk)
        b_pieces, b_re, b_gap, b_cut = self._reassemble(b_pk)
        a_buf = b"".join(p for _, p in a_pieces)
        b_buf = b"".join(p for _, p in b_pieces)
        # packet -> [record types, handshake types, client random, sni, alpn, data pieces]
        ev: dict[int, list] = {}

        def at(p: int) -> list:
            e = ev.get(p)
            if e is None:
                e = ev[p] = [[], [], None, None, None, []]
            return e

        if _looks_tls(a_buf) or _looks_tls(b_buf):
            if a_gap or b_gap or a_cut or b_cut:
                raise NativeUnsure("the capture missed bytes of a TLS stream")
            client_is_a = not (b_buf[:1] == b"\x16" and b_buf[5:6] == b"\x01")
            if client_is_a:
                self._tls(a_buf, a_pieces, b_buf, b_pieces, secrets, at)
            else:
                self._tls(b_buf, b_pieces, a_buf, a_pieces, secrets, at)
        else:
            for p, d in a_pieces + b_pieces:
                at(p)[5].append(d)
        # first packet and SYNs (orientation), packets with events; FIN/RST last (the connection
        # closes after all its data even when a FIN was captured before a retransmission)
        keep = set(ev)
        keep.add(pkts[0])
        closing = []
        for i in pkts:
            fl = flags[i]
            if fl & SYN:
                keep.add(i)
            if fl & (FIN | RST):
                closing.append(i)
        src, sp, dst, dp = o
        out: list[Segment] = []
        for i in sorted(keep):
            fl = flags[i]
            e = ev.get(i)
            a, b = ((src, sp), (dst, dp)) if is_orig[i] else ((dst, dp), (src, sp))
            if e is None:
                out.append(Segment(ts[i], f, *a, *b, 0, 0, bool(fl & SYN), bool(fl & ACK), False, False,
                                   "", "", None, None, None, b""))
            else:
                out.append(Segment(ts[i], f, *a, *b, 0, 0, bool(fl & SYN), bool(fl & ACK), False, False,
                                   ",".join(e[0]), ",".join(e[1]), e[2], e[3], e[4], b"".join(e[5])))
        for i in closing:
            fl = flags[i]
            a, b = ((src, sp), (dst, dp)) if is_orig[i] else ((dst, dp), (src, sp))
            out.append(Segment(ts[i], f, *a, *b, 0, 0, False, bool(fl & ACK), bool(fl & FIN), bool(fl & RST),
                               "", "", None, None, None, b""))
        out[0].retrans = a_re + b_re
        out[0].gaps = a_gap + b_gap
        return out

    def _tls(self, c_buf: bytes, c_pieces, s_buf: bytes, s_pieces, secrets: Secrets, at) -> None:
        """Records of both directions -> events per packet (record types, hellos, decrypted data)."""
        ch, ch_end = _first_handshake(c_buf, 1)
        sh, sh_end = _first_handshake(s_buf, 2)
        c_ends = _cum(c_pieces)
        s_ends = _cum(s_pieces)
        c_keys = s_keys = None
        tls13 = False
        if ch is not None:
            hello = client_hello_body(ch)
            if hello is None:
                raise NativeUnsure("a ClientHello whose lengths do not add up")
            rnd, sni, exts = hello.random, hello.sni, hello.extensions
            e = at(_pkt(c_pieces, c_ends, ch_end))
            e[1].append("1")
            e[2], e[3] = rnd.hex(), sni
            if sh is not None:
                s_rnd, version, suite, comp, alpn = _server_hello(sh)
                e = at(_pkt(s_pieces, s_ends, sh_end))
                e[1].append("2")
                e[4] = alpn
                if s_rnd == HRR_RANDOM:
                    raise NativeUnsure("HelloRetryRequest")
                if comp != 0:
                    raise NativeUnsure("TLS compression")
                info = suite_info(version, suite)
                if info is None:
                    raise NativeUnsure(f"TLS version 0x{version:04x} with cipher suite 0x{suite:04x}")
                tls13 = version == TLS13
                if tls13:
                    if 42 in exts:
                        raise NativeUnsure("TLS 1.3 early data offered")

                    def k(label: str) -> RecordKey | None:
                        s = secrets.get((label, rnd))
                        return tls13_key(s, info) if s else None

                    c_keys = [k("CLIENT_HANDSHAKE_TRAFFIC_SECRET"), k("CLIENT_TRAFFIC_SECRET_0")]
                    s_keys = [k("SERVER_HANDSHAKE_TRAFFIC_SECRET"), k("SERVER_TRAFFIC_SECRET_0")]
                else:
                    assert version == TLS12
                    master = secrets.get(("CLIENT_RANDOM", rnd))
                    ck, sk = tls12_keys(master, info, rnd, s_rnd) if master else (None, None)
                    c_keys, s_keys = [ck], [sk]
        self._direction(c_buf, c_pieces, c_ends, _Direction(c_keys or [], tls13), at)
        server = _Direction(s_keys or [], tls13)
        self._direction(s_buf, s_pieces, s_ends, server, at)
        if server.alpn and sh is not None:  # tshark reports it with the ServerHello's segment too
            at(_pkt(s_pieces, s_ends, sh_end))[4] = server.alpn

    def _direction(self, buf: bytes, pieces, ends: list[int], d: _Direction, at) -> None:
        for end, ct, header, frag in _records(buf):
            e = at(_pkt(pieces, ends, end))
            if ct == 20:
                e[0].append("20")
                d.encrypted = True
                continue
            if not d.encrypted or (d.tls13 and ct != 23) or not d.keys:
                e[0].append(str(ct))
                if ct == 23:
                    self.records_undecrypted += 1
                continue
            pt = d.open(header, frag)
            if pt is None:
                e[0].append(str(ct))
                if ct == 23:
                    self.records_undecrypted += 1
                continue
            self.records_decrypted += 1
            if d.tls13:
                pt = pt.rstrip(b"\x00")
                if not pt:
                    raise NativeUnsure("a TLS 1.3 record without a content type")
                ct, pt = pt[-1], pt[:-1]
                if ct == 22:
                    d.handshake13(pt)
            elif ct == 22:
                if d.finished:
                    raise NativeUnsure("TLS 1.2 renegotiation")
                d.finished = True
            e[0].append(str(ct))
            if ct == 23 and pt:
                e[5].append(pt)


def _ee_alpn(body: bytes) -> str | None:
    """The protocol selected in a TLS 1.3 EncryptedExtensions message body."""
    p, end = 2, min(len(body), 2 + ((body[0] << 8) | body[1]) if len(body) >= 2 else 0)
    while p + 4 <= end:
        t, ln = (body[p] << 8) | body[p + 1], (body[p + 2] << 8) | body[p + 3]
        if t == 16 and ln >= 3 and p + 4 + 3 + body[p + 6] <= end:
            return body[p + 7 : p + 7 + body[p + 6]].decode("utf-8", "replace")
        p += 4 + ln
    return None


def _cum(pieces: list[tuple[int, bytes]]) -> list[int]:
    out, n = [], 0
    for _, p in pieces:
        n += len(p)
        out.append(n)
    return out


def _pkt(pieces: list[tuple[int, bytes]], ends: list[int], offset: int) -> int:
    """The packet whose bytes complete the stream up to `offset`."""
    return pieces[min(bisect_left(ends, offset), len(pieces) - 1)][0]
