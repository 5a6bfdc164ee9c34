"""Per-connection byte streams rebuilt from decrypted segments (native or tshark's), fed to the HTTP parsers.

Each TCP stream (tshark's `tcp.stream` or the native decryptor's connection, both of which separate
reused ports) gets a client side (the SYN sender, else the ClientHello sender, else the flows
table's originator, else the higher port), a retransmission filter (a segment whose `tcp.nxtseq`
does not advance its direction is a repeat and its payload is dropped; native segments arrive
reassembled, seq 0, with their connection's counts) and a ConnectionParser. A connection is parsed
as its bytes arrive and finished at FIN/RST from both sides (or the end of the capture, then marked
truncated), so memory holds open connections only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from collector.protocols.connection import ConnectionParser, Exchange
from collector.protocols.encoding import DEFAULT_KEEP
from collector.protocols.messages import Connection
from collector.tls.tshark_decrypt import Segment


@dataclass(kw_only=True)
class StreamMeta(Connection):
    """A TCP connection of a capture: its identity (the `Connection` handed to the decoders) and what
    reassembly and decryption saw of it."""

    stream: int
    ts_first: float
    ts_last: float = 0.0
    client_random: str | None = None
    tls: bool = False
    app_records: int = 0  # TLS application-data records seen
    decrypted_segments: int = 0  # segments that carried decrypted/cleartext payload
    bytes_client: int = 0
    bytes_server: int = 0
    retransmissions: int = 0
    gaps: int = 0  # payload the capture missed (a segment starting past the next expected byte)
    closed: bool = False
    exchanges: int = 0
    error: str | None = None

    @property
    def decrypted(self) -> bool:
        return self.tls and self.decrypted_segments > 0


@dataclass
class _State:
    meta: StreamMeta
    client: tuple[str, int] | None
    parser: ConnectionParser | None = None
    nxt: dict[bool, int] = field(default_factory=lambda: {True: -1, False: -1})
    seen: dict[bool, int] = field(default_factory=lambda: {True: -1, False: -1})  # any segment's nxtseq
    fin: dict[bool, bool] = field(default_factory=lambda: {True: False, False: False})
    pending: list[tuple[Segment, bool]] = field(default_factory=list)  # payload before the client is known


Sink = Callable[[StreamMeta, list[Exchange]], None]


class StreamAssembler:
    """Consumes segments in capture order; calls `sink(meta, exchanges)` as exchanges complete."""

    def __init__(self, sink: Sink, *, keep: int = DEFAULT_KEEP,
                 orientation: Callable[[str, int, str, int], bool | None] | None = None):
        self.sink = sink
        self.keep = keep
        self.orientation = orientation  # (src, sport, dst, dport) -> True when src is the originator
        self.states: dict[int, _State] = {}
        self.finished: list[StreamMeta] = []
        self.closed_ids: set[int] = set()  # late ACK/FIN repeats of a finished connection are ignored

    def add(self, seg: Segment) -> None:
        st = self.states.get(seg.stream)
        if st is None:
            if seg.stream in self.closed_ids:
                return
            st = _State(StreamMeta(stream=seg.stream, src_ip=seg.src, src_port=seg.sport, dst_ip=seg.dst,
                                   dst_port=seg.dport, ts_first=seg.ts), None)
            self.states[seg.stream] = st
        m = st.meta
        if m.closed:
            return
        m.ts_last = seg.ts
        if seg.retrans or seg.gaps:
            m.retransmissions += seg.retrans
            m.gaps += seg.gaps
        if st.client is None:
            self._orient(st, seg)
        if st.client is not None and seg.nxtseq:
            from_client = (seg.src, seg.sport) == st.client
            last = st.seen[from_client]
            if last >= 0 and seg.seq > last:
                m.gaps += 1
            if seg.nxtseq > last:
                st.seen[from_client] = seg.nxtseq
        if seg.record_types:
            m.tls = True
            m.app_records += seg.record_types.count("23")
        if seg.client_random and not m.client_random:
            m.client_random = seg.client_random
        if seg.sni and not m.server_name:
            m.server_name = seg.sni
        if seg.alpn and seg.handshake_types.startswith("2"):
            m.alpn = seg.alpn.split(",")[0]
        if seg.data:
            if st.client is None:
                st.pending.append((seg, True))
                if len(st.pending) > 64:  # nobody said who the client is: the sender of the first payload
                    first = st.pending[0][0]
                    st.client = (first.src, first.sport)
                    self._set_endpoints(st)
                    self._drain(st)
            else:
                self._payload(st, seg)
        if seg.fin or seg.rst:
            if st.client is not None:
                from_client = (seg.src, seg.sport) == st.client
                st.fin[from_client] = True
                if seg.rst:
                    st.fin[not from_client] = True
            if st.fin[True] and st.fin[False]:
                self._close(st, truncated=False)

    def finish(self) -> None:
        """End of capture: connections still open end here, their open messages truncated."""
        for st in list(self.states.values()):
            if not st.meta.closed:
                self._close(st, truncated=True)

    # -- internals -----------------------------------------------------------------------------
    def _orient(self, st: _State, seg: Segment) -> None:
        if seg.syn and not seg.ack:
            st.client = (seg.src, seg.sport)
        elif seg.syn and seg.ack:
            st.client = (seg.dst, seg.dport)
        elif seg.handshake_types.startswith("1"):
            st.client = (seg.src, seg.sport)
        elif seg.handshake_types.startswith("2"):
            st.client = (seg.dst, seg.dport)
        elif self.orientation is not None:
            o = self.orientation(seg.src, seg.sport, seg.dst, seg.dport)
            if o is not None:
                st.client = (seg.src, seg.sport) if o else (seg.dst, seg.dport)
        if st.client is None:
            return  # decided later: payload waits in `pending` until a handshake or the close tells
        self._set_endpoints(st)
        self._drain(st)

    def _set_endpoints(self, st: _State) -> None:
        m = st.meta
        if st.client is not None and (m.src_ip, m.src_port) != st.client:
            m.src_ip, m.src_port, m.dst_ip, m.dst_port = m.dst_ip, m.dst_port, m.src_ip, m.src_port

    def _drain(self, st: _State) -> None:
        pending, st.pending = st.pending, []
        for seg, _ in pending:
            self._payload(st, seg)

    def _payload(self, st: _State, seg: Segment) -> None:
        m = st.meta
        from_client = (seg.src, seg.sport) == st.client
        # a repeat of bytes already seen in this direction (retransmission) adds nothing
        if seg.nxtseq and seg.nxtseq <= st.nxt[from_client]:
            m.retransmissions += 1
            return
        if seg.nxtseq:
            st.nxt[from_client] = seg.nxtseq
        m.decrypted_segments += 1
        if from_client:
            m.bytes_client += len(seg.data)
        else:
            m.bytes_server += len(seg.data)
        if st.parser is None:
            st.parser = ConnectionParser(keep=self.keep, alpn=m.alpn)
        out = st.parser.feed(from_client, seg.data, seg.ts)
        if out:
            self._emit(st, out)

    def _emit(self, st: _State, exchanges: list[Exchange]) -> None:
        self.sink(st.meta, exchanges)
        st.meta.exchanges += len(exchanges)

    def _close(self, st: _State, truncated: bool) -> None:
        if st.pending:
            first = st.pending[0][0]
            st.client = (first.src, first.sport)
            self._set_endpoints(st)
            self._drain(st)
        m = st.meta
        if st.parser is not None:
            out = st.parser.close(truncated=truncated)
            if out:
                self._emit(st, out)
            m.error = st.parser.error
        st.parser = None
        m.closed = True
        self.finished.append(m)
        self.closed_ids.add(m.stream)
        del self.states[m.stream]
