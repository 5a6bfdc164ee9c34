"""libssl and Go crypto/tls uprobe plaintext -> per-connection byte streams -> the HTTP/LLM decoders.

SSL_write/SSL_read (and Go `(*tls.Conn).Write`/`Read`) chunks arrive keyed by process and SSL*
(or *tls.Conn) and the socket their call went through. Agents keep HTTPS connections open for
minutes, so exchanges are not held until the socket ends: once a stream with new bytes has been
quiet for `settle_s` and its socket is one the probes track (its `socks` entry names the flow the
destroy record will give, `live_flow`), the bytes so far are decoded and every exchange whose
request and response are both finished is emitted at once. When the socket's TCP record arrives
(tcp_destroy_sock), or the stream idles out, the rest follows. Exchange ids are deterministic
(collector.llm.pipeline.exchange_id), so what was emitted early is left out then: rows are the
same, byte for byte, whichever path emits them, and none twice. Sockets the probes do not track
(opened before the collector) are decoded at their end only.

Memory is bounded per connection (`max_conn_bytes`) and in total; what is cut is marked truncated
and counted. An HTTP/1.x stream between exchanges drops the bytes of the exchanges it emitted, so
the bound applies to one exchange (a long keep-alive connection never reaches it from history);
an HTTP/2 stream keeps its bytes (the HPACK tables are built from all of them), so there the bound
covers the connection's life.
"""

from __future__ import annotations

import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from collector.ebpf import events as ev
from collector.protocols.messages import Chunk, ConnectionBytes
from collector.secrets import Fingerprinter

_HDR = struct.Struct("<IIQQQIIIBB2x")
assert _HDR.size == ev.SSL_HEADER.itemsize


@dataclass
class _Stream:
    tgid: int
    sk: int = 0
    chunks: list[tuple[int, int, int, bytes]] = field(default_factory=list)  # (ts, offset, dir, data)
    size: int = 0
    truncated: bool = False
    full: bool = False  # bytes were dropped at the cap: later ones are too (no gap in the middle)
    last: float = 0.0
    first_ts: int = 0  # kernel ns of the stream's first chunk (a socket entry made later is another socket's)
    dirty: bool = False  # bytes arrived since the last decode of the open stream
    wait: float = 0.0  # quiet time before the next decode: settle_s, doubled (to 4x) while decodes find nothing new
    flow: dict | None = None  # the flow row its socket will get at destroy, known while it is open
    tracked: bool | None = None  # None: not looked up yet; False: the probes do not know its socket
    seq0: int = 0  # exchanges decoded from bytes since dropped: numbers the rest
    done: int = 0  # finished exchanges in the bytes held that were already emitted
    emitted: set[str] = field(default_factory=set)  # exchange ids emitted from the bytes held
    dns_emitted: set[tuple] = field(default_factory=set)  # DoH `dns` rows (no exchange id) likewise


# a stream's early rows are left out of what its end yields again
_Sent = tuple[set[str], set[tuple]]


def _dns_key(row: dict) -> tuple:
    return (row.get("query"), row.get("qtype"), row.get("trans_id"), row.get("is_response"), row.get("ts"))


