"""HTTP/2 exchange parsing from both directions of a connection (sans-IO, passive observer).

The h2 library's connection state machine plays one side of a connection, so a passive observer
of both sides cannot use it. Frames are read here (9-byte headers, padding, CONTINUATION) and
header blocks decompressed with collector.protocols.hpack_decode (the `hpack` library's tables
and Huffman code), one decoder per direction, so HPACK state stays in step exactly as each
endpoint's did. Bodies are byte-exact (DATA payloads, padding
removed), decoded and capped by encoding.Body. Malformed frames or HPACK errors stop the parse
of that direction and mark open exchanges truncated with `error`; nothing raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hpack.exceptions import HPACKError

from collector.protocols.encoding import DEFAULT_KEEP, Body
from collector.protocols.hpack_decode import HpackDecoder
from collector.protocols.messages import HttpRequest, HttpResponse

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_HEADER_BLOCK = 1024 * 1024
_DATA, _HEADERS, _PRIORITY, _RST, _SETTINGS, _PUSH, _PING, _GOAWAY, _WINDOW, _CONT = range(10)
_END_STREAM, _END_HEADERS, _PADDED, _PRIO = 0x1, 0x4, 0x8, 0x20


@dataclass
class _Side:
    """One direction's frame reader and HPACK state."""

    decoder: HpackDecoder
    buf: bytearray = field(default_factory=bytearray)
    need_preface: bool = False
    dead: bool = False
    # a header block spread over HEADERS/PUSH_PROMISE + CONTINUATION frames
    block: bytearray | None = None
    block_stream: int = 0
    block_flags: int = 0
    block_promised: int | None = None


class _Stream:
    __slots__ = ("sid", "req", "req_body", "req_done", "resp", "resp_body", "resp_done")

    def __init__(self, sid: int):
        self.sid = sid
        self.req: HttpRequest | None = None
        self.req_body: Body | None = None
        self.req_done = False
        self.resp: HttpResponse | None = None
        self.resp_body: Body | None = None
        self.resp_done = False


def _decoder() -> HpackDecoder:
    # the peer's SETTINGS bound the table size; a passive observer stays lenient (16 MiB)
    return HpackDecoder(max_header_list_size=MAX_HEADER_BLOCK, max_allowed_table_size=1 << 24)


