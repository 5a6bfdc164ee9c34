"""Watch an HTTP/1.1 or HTTP/2 byte relay and cut it into exchanges, without touching the bytes relayed.

The proxy forwards every byte as soon as it arrives and only then shows it to a tap, so parsing
never adds latency or changes what the agent and the router see. Parsing uses h11 (sans-IO,
the HTTP/1.1 layer mitmproxy and httpx use) in both directions: one connection object in the
server role parses requests, one in the client role parses responses, and each is told what the
other saw so both follow the same request/response cycles (keep-alive, HEAD, 1xx, Upgrade).
After a `101 Switching Protocols` the tap reads WebSocket frames instead (wsproto, with
permessage-deflate when negotiated) and summarises them.

HTTP/2 (both legs negotiated h2) goes to `H2Tap`, the same passive frame/HPACK parser the key-log
and uprobe paths use (collector.protocols.http2.H2Parser): concurrent streams become separate
exchanges as each one ends, flow control stays end to end between agent and router.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import h11

from collector.protocols.encoding import decode_all
from collector.protocols.http2 import H2Parser
from collector.protocols.messages import Chunk, HttpRequest, HttpResponse

MAX_BODY = 16 * 1024 * 1024  # bytes kept per message; the rest is counted and marked truncated
MAX_WS_SAMPLES = 64  # WebSocket messages kept per direction (summaries count them all)


@dataclass
class WebSocketSummary:
    """What crossed a WebSocket after the upgrade: counts, sizes and the first messages' text."""

    extensions: str = ""
    messages_out: int = 0  # agent -> server
    messages_in: int = 0
    bytes_out: int = 0  # payload bytes (after permessage-deflate)
    bytes_in: int = 0
    text_out: list[tuple[float, str]] = field(default_factory=list)
    text_in: list[tuple[float, str]] = field(default_factory=list)
    close_code: int | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        return {
            "extensions": self.extensions, "messages_out": self.messages_out, "messages_in": self.messages_in,
            "bytes_out": self.bytes_out, "bytes_in": self.bytes_in, "close_code": self.close_code,
            "error": self.error,
        }


@dataclass
class Exchange:
    """One request and its response (None when the connection ended first)."""

    request: HttpRequest
    response: HttpResponse | None
    websocket: WebSocketSummary | None = None


def decode_body(body: bytes, headers: list[tuple[str, str]]) -> bytes:
    """Remove Content-Encoding with the shared decoder (collector.protocols.encoding); a body that
    does not decode stays as it arrived."""
    ce = ", ".join(v for k, v in headers if k.lower() == "content-encoding")
    if not ce or not body:
        return body
    out, err = decode_all(body, ce)
    return body if err else out


def _hdrs(raw: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]


class _Pending:
    __slots__ = ("method", "target", "headers", "version", "ts", "body", "size", "status", "resp_headers",
                 "resp_version", "ts_resp", "chunks", "resp_size")

    def __init__(self, ev: h11.Request, ts: float):
        self.method = ev.method.decode("latin-1")
        self.target = ev.target.decode("latin-1")
        self.headers = _hdrs(list(ev.headers))
        self.version = "HTTP/" + ev.http_version.decode()
        self.ts = ts
        self.body = bytearray()
        self.size = 0
        self.status: int | None = None
        self.resp_headers: list[tuple[str, str]] = []
        self.resp_version = self.version
        self.ts_resp = 0.0
        self.chunks: list[Chunk] = []
        self.resp_size = 0


