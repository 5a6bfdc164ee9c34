"""One connection's plaintext, both directions -> HTTP exchanges (sans-IO).

Sniffs the protocol from the client's first bytes (the HTTP/2 preface, else an HTTP/1.x request
line), then hands bytes to http1.Http1Parser (one per direction, responses paired to requests in
order) or http2.H2Parser (paired by stream id). Anything else is counted as non-HTTP and dropped.
"""

from __future__ import annotations

from collections import deque

from collector.protocols.encoding import DEFAULT_KEEP
from collector.protocols.http1 import Http1Parser, looks_like_http1_request
from collector.protocols.http2 import PREFACE, H2Parser
from collector.protocols.messages import ConnectionBytes, HttpRequest, HttpResponse

Exchange = tuple[HttpRequest, HttpResponse | None]
_MAX_PENDING = 256 * 1024  # server bytes held while the protocol is still unknown


class ConnectionParser:
    """Feed each direction's bytes in capture order; completed exchanges come back from every call.

    `protocol` ('h1' | 'h2') skips sniffing when the caller knows it (the proxy, from ALPN)."""

    def __init__(self, *, keep: int = DEFAULT_KEEP, alpn: str | None = None, protocol: str | None = None):
        self.keep = keep
        self.alpn = alpn
        self.protocol: str | None = protocol  # 'h1' | 'h2' | 'other'
        self._head = b""
        self._pending_server: list[tuple[bytes, float]] = []
        self._pending_size = 0
        self.h1_req: Http1Parser | None = None
        self.h1_resp: Http1Parser | None = None
        self.h2: H2Parser | None = None
        self._requests: deque[HttpRequest] = deque()
        self.error: str | None = None

    def feed(self, from_client: bool, data: bytes, ts: float) -> list[Exchange]:
        if self.protocol is None:
            if not from_client:
                if self._pending_size < _MAX_PENDING:
                    self._pending_server.append((data, ts))
                    self._pending_size += len(data)
                return []
            self._head += data
            proto = self._sniff(self._head)
            if proto is None:
                return []
            self.protocol = proto
            data, self._head = self._head, b""
            out = self._dispatch(True, data, ts)
            for d, t in self._pending_server:
                out += self._dispatch(False, d, t)
            self._pending_server = []
            return out
        return self._dispatch(from_client, data, ts)

    @property
    def switched(self) -> tuple[bytes, bytes] | None:
        """After an HTTP/1.1 101 Switching Protocols (or a CONNECT tunnel): the bytes each direction
        (client, server) sent past the last HTTP message, for the protocol that follows; else None."""
        if self.h1_resp is None or self.h1_resp.switched is None:
            return None
        client = bytes(self.h1_req.buf) if self.h1_req is not None else b""
        return client, self.h1_resp.switched

    def close(self, truncated: bool = False, ts: float | None = None) -> list[Exchange]:
        """The connection ended (`truncated`: the bytes stopped short of its end, e.g. a capture cut);
        `ts` is when, if later than the last bytes."""
        out: list[Exchange] = []
        if self.protocol == "h1" and self.h1_req is not None:
            assert self.h1_resp is not None
            out += self._pair([], self.h1_req.close(ts, truncated=truncated))
            out += self._pair(self.h1_resp.close(ts, truncated=truncated), [])
            while self._requests:  # requests never answered
                req = self._requests.popleft()
                req.truncated = True
                out.append((req, None))
            self.error = self.error or self.h1_req.error or self.h1_resp.error
        elif self.protocol == "h2" and self.h2 is not None:
            if ts is not None:
                self.h2.last_ts = max(self.h2.last_ts, ts)
            out += self.h2.close(truncated=truncated)
            self.error = self.error or self.h2.error
        return out

    # -- internals -----------------------------------------------------------------------------
    def _sniff(self, head: bytes) -> str | None:
        if head.startswith(PREFACE):
            return "h2"
        if len(head) < len(PREFACE) and PREFACE.startswith(head):
            return None  # could still be the preface
        if looks_like_http1_request(head):
            return "h1"
        if not head[:1].isupper():
            return "other"
        if len(head) < 16 and b" " not in head:
            return None
        return "other"

    def _dispatch(self, from_client: bool, data: bytes, ts: float) -> list[Exchange]:
        if self.protocol == "h2":
            if self.h2 is None:
                self.h2 = H2Parser(keep=self.keep)
            return self.h2.feed_client(data, ts) if from_client else self.h2.feed_server(data, ts)
        if self.protocol == "h1":
            if self.h1_req is None:
                methods: list[str] = []
                self.h1_req = Http1Parser("request", keep=self.keep, request_methods=methods)
                self.h1_resp = Http1Parser("response", keep=self.keep, request_methods=methods)
            if from_client:
                return self._pair([], self.h1_req.feed(data, ts))
            assert self.h1_resp is not None
            return self._pair(self.h1_resp.feed(data, ts), [])
        return []

    def _pair(self, responses, requests) -> list[Exchange]:
        self._requests.extend(requests)
        out: list[Exchange] = []
        for resp in responses:
            req = self._requests.popleft() if self._requests else None
            if req is not None:
                out.append((req, resp))
        return out


def feed_connection(conn: ConnectionBytes, *, keep: int = DEFAULT_KEEP) -> tuple[list[Exchange], ConnectionParser]:
    """The exchanges finished in a connection's bytes so far, and the parser left open (the live
    collector decodes open connections). Directions are interleaved by timestamp so HTTP/1
    responses meet their requests in order."""
    p = ConnectionParser(keep=keep, alpn=conn.alpn)
    events = [(c.ts, 0, i, True, c.data) for i, c in enumerate(conn.client)]
    events += [(c.ts, 1, i, False, c.data) for i, c in enumerate(conn.server)]
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    out: list[Exchange] = []
    for ts, _, _, from_client, data in events:
        out += p.feed(from_client, data, ts)
    return out, p


def parse_connection(conn: ConnectionBytes, *, keep: int = DEFAULT_KEEP) -> tuple[list[Exchange], ConnectionParser]:
    """All exchanges of a connection whose bytes are already collected (uprobe/test path)."""
    out, p = feed_connection(conn, keep=keep)
    out += p.close(truncated=conn.truncated)
    return out, p
