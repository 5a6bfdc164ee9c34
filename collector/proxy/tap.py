"""Watch an HTTP/1.1 or HTTP/2 byte relay and cut it into exchanges, without touching the bytes relayed.

The proxy forwards every byte as soon as it arrives and only then shows it to a tap, so parsing
never adds latency or changes what the agent and the router see. The tap parses with the same
sans-IO parsers as the key-log and uprobe paths (collector.protocols: Http1Parser, H2Parser, through
ConnectionParser), so the three plaintext sources cut, decode and digest messages identically.
They replaced h11 here: equal to h11 on valid HTTP/1.1 (tests/collector/protocols/
test_fuzz_parsers.py checks it) and about 4x less CPU per exchange on LLM traffic
(2,000 keep-alive chat exchanges, JSON and SSE: 60-65 µs against 253 µs, 2026-12-05).
After a `101 Switching Protocols` the tap reads WebSocket frames instead (wsproto, with
permessage-deflate when negotiated) and summarises them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from collector.protocols.connection import ConnectionParser
from collector.protocols.messages import Chunk, HttpRequest, HttpResponse

MAX_BODY = 16 * 1024 * 1024  # decoded bytes kept per message; the rest is digested and counted (body_capped)
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


class HttpTap:
    """Both directions of one relayed connection; `emit(Exchange)` per finished exchange.

    The bytes go through collector.protocols.connection.ConnectionParser, the HTTP/1.1 and HTTP/2
    parsers of the key-log and uprobe paths, told the protocol both legs negotiated. An HTTP/1.1
    `101 Switching Protocols` to WebSocket hands both directions to a frame reader; that exchange
    is emitted when the connection ends, with the session's summary. To watch the exchanges
    differently (a policy gate, say), wrap `emit`, or the tap itself: it only reads."""

    def __init__(self, authority: str, emit: Callable[[Exchange], None], protocol: str = "h1"):
        self.authority = authority
        self.emit = emit
        self._parser = ConnectionParser(keep=MAX_BODY, protocol=protocol)
        self._ws: _WebSocketTap | None = None
        self._ws_exchange: tuple[HttpRequest, HttpResponse] | None = None
        self._upgrade_error: str | None = None
        self.exchanges = 0

    @property
    def error(self) -> str | None:
        """The first framing problem in either direction (parsing of that direction stopped there)."""
        p = self._parser
        return (self._upgrade_error or p.error or (p.h1_req.error if p.h1_req else None)
                or (p.h1_resp.error if p.h1_resp else None) or (p.h2.error if p.h2 else None))

    def client_data(self, data: bytes, ts: float) -> None:
        if self._ws is not None:
            self._ws.feed(True, data, ts)
        else:
            self._out(self._parser.feed(True, data, ts), ts)

    def server_data(self, data: bytes, ts: float) -> None:
        if self._ws is not None:
            self._ws.feed(False, data, ts)
        else:
            self._out(self._parser.feed(False, data, ts), ts)

    def close(self, ts: float) -> None:
        """The connection ended: emit what is still open (requests without a response are truncated)."""
        if self._ws_exchange is not None and self._ws is not None:
            (req, resp), self._ws_exchange = self._ws_exchange, None
            self._emit(req, resp, self._ws.summary)
        elif self._ws is None:
            self._out(self._parser.close(ts=ts), ts)

    def _out(self, done: list[tuple[HttpRequest, HttpResponse | None]], ts: float) -> None:
        for req, resp in done:
            if resp is not None and resp.status == 101 and self._ws is None:
                self._switch(req, resp, ts)
            else:
                self._emit(req, resp)

    def _emit(self, req: HttpRequest, resp: HttpResponse | None, ws: WebSocketSummary | None = None) -> None:
        if not req.authority:
            req.authority = self.authority
        self.exchanges += 1
        self.emit(Exchange(req, resp, ws))

    def _switch(self, req: HttpRequest, resp: HttpResponse, ts: float) -> None:
        """A 101: WebSocket frames from here on (anything else is not read, and said so)."""
        upgrade = next((v for k, v in resp.headers if k.lower() == "upgrade"), "")
        if upgrade.lower() != "websocket":
            self._upgrade_error = f"unsupported upgrade {upgrade!r}"
            resp.truncated = True
            self._emit(req, resp)
            return
        ext = next((v for k, v in resp.headers if k.lower() == "sec-websocket-extensions"), "")
        self._ws = _WebSocketTap(ext)
        self._ws_exchange = (req, resp)
        client_rest, server_rest = self._parser.switched or (b"", b"")
        if client_rest:
            self._ws.feed(True, client_rest, ts)
        if server_rest:
            self._ws.feed(False, server_rest, ts)


class Http1Tap(HttpTap):
    """An HttpTap for a connection whose legs speak HTTP/1.1."""

    def __init__(self, authority: str, emit: Callable[[Exchange], None]):
        super().__init__(authority, emit, "h1")


class H2Tap(HttpTap):
    """An HttpTap for a connection whose legs negotiated h2: concurrent streams become separate
    exchanges as each one ends; flow control stays end to end between agent and router."""

    def __init__(self, authority: str, emit: Callable[[Exchange], None]):
        super().__init__(authority, emit, "h2")


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