def _hval(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k == name:
            return v
    return None


class H2Parser:
    """Both directions of one HTTP/2 connection -> completed (request, response) exchanges."""

    def __init__(self, *, keep: int = DEFAULT_KEEP, client_preface: bool = True):
        self.keep = keep
        self.client = _Side(_decoder(), need_preface=client_preface)
        self.server = _Side(_decoder())
        self.streams: dict[int, _Stream] = {}
        self.out: list[tuple[HttpRequest, HttpResponse | None]] = []
        self.error: str | None = None
        self.last_ts = 0.0

    # -- input -------------------------------------------------------------------------------
    def feed_client(self, data: bytes, ts: float) -> list[tuple[HttpRequest, HttpResponse | None]]:
        return self._feed(self.client, True, data, ts)

    def feed_server(self, data: bytes, ts: float) -> list[tuple[HttpRequest, HttpResponse | None]]:
        return self._feed(self.server, False, data, ts)

    def close(self, truncated: bool = False) -> list[tuple[HttpRequest, HttpResponse | None]]:
        """End of the connection: every exchange still open is emitted, marked truncated."""
        for s in list(self.streams.values()):
            if s.req is None:
                continue
            if not s.req_done:
                s.req.truncated = True
                self._finish_req(s, self.last_ts)
            if s.resp is not None and not s.resp_done:
                s.resp.truncated = True
                self._finish_resp(s, self.last_ts)
            elif s.resp is None:
                s.req.truncated = True  # no response seen
            self.out.append((s.req, s.resp))
        self.streams.clear()
        return self._take()

    def _take(self):
        out, self.out = self.out, []
        return out

    def _feed(self, side: _Side, from_client: bool, data: bytes, ts: float):
        self.last_ts = ts
        if side.dead or not data:
            return self._take()
        buf = side.buf
        buf += data
        pos = 0
        if side.need_preface:
            if len(buf) < len(PREFACE):
                if not PREFACE.startswith(bytes(buf)):
                    self._die(side, "not an HTTP/2 connection preface")
                return self._take()
            if bytes(buf[: len(PREFACE)]) != PREFACE:
                self._die(side, "not an HTTP/2 connection preface")
                return self._take()
            pos = len(PREFACE)
            side.need_preface = False
        n = len(buf)
        while n - pos >= 9:
            length = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
            if n - pos - 9 < length:
                break
            ftype = buf[pos + 3]
            flags = buf[pos + 4]
            sid = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
            payload = bytes(buf[pos + 9 : pos + 9 + length])
            pos += 9 + length
            self._frame(side, from_client, ftype, flags, sid, payload, ts)
            if side.dead:
                break
        if side.dead:
            buf.clear()
        elif pos:
            del buf[:pos]
        return self._take()

    def _die(self, side: _Side, why: str) -> None:
        side.dead = True
        self.error = self.error or why
        for s in self.streams.values():
            if s.req is not None and not s.req.error:
                s.req.error = why

    # -- frames --------------------------------------------------------------------------------
    def _frame(self, side: _Side, from_client: bool, ftype: int, flags: int, sid: int, payload: bytes, ts: float):
        if side.block is not None and ftype != _CONT:
            self._die(side, "header block interrupted (CONTINUATION expected)")
            return
        if ftype == _DATA:
            if flags & _PADDED:
                if not payload or payload[0] > len(payload) - 1:
                    self._die(side, "bad DATA padding")
                    return
                payload = payload[1 : len(payload) - payload[0]]
            s = self.streams.get(sid)
            if s is None:
                return  # stream we never saw open (capture started mid-connection)
            body = s.req_body if from_client else s.resp_body
            if body is not None:
                body.feed(payload, ts)
            if flags & _END_STREAM:
                self._end(s, from_client, ts)
        elif ftype in (_HEADERS, _PUSH):
            p = payload
            if flags & _PADDED:
                if not p or p[0] > len(p) - 1:
                    self._die(side, "bad HEADERS padding")
                    return
                p = p[1 : len(p) - p[0]]
            promised = None
            if ftype == _HEADERS and flags & _PRIO:
                if len(p) < 5:
                    self._die(side, "short HEADERS priority")
                    return
                p = p[5:]
            if ftype == _PUSH:
                if len(p) < 4:
                    self._die(side, "short PUSH_PROMISE")
                    return
                promised = int.from_bytes(p[:4], "big") & 0x7FFFFFFF
                p = p[4:]
            side.block = bytearray(p)
            side.block_stream = sid
            side.block_flags = flags
            side.block_promised = promised
            if flags & _END_HEADERS:
                self._header_block(side, from_client, ts)
        elif ftype == _CONT:
            if side.block is None or sid != side.block_stream:
                self._die(side, "unexpected CONTINUATION")
                return
            side.block += payload
            if len(side.block) > MAX_HEADER_BLOCK:
                self._die(side, "header block exceeds the size limit")
                return
            if flags & _END_HEADERS:
                self._header_block(side, from_client, ts)
        elif ftype == _RST:
            s = self.streams.pop(sid, None)
            if s is not None and s.req is not None:
                why = "stream reset"
                s.req.error = s.req.error or why
                if not s.req_done:
                    s.req.truncated = True
                    self._finish_req(s, ts)
                if s.resp is not None and not s.resp_done:
                    s.resp.truncated = True
                    s.resp.error = why
                    self._finish_resp(s, ts)
                self.out.append((s.req, s.resp))
        # SETTINGS, PING, GOAWAY, WINDOW_UPDATE, PRIORITY, unknown types: nothing to record

    def _header_block(self, side: _Side, from_client: bool, ts: float) -> None:
        block, sid, flags, promised = bytes(side.block or b""), side.block_stream, side.block_flags, side.block_promised
        side.block = None
        try:
            raw = side.decoder.decode(block)
        except (HPACKError, ValueError, IndexError, UnicodeDecodeError) as e:
            self._die(side, f"HPACK error: {type(e).__name__}")
            return
        headers = [(k.decode("utf-8", "replace"), v.decode("utf-8", "replace")) for k, v in raw]
        if promised is not None:  # server push: the promised request
            s = _Stream(promised)
            self._new_request(s, headers, ts)
            s.req_done = True
            self._finish_req(s, ts)
            self.streams[promised] = s
            return
        s = self.streams.get(sid)
        if from_client:
            if s is None:
                s = _Stream(sid)
                self.streams[sid] = s
                self._new_request(s, headers, ts)
            elif s.req is not None and s.req_body is not None:
                pass  # request trailers
            if flags & _END_STREAM:
                self._end(s, True, ts)
        else:
            if s is None:
                return  # response on a stream we never saw open
            status_txt = _hval(headers, ":status")
            if s.resp is None:
                try:
                    status = int(status_txt or "0")
                except ValueError:
                    status = 0
                if 100 <= status < 200:
                    return  # interim response
                regular = [(k, v) for k, v in headers if not k.startswith(":")]
                s.resp = HttpResponse(status, regular, b"", ts, http_version="HTTP/2")
                ctype = (_hval(regular, "content-type") or "").lower()
                s.resp_body = Body(
                    _hval(regular, "content-encoding"), keep=self.keep, keep_chunks="text/event-stream" in ctype
                )
            # else: trailers (kept HPACK in sync; nothing else to record)
            if flags & _END_STREAM:
                self._end(s, False, ts)

    def _new_request(self, s: _Stream, headers: list[tuple[str, str]], ts: float) -> None:
        regular = [(k, v) for k, v in headers if not k.startswith(":")]
        authority = _hval(headers, ":authority") or _hval(regular, "host") or ""
        s.req = HttpRequest(
            _hval(headers, ":method") or "",
            authority,
            _hval(headers, ":path") or "",
            regular,
            b"",
            ts,
            http_version="HTTP/2",
            stream_id=s.sid,
        )
        s.req_body = Body(_hval(regular, "content-encoding"), keep=self.keep)

    def _end(self, s: _Stream, from_client: bool, ts: float) -> None:
        if from_client:
            if s.req is not None and not s.req_done:
                s.req_done = True
                self._finish_req(s, ts)
        else:
            if s.resp is not None and not s.resp_done:
                s.resp_done = True
                self._finish_resp(s, ts)
        if s.resp_done and (s.req_done or s.req is None):
            self.streams.pop(s.sid, None)
            if s.req is not None:
                self.out.append((s.req, s.resp))

    def _finish_req(self, s: _Stream, ts: float) -> None:
        if s.req is not None:
            _finish(s.req, s.req_body, ts)
            s.req_body = None

    def _finish_resp(self, s: _Stream, ts: float) -> None:
        if s.resp is not None:
            _finish(s.resp, s.resp_body, ts)
            s.resp_body = None


def _finish(msg: HttpRequest | HttpResponse, body: Body | None, ts: float) -> None:
    """A stream's message is complete at `ts` (END_STREAM or the connection's end)."""
    if body is not None:
        body.finish_into(msg, ts)
    msg.ts_end = ts