class PlaintextAssembler:
    """`live_flow(sk, first_ts_ns)`: the flow row an open socket will get at destroy, or None when the
    probes do not track it (or the entry is younger than `first_ts_ns`: another socket at a reused
    address); without it exchanges are emitted when their connection ends."""

    def __init__(self, host_id: str, fp: Fingerprinter, clock: ev.Clock, *, max_conn_bytes: int = 16 << 20,
                 max_total_bytes: int = 256 << 20, idle_s: float = 120.0, max_queue: int = 1000,
                 inbound: bool = False, settle_s: float = 0.5,
                 live_flow: Callable[[int, int], dict | None] | None = None):
        self.host_id = host_id
        self.fp = fp
        self.clock = clock
        self.max_conn_bytes = max_conn_bytes
        self.max_total_bytes = max_total_bytes
        self.idle_s = idle_s
        self.settle_s = settle_s
        self.live_flow = live_flow
        self.max_queue = max_queue
        self.inbound = inbound
        self.decoded_flows: set[str] = set()  # flows whose plaintext came from uprobes (key-log path skips them)
        # keyed by (tgid, SSL* or Go *tls.Conn): Go heaps start at the same address in every process
        self._streams: dict[tuple[int, int], _Stream] = {}
        self._by_sk: dict[int, set[tuple[int, int]]] = {}
        self._total = 0
        self.queue: deque[tuple[ConnectionBytes, dict, int, _Sent]] = deque()
        self.counts = {"ssl_chunks": 0, "ssl_bytes_dropped": 0, "plaintext_connections": 0,
                       "plaintext_decoded": 0, "plaintext_decode_errors": 0, "plaintext_queue_dropped": 0,
                       "plaintext_inbound_skipped": 0, "plaintext_early_exchanges": 0,
                       "plaintext_early_decodes": 0, "plaintext_bytes_released": 0,
                       "plaintext_early_flow_mismatch": 0}
        self._decoder = _load_decoder()
        self._completed = _load_completed()

    def add(self, records: list[bytes]) -> None:
        now = time.monotonic()
        for r in records:
            _t, n, ssl, sk, ts, tgid, total, off, direction, trunc = _HDR.unpack_from(r)
            key = (tgid, ssl)
            s = self._streams.get(key)
            if s is None or (sk and s.sk and sk != s.sk):
                if s is not None:  # SSL* reused on another socket: the old stream's end never comes
                    self._total -= s.size
                    self._by_sk.get(s.sk, set()).discard(key)  # nor may that socket's end claim the new one
                s = self._streams[key] = _Stream(tgid, first_ts=ts)
            if sk and not s.sk:
                s.sk = sk
                self._by_sk.setdefault(sk, set()).add(key)
            s.last = now
            s.truncated |= bool(trunc)
            self.counts["ssl_chunks"] += 1
            if s.full or s.size + n > self.max_conn_bytes or self._total + n > self.max_total_bytes:
                s.truncated = s.full = True
                self.counts["ssl_bytes_dropped"] += n
                continue
            s.chunks.append((ts, off, direction, r[_HDR.size : _HDR.size + n]))
            s.size += n
            s.dirty = True
            self._total += n

    def closed(self, conns: np.ndarray, flows: pa.Table) -> None:
        """TCP sockets that were destroyed: their SSL streams are complete."""
        if not self._by_sk or len(conns) == 0:
            return
        hits = [i for i, sk in enumerate(conns["sk"].tolist()) if sk in self._by_sk]
        if not hits:
            return
        cols = flows.select(["flow_uid", "community_id", "src_ip", "src_port", "dst_ip", "dst_port", "server_name",
                             "pid", "process_start", "direction"]).to_pylist()
        ends = conns["ts_end"].tolist()
        for i in hits:
            sk = int(conns["sk"][i])
            keys = self._by_sk.pop(sk, set())
            # the kernel reuses a freed socket's address at once: plaintext that started after this
            # socket was destroyed belongs to a later socket at the same address (same drain batch)
            later = {k for k in keys if (s := self._streams.get(k)) is not None and s.first_ts > ends[i]}
            if later:
                self._by_sk[sk] = later
            for key in keys - later:
                s = self._streams.pop(key, None)
                if s is not None:
                    if s.flow is not None and s.flow["flow_uid"] != cols[i]["flow_uid"]:
                        self.counts["plaintext_early_flow_mismatch"] += 1  # a bug: ids would differ
                    self._emit(s, cols[i])

    def _bytes(self, s: _Stream, outbound: bool) -> ConnectionBytes:
        client: list[Chunk] = []
        server: list[Chunk] = []
        for ts, _off, direction, data in sorted(s.chunks, key=lambda c: (c[0], c[1])):
            t = (ts + self.clock.mono_offset_ns) / 1e9
            # SSL_write of a client carries client->server bytes; of a server, server->client
            (client if (direction == 0) == outbound else server).append(Chunk(t, data))
        return ConnectionBytes(client=_merge(client), server=_merge(server), pid=s.tgid, truncated=s.truncated)

    @staticmethod
    def _name(cb: ConnectionBytes, flow: dict | None) -> None:
        if flow:
            cb.flow_uid, cb.community_id = flow["flow_uid"], flow["community_id"]
            cb.src_ip, cb.src_port, cb.dst_ip, cb.dst_port = flow["src_ip"], flow["src_port"], flow["dst_ip"], flow["dst_port"]
            cb.server_name = flow.get("server_name")

    def _emit(self, s: _Stream, flow: dict | None) -> None:
        self._total -= s.size
        outbound = flow is None or flow.get("direction") != "inbound"
        if not outbound and not self.inbound:
            # a TLS server on this host (e.g. a local router): its clients' side is decoded instead
            self.counts["plaintext_inbound_skipped"] += 1
            return
        cb = self._bytes(s, outbound)
        self._name(cb, flow)
        self.counts["plaintext_connections"] += 1
        if len(self.queue) >= self.max_queue:
            self.counts["plaintext_queue_dropped"] += 1
            return
        self.queue.append((cb, flow or {}, s.seq0, (s.emitted, s.dns_emitted)))
        self._decoded(cb.flow_uid)

    def _decoded(self, flow_uid: str | None) -> None:
        if flow_uid:
            if len(self.decoded_flows) > 200_000:
                self.decoded_flows.clear()
            self.decoded_flows.add(flow_uid)

    def _open_flow(self, s: _Stream) -> dict | None:
        """The flow row the stream's socket will get at destroy, while it is open (None if unknown)."""
        if self.live_flow is None or not s.sk:
            return None
        return self.live_flow(s.sk, s.first_ts)

    def _settled(self, s: _Stream, out: dict[str, list]) -> None:
        """Emit the finished exchanges of an open stream (see the module docstring)."""
        s.dirty = False
        if self._completed is None or self.live_flow is None or not s.sk or s.tracked is False:
            return
        if s.flow is None:
            flow = self._open_flow(s)
            if flow is None or (flow.get("direction") == "inbound" and not self.inbound):
                s.tracked = False  # decoded at its end, as before (or skipped there, if inbound)
                return
            s.flow, s.tracked = flow, True
        cb = self._bytes(s, s.flow.get("direction") != "inbound")
        self._name(cb, s.flow)
        self.counts["plaintext_early_decodes"] += 1
        try:
            res = self._completed(cb, self.host_id, self.fp, start_seq=s.seq0, skip=s.done)
        except Exception:
            self.counts["plaintext_decode_errors"] += 1
            s.tracked = False
            return
        new = res.exchanges > s.done
        for table, rows in _unsent(res.tables, (s.emitted, s.dns_emitted), record=True):
            out.setdefault(table, []).extend(rows)
            if table == "http":
                self.counts["plaintext_early_exchanges"] += len(rows)
        # a long answer streaming with pauses (or an HTTP/2 connection's history) is not re-parsed at
        # every pause: the quiet time needed doubles while nothing finishes, up to 4 x settle_s
        s.wait = self.settle_s if new else min(max(s.wait, self.settle_s) * 2, 4 * self.settle_s)
        s.done = res.exchanges
        if res.protocol == "other":
            s.tracked = False  # not HTTP: nothing to emit early, so no decoding it again and again
        self._decoded(cb.flow_uid)
        if res.idle and not s.truncated and s.chunks:
            # HTTP/1.x at rest between exchanges: what follows parses on its own, numbered after these
            self._total -= s.size
            self.counts["plaintext_bytes_released"] += s.size
            s.chunks, s.size = [], 0
            s.seq0 += res.exchanges
            s.done = 0
            s.emitted, s.dns_emitted = set(), set()

    def poll(self, final: bool = False, budget_s: float = 0.5):
        """Decode ended connections, then open ones that settled (time-boxed unless final); yields
        (table, rows)."""
        now = time.monotonic()
        settled: list[_Stream] = []
        for key, s in list(self._streams.items()):
            if final or now - s.last > self.idle_s:  # no socket record will come (collector started late, ...)
                self._streams.pop(key, None)
                if s.sk:
                    self._by_sk.get(s.sk, set()).discard(key)
                if s.chunks:
                    # a socket still open (the collector stops; its owner is gone but the peer has
                    # not closed yet) is named by its live entry, as an early emission would be
                    self._emit(s, s.flow or self._open_flow(s))
            elif s.dirty and now - s.last >= max(s.wait, self.settle_s):
                settled.append(s)
        out: dict[str, list] = {}
        t0 = time.monotonic()
        while self.queue and (final or time.monotonic() - t0 < budget_s):
            cb, flow, seq0, sent = self.queue.popleft()
            if self._decoder is None:
                continue
            try:
                tables = self._decoder(cb, flow, self.host_id, self.fp, seq0)
                self.counts["plaintext_decoded"] += 1
            except Exception:
                self.counts["plaintext_decode_errors"] += 1
                continue
            for table, rows in _unsent(tables, sent):
                out.setdefault(table, []).extend(rows)
        for s in settled:  # the rest settle again at the next poll
            if time.monotonic() - t0 >= budget_s:
                break
            self._settled(s, out)
        return [(t, rows) for t, rows in out.items() if rows]

    def backlog(self) -> int:
        return len(self.queue)

    def counters(self) -> dict[str, int]:
        return dict(self.counts)