class Http1Tap:
    """Feed it both directions of one connection; it calls `emit(Exchange)` per finished exchange."""

    def __init__(self, authority: str, emit: Callable[[Exchange], None]):
        self.authority = authority
        self.emit = emit
        self._req = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
        self._resp = h11.Connection(h11.CLIENT, max_incomplete_event_size=1 << 20)
        self._reading: _Pending | None = None  # request whose body is being read
        self._waiting: deque[_Pending] = deque()  # requests awaiting their response
        self._ws: _WebSocketTap | None = None
        self._ws_exchange: _Pending | None = None
        self.error: str | None = None
        self.exchanges = 0

    # -- client -> server ------------------------------------------------------------------
    def client_data(self, data: bytes, ts: float) -> None:
        if self.error:
            return
        if self._ws is not None:
            self._ws.feed(True, data, ts)
            return
        try:
            self._req.receive_data(data)
            self._pump_requests(ts)
        except h11.ProtocolError as exc:
            self.error = f"request: {exc}"

    def _pump_requests(self, ts: float) -> None:
        while True:
            ev = self._req.next_event()
            if ev is h11.NEED_DATA or ev is h11.PAUSED or isinstance(ev, h11.ConnectionClosed):
                return
            if isinstance(ev, h11.Request):
                p = _Pending(ev, ts)
                self._reading = p
                self._waiting.append(p)
                # the response parser must know the request (HEAD, Upgrade) but not its body
                hdrs = [(k, v) for k, v in ev.headers if k not in (b"content-length", b"transfer-encoding")]
                self._resp.send(h11.Request(method=ev.method, target=ev.target, http_version=ev.http_version,
                                            headers=[*hdrs, (b"content-length", b"0")]))
                self._resp.send(h11.EndOfMessage())
            elif isinstance(ev, h11.Data) and self._reading is not None:
                self._reading.size += len(ev.data)
                if len(self._reading.body) < MAX_BODY:
                    self._reading.body += ev.data[: MAX_BODY - len(self._reading.body)]
            elif isinstance(ev, h11.EndOfMessage):
                self._reading = None

    # -- server -> client ------------------------------------------------------------------
    def server_data(self, data: bytes, ts: float) -> None:
        if self.error:
            return
        if self._ws is not None:
            self._ws.feed(False, data, ts)
            return
        try:
            self._resp.receive_data(data)
            self._pump_responses(ts)
        except h11.ProtocolError as exc:
            self.error = f"response: {exc}"

    def _pump_responses(self, ts: float) -> None:
        while True:
            ev = self._resp.next_event()
            if ev is h11.NEED_DATA or isinstance(ev, h11.ConnectionClosed):
                return
            if ev is h11.PAUSED:
                if self._resp.their_state is h11.SWITCHED_PROTOCOL:
                    self._switch(ts)
                return
            p = self._waiting[0] if self._waiting else None
            if p is None:
                self.error = "response without a request"
                return
            if isinstance(ev, h11.InformationalResponse):
                if ev.status_code == 101:
                    p.status, p.resp_headers, p.ts_resp = 101, _hdrs(list(ev.headers)), ts
            elif isinstance(ev, h11.Response):
                p.status, p.resp_headers, p.ts_resp = ev.status_code, _hdrs(list(ev.headers)), ts
                p.resp_version = "HTTP/" + ev.http_version.decode()
            elif isinstance(ev, h11.Data):
                p.resp_size += len(ev.data)
                if p.resp_size <= MAX_BODY:
                    p.chunks.append(Chunk(ts, bytes(ev.data)))
            elif isinstance(ev, h11.EndOfMessage):
                self._waiting.popleft()
                self._finish(p, ts, truncated=False)
                self._next_cycle(p)

    def _next_cycle(self, p: _Pending) -> None:
        """Tell the request parser the response is over, so it parses the next request."""
        close = any(k.lower() == "connection" and "close" in v.lower() for k, v in p.resp_headers)
        hdrs = [("content-length", "0")] + ([("connection", "close")] if close else [])
        try:
            self._req.send(h11.Response(status_code=p.status or 200, headers=hdrs))
            self._req.send(h11.EndOfMessage())
            if self._req.our_state is h11.DONE and self._req.their_state is h11.DONE:
                self._req.start_next_cycle()
            if self._resp.our_state is h11.DONE and self._resp.their_state is h11.DONE:
                self._resp.start_next_cycle()
        except h11.LocalProtocolError as exc:
            self.error = f"cycle: {exc}"
            return
        self._pump_requests(p.ts)

    def _switch(self, ts: float) -> None:
        p = self._waiting.popleft() if self._waiting else None
        if p is None:
            self.error = "upgrade without a request"
            return
        ext = next((v for k, v in p.resp_headers if k.lower() == "sec-websocket-extensions"), "")
        upgrade = next((v for k, v in p.resp_headers if k.lower() == "upgrade"), "")
        if upgrade.lower() != "websocket":
            self.error = f"unsupported upgrade {upgrade!r}"
            self._finish(p, ts, truncated=True)
            return
        self._ws = _WebSocketTap(ext)
        self._ws_exchange = p
        client_rest = self._req.trailing_data[0]
        server_rest = self._resp.trailing_data[0]
        if client_rest:
            self._ws.feed(True, client_rest, ts)
        if server_rest:
            self._ws.feed(False, server_rest, ts)

    # -- end -------------------------------------------------------------------------------
    def _finish(self, p: _Pending, ts: float, truncated: bool, ws: WebSocketSummary | None = None) -> None:
        req_body = decode_body(bytes(p.body), p.headers)
        authority = next((v for k, v in p.headers if k.lower() == "host"), self.authority)
        req = HttpRequest(method=p.method, authority=authority, path=p.target, headers=p.headers, body=req_body,
                          ts=p.ts, http_version=p.version, truncated=p.size > MAX_BODY or (truncated and p is self._reading))
        resp = None
        if p.status is not None:
            raw = b"".join(c.data for c in p.chunks)
            resp = HttpResponse(status=p.status, headers=p.resp_headers, body=decode_body(raw, p.resp_headers),
                                ts=p.ts_resp, ts_end=ts, http_version=p.resp_version,
                                truncated=truncated or p.resp_size > MAX_BODY, chunks=p.chunks)
        self.exchanges += 1
        self.emit(Exchange(req, resp, ws))

    def close(self, ts: float) -> None:
        """The connection ended: emit what is still open (marked truncated)."""
        if self._ws is not None and self._ws_exchange is not None:
            p, self._ws_exchange = self._ws_exchange, None
            self._finish(p, ts, truncated=False, ws=self._ws.summary)
        while self._waiting:
            self._finish(self._waiting.popleft(), ts, truncated=True)


