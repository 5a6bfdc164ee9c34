"""libssl and Go crypto/tls uprobe plaintext -> per-connection byte streams -> the HTTP/LLM decoders.

SSL_write/SSL_read (and Go `(*tls.Conn).Write`/`Read`) chunks arrive keyed by process and SSL*
(or *tls.Conn) and the socket their call went through; when that
socket's TCP record arrives (tcp_destroy_sock) the connection is complete and becomes one
`ConnectionBytes` for `collector.llm.pipeline.decode_connection`. Memory is bounded per connection
and in total; what is cut is marked truncated and counted.
"""

from __future__ import annotations

import struct
import time
from collections import deque
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
    last: float = 0.0


class PlaintextAssembler:
    def __init__(self, host_id: str, fp: Fingerprinter, clock: ev.Clock, *, max_conn_bytes: int = 16 << 20,
                 max_total_bytes: int = 256 << 20, idle_s: float = 120.0, max_queue: int = 1000,
                 inbound: bool = False):
        self.host_id = host_id
        self.fp = fp
        self.clock = clock
        self.max_conn_bytes = max_conn_bytes
        self.max_total_bytes = max_total_bytes
        self.idle_s = idle_s
        self.max_queue = max_queue
        self.inbound = inbound
        self.decoded_flows: set[str] = set()  # flows whose plaintext came from uprobes (key-log path skips them)
        # keyed by (tgid, SSL* or Go *tls.Conn): Go heaps start at the same address in every process
        self._streams: dict[tuple[int, int], _Stream] = {}
        self._by_sk: dict[int, set[tuple[int, int]]] = {}
        self._total = 0
        self.queue: deque[tuple[ConnectionBytes, dict]] = deque()
        self.counts = {"ssl_chunks": 0, "ssl_bytes_dropped": 0, "plaintext_connections": 0,
                       "plaintext_decoded": 0, "plaintext_decode_errors": 0, "plaintext_queue_dropped": 0,
                       "plaintext_inbound_skipped": 0}
        self._decoder = _load_decoder()

    def add(self, records: list[bytes]) -> None:
        now = time.monotonic()
        for r in records:
            _t, n, ssl, sk, ts, tgid, total, off, direction, trunc = _HDR.unpack_from(r)
            key = (tgid, ssl)
            s = self._streams.get(key)
            if s is None or (sk and s.sk and sk != s.sk):
                s = self._streams[key] = _Stream(tgid)
            if sk and not s.sk:
                s.sk = sk
                self._by_sk.setdefault(sk, set()).add(key)
            s.last = now
            s.truncated |= bool(trunc)
            self.counts["ssl_chunks"] += 1
            if s.size + n > self.max_conn_bytes or self._total + n > self.max_total_bytes:
                s.truncated = True
                self.counts["ssl_bytes_dropped"] += n
                continue
            s.chunks.append((ts, off, direction, r[_HDR.size : _HDR.size + n]))
            s.size += n
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
            later = {k for k in keys if (s := self._streams.get(k)) is not None and s.chunks and s.chunks[0][0] > ends[i]}
            if later:
                self._by_sk[sk] = later
            for key in keys - later:
                s = self._streams.pop(key, None)
                if s is not None:
                    self._emit(s, cols[i])

    def _emit(self, s: _Stream, flow: dict | None) -> None:
        self._total -= s.size
        outbound = flow is None or flow.get("direction") != "inbound"
        if not outbound and not self.inbound:
            # a TLS server on this host (e.g. a local router): its clients' side is decoded instead
            self.counts["plaintext_inbound_skipped"] += 1
            return
        client: list[Chunk] = []
        server: list[Chunk] = []
        for ts, _off, direction, data in sorted(s.chunks, key=lambda c: (c[0], c[1])):
            t = (ts + self.clock.mono_offset_ns) / 1e9
            # SSL_write of a client carries client->server bytes; of a server, server->client
            (client if (direction == 0) == outbound else server).append(Chunk(t, data))
        cb = ConnectionBytes(client=_merge(client), server=_merge(server), pid=s.tgid, truncated=s.truncated)
        if flow:
            cb.flow_uid, cb.community_id = flow["flow_uid"], flow["community_id"]
            cb.src_ip, cb.src_port, cb.dst_ip, cb.dst_port = flow["src_ip"], flow["src_port"], flow["dst_ip"], flow["dst_port"]
            cb.server_name = flow.get("server_name")
        self.counts["plaintext_connections"] += 1
        if len(self.queue) >= self.max_queue:
            self.counts["plaintext_queue_dropped"] += 1
            return
        self.queue.append((cb, flow or {}))
        if cb.flow_uid:
            if len(self.decoded_flows) > 200_000:
                self.decoded_flows.clear()
            self.decoded_flows.add(cb.flow_uid)

    def poll(self, final: bool = False, budget_s: float = 0.5):
        """Decode queued connections (time-boxed unless final); yields (table, rows)."""
        now = time.monotonic()
        for key, s in list(self._streams.items()):
            if final or now - s.last > self.idle_s:  # no socket record will come (collector started late, ...)
                self._streams.pop(key, None)
                if s.sk:
                    self._by_sk.get(s.sk, set()).discard(key)
                if s.chunks:
                    self._emit(s, None)
        out: dict[str, list] = {}
        t0 = time.monotonic()
        while self.queue and (final or time.monotonic() - t0 < budget_s):
            cb, flow = self.queue.popleft()
            if self._decoder is None:
                continue
            try:
                for table, rows in self._decoder(cb, flow, self.host_id, self.fp):
                    out.setdefault(table, []).extend(rows)
                self.counts["plaintext_decoded"] += 1
            except Exception:
                self.counts["plaintext_decode_errors"] += 1
        return list(out.items())

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


def _load_decoder():
    """The HTTP/LLM decoders' entry point, adapted to (ConnectionBytes, flow, host, fp) -> [(table, rows)]."""
    try:
        from collector.live.decode import decode_plaintext
    except ImportError:
        return None
    return decode_plaintext