def _merge(chunks: list[Chunk]) -> list[Chunk]:
    """Coalesce pieces of one call (same ts) so decoders see whole writes."""
    out: list[Chunk] = []
    for c in chunks:
        if out and out[-1].ts == c.ts:
            out[-1] = Chunk(out[-1].ts, out[-1].data + c.data)
        else:
            out.append(c)
    return out


def _unsent(tables: list[tuple[str, list[dict]]], sent: _Sent, record: bool = False):
    """Rows not emitted before (by exchange id; DoH `dns` rows by their content); `record` adds them."""
    ids, dns = sent
    out = []
    for table, rows in tables:
        if table == "dns":
            keep = [r for r in rows if _dns_key(r) not in dns]
        else:
            keep = [r for r in rows if r.get("exchange_id") not in ids]
        if keep:
            out.append((table, keep))
    if record:
        for table, rows in out:
            if table == "dns":
                dns.update(_dns_key(r) for r in rows)
            else:
                ids.update(r["exchange_id"] for r in rows if r.get("exchange_id"))
    return out


def _load_completed():
    try:
        from collector.live.decode import decode_completed
    except ImportError:
        return None
    return decode_completed


def _load_decoder():
    """The HTTP/LLM decoders' entry point, adapted to (ConnectionBytes, flow, host, fp) -> [(table, rows)]."""
    try:
        from collector.live.decode import decode_plaintext
    except ImportError:
        return None
    return decode_plaintext