class H2Tap:
    """Both directions of one HTTP/2 connection (the same interface as Http1Tap): every stream that
    ends (or is reset, or is open when the connection ends) is emitted as an Exchange."""

    def __init__(self, authority: str, emit: Callable[[Exchange], None]):
        self.authority = authority
        self.emit = emit
        self._parser = H2Parser(keep=MAX_BODY)
        self.exchanges = 0

    @property
    def error(self) -> str | None:
        return self._parser.error

    def _out(self, done: list) -> None:
        for req, resp in done:
            if not req.authority:
                req.authority = self.authority
            self.exchanges += 1
            self.emit(Exchange(req, resp))

    def client_data(self, data: bytes, ts: float) -> None:
        self._out(self._parser.feed_client(data, ts))

    def server_data(self, data: bytes, ts: float) -> None:
        self._out(self._parser.feed_server(data, ts))

    def close(self, ts: float) -> None:
        self._parser.last_ts = max(self._parser.last_ts, ts)
        self._out(self._parser.close(truncated=True))


class _WebSocketTap:
    """Frames of both directions after an upgrade; counts everything, keeps the first messages."""

    def __init__(self, extensions: str):
        from wsproto.extensions import PerMessageDeflate
        from wsproto.frame_protocol import FrameProtocol

        self.summary = WebSocketSummary(extensions=extensions)
        exts_out, exts_in = [], []
        if "permessage-deflate" in extensions.lower():
            for lst in (exts_out, exts_in):
                pmd = PerMessageDeflate()
                pmd.finalize(extensions)
                lst.append(pmd)
        # client frames are masked: parse them as the server would, and the server's as the client
        self._from_client = FrameProtocol(client=False, extensions=exts_out)
        self._from_server = FrameProtocol(client=True, extensions=exts_in)
        self._partial: dict[bool, list] = {True: [], False: []}

    def feed(self, from_client: bool, data: bytes, ts: float) -> None:
        if self.summary.error:
            return
        from wsproto.frame_protocol import Opcode, ParseFailed

        proto = self._from_client if from_client else self._from_server
        proto.receive_bytes(data)
        try:
            for frame in proto.received_frames():
                if frame.opcode is Opcode.CLOSE:
                    self.summary.close_code = int(frame.payload[0]) if frame.payload else None
                    continue
                if frame.opcode in (Opcode.PING, Opcode.PONG):
                    continue
                part = self._partial[from_client]
                part.append(frame.payload)
                if frame.message_finished:
                    self._message(from_client, part, ts)
                    part.clear()
        except ParseFailed as exc:
            self.summary.error = str(exc)

    def _message(self, from_client: bool, parts: list, ts: float) -> None:
        if parts and isinstance(parts[0], str):
            text: str | None = "".join(parts)
            size = len(text.encode())
        else:
            raw = b"".join(parts)
            size, text = len(raw), None
        s = self.summary
        if from_client:
            s.messages_out += 1
            s.bytes_out += size
            samples = s.text_out
        else:
            s.messages_in += 1
            s.bytes_in += size
            samples = s.text_in
        if text is not None and len(samples) < MAX_WS_SAMPLES:
            samples.append((ts, text))


def websocket_as_http(ex: Exchange) -> tuple[HttpRequest, HttpResponse] | None:
    """An LLM WebSocket session (OpenAI Responses over `wss://`: JSON `response.create` out, JSON
    events in) re-expressed as the POST + server-sent-event stream the HTTP decoders understand."""
    ws = ex.websocket
    if ws is None or not ws.text_out:
        return None
    try:
        first = json.loads(ws.text_out[-1][1])
    except ValueError:
        return None
    if not isinstance(first, dict) or not str(first.get("type", "")).startswith("response."):
        return None
    body = {k: v for k, v in first.items() if k != "type"}
    if isinstance(first.get("response"), dict):
        body = first["response"]
    req = HttpRequest(method="POST", authority=ex.request.authority, path=ex.request.path.split("?")[0],
                      headers=[*ex.request.headers, ("content-type", "application/json")],
                      body=json.dumps(body).encode(), ts=ws.text_out[-1][0], http_version=ex.request.http_version)
    chunks = [Chunk(ts, f"data: {text}\n\n".encode()) for ts, text in ws.text_in]
    t0 = chunks[0].ts if chunks else req.ts
    resp = HttpResponse(status=200, headers=[("content-type", "text/event-stream")],
                        body=b"".join(c.data for c in chunks), ts=t0, ts_end=chunks[-1].ts if chunks else t0,
                        http_version=ex.request.http_version, chunks=chunks)
    return req, resp
