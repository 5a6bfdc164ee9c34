"""The gate on an HTTP/2 connection: frames of LLM API response streams go through a BodyGate;
every other frame reaches the agent exactly as the router sent it, in the router's order.

The relay stays frame-transparent: both legs negotiated h2 end to end, so HPACK state and flow
control are shared between agent and router. Hence the rules here:

* header blocks are never changed and leave in their original order (the agent's HPACK decoder must
  see exactly the router's sequence); a header block of a stream whose data is held waits, and so
  does every header block after it;
* DATA of a gated stream is released frame by frame, as it came, once every byte in the frame is
  released; a frame is never split;
* when a call is blocked, the rest of that stream is generated at its end, and the DATA frames sent
  instead carry, with padding, exactly as many flow-control bytes as the router's frames they
  replace: the agent's WINDOW_UPDATEs then credit the router exactly what it sent. The generated
  body is fitted into that room (collector.proxy.gate.body `fit`); a body whose Content-Length
  already went out is made exactly that long;
* when even that is impossible (a compressed stream cannot be continued, an answer that cannot be
  fitted), the stream is ended with only padding (fail closed: the agent sees a truncated answer).

Frames that concern the request direction (WINDOW_UPDATE, PRIORITY) and the connection (SETTINGS,
PING, GOAWAY) pass at once.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

from hpack.exceptions import HPACKError

from collector.policy.judge import Context, Judge
from collector.protocols.encoding import BodyDecoder
from collector.protocols.hpack_decode import HpackDecoder
from collector.protocols.http2 import MAX_HEADER_BLOCK, PREFACE
from collector.proxy.gate.body import BodyGate
from collector.proxy.gate.conn import ConnGate, tool_api
from collector.proxy.gate.encoding import codings, encode_all, encode_exact

_DATA, _HEADERS, _PRIORITY, _RST, _SETTINGS, _PUSH, _PING, _GOAWAY, _WINDOW, _CONT = range(10)
_END_STREAM, _END_HEADERS, _PADDED, _PRIO = 0x1, 0x4, 0x8, 0x20
MAX_PIECE = 16384 - 256  # payload per generated DATA frame: room for padding within the 16 KiB every peer accepts
_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,200})"')


def _frame(ftype: int, flags: int, sid: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


def data_frames(sid: int, data: bytes, budget: int, end_stream: bool) -> bytes:
    """DATA frames carrying `data` whose flow-control lengths add up to exactly `budget` (padding)."""
    assert len(data) <= budget
    pieces = [data[i : i + MAX_PIECE] for i in range(0, len(data), MAX_PIECE)] or [b""]
    extra = budget - len(data)
    plan: list[tuple[bytes, int]] = []
    for p in pieces:
        e = min(extra, 256)
        extra -= e
        plan.append((p, e))
    while extra > 0:
        e = min(extra, 256)
        extra -= e
        plan.append((b"", e))
    out = bytearray()
    for i, (p, e) in enumerate(plan):
        flags = _END_STREAM if end_stream and i == len(plan) - 1 else 0
        if e:
            out += _frame(_DATA, flags | _PADDED, sid, bytes([e - 1]) + p + b"\x00" * (e - 1))
        else:
            out += _frame(_DATA, flags, sid, p)
    return bytes(out)


@dataclass
class _Unit:
    raw: bytes  # the frame as the router sent it (b"" for the end of a body that ends in trailers)
    fc: int  # its flow-control length
    decoded_end: int
    end: bool = False  # the body ends with it
    trailers: bool = False  # ... and the stream's END_STREAM comes on a trailers HEADERS frame


@dataclass
class _Stream:
    sid: int
    method: str = ""
    path: str = ""
    model: str | None = None
    req_body: bytearray = field(default_factory=bytearray)
    responded: bool = False
    gate: BodyGate | None = None
    decoder: BodyDecoder | None = None
    encoding: str | None = None
    decoded: bytearray = field(default_factory=bytearray)  # decoded bytes from `sent` on
    sent: int = 0
    total: int = 0
    rewriting: bool = False
    dead: bool = False  # ended with padding only (fail closed)
    budget: int = 0  # flow-control bytes consumed since rewriting began
    prefix: bytes = b""


class H2Gate(ConnGate):
    def __init__(self, judge: Judge, ctx: Context):
        super().__init__(judge, ctx)
        self._cbuf = bytearray()
        self._cpreface = True
        self._cdec = HpackDecoder(max_header_list_size=MAX_HEADER_BLOCK, max_allowed_table_size=1 << 24)
        self._cblock: tuple[int, bytearray] | None = None
        self._sbuf = bytearray()
        self._sdec = HpackDecoder(max_header_list_size=MAX_HEADER_BLOCK, max_allowed_table_size=1 << 24)
        self._sblock: tuple[int, int, bytearray, list[bytes]] | None = None  # sid, flags, block, raw frames
        self._streams: dict[int, _Stream] = {}
        self._queue: deque = deque()  # ('raw', sid, bytes, ordered_hdr) | ('data', sid, _Unit)
        self._dead = False

    # -- the agent's side: which request each stream carries ----------------------------------------
    def client_data(self, data: bytes) -> None:
        if self._dead:
            return
        self._cbuf += data
        if self._cpreface:
            if len(self._cbuf) < len(PREFACE):
                return
            if bytes(self._cbuf[: len(PREFACE)]) != PREFACE:
                self._dead = True  # not h2 after all: the gate cannot pair responses; it fails closed below
                return
            del self._cbuf[: len(PREFACE)]
            self._cpreface = False
        for ftype, flags, sid, payload, _raw in self._frames(self._cbuf):
            if ftype in (_HEADERS, _CONT):
                p = payload
                if ftype == _HEADERS:
                    p = _strip(p, flags)
                    if p is None:
                        continue
                    self._cblock = (sid, bytearray(p))
                elif self._cblock is not None:
                    self._cblock[1].extend(p)
                if flags & _END_HEADERS and self._cblock is not None:
                    bsid, block = self._cblock
                    self._cblock = None
                    try:
                        hdrs = {k.decode("latin-1"): v.decode("latin-1") for k, v in self._cdec.decode(bytes(block))}
                    except (HPACKError, ValueError, IndexError, UnicodeDecodeError):
                        self._dead = True
                        return
                    st = self._streams.setdefault(bsid, _Stream(bsid))
                    if not st.method:
                        st.method, st.path = hdrs.get(":method", ""), hdrs.get(":path", "")
            elif ftype == _RST:
                st = self._streams.get(sid)
                if st is not None and st.gate is None:
                    self._streams.pop(sid, None)
                elif st is not None and not st.gate.ended:  # the agent gave up on it: judged or not, it ends
                    st.gate.fail("the agent reset the stream")
                    st.gate.finish()
                    st.dead = True
                    self._queue.append(("data", sid, _Unit(b"", 0, st.total, end=True, trailers=True)))
            elif ftype == _DATA:
                st = self._streams.get(sid)
                if st is not None and st.model is None and len(st.req_body) < 65536:
                    body = _strip(payload, flags & _PADDED) or b""
                    st.req_body += body[: 65536 - len(st.req_body)]
                    m = _MODEL.search(st.req_body)
                    if m:
                        st.model = m.group(1).decode("utf-8", "replace")
                        st.req_body = bytearray()

    # -- the router's side -------------------------------------------------------------------------
    def server_data(self, data: bytes) -> None:
        if self.close_agent:
            return
        self._sbuf += data
        for ftype, flags, sid, payload, raw in self._frames(self._sbuf):
            self._server_frame(ftype, flags, sid, payload, raw)
            if self.close_agent:
                return
        self.pump()

    def server_eof(self) -> None:
        for st in self._streams.values():
            if st.gate is not None and not st.gate.ended:
                st.gate.fail("the connection ended inside the response body")
                st.gate.finish()
        self.pump()

    def _broken(self, why: str) -> None:
        self.error = self.error or why
        self.close_agent = True

    def _frames(self, buf: bytearray):  # noqa: ANN202
        pos = 0
        n = len(buf)
        while n - pos >= 9:
            length = int.from_bytes(buf[pos : pos + 3], "big")
            if n - pos - 9 < length:
                break
            raw = bytes(buf[pos : pos + 9 + length])
            sid = int.from_bytes(raw[5:9], "big") & 0x7FFFFFFF
            pos += 9 + length
            yield raw[3], raw[4], sid, raw[9:], raw
        del buf[:pos]

    def _server_frame(self, ftype: int, flags: int, sid: int, payload: bytes, raw: bytes) -> None:
        if self._sblock is not None and ftype != _CONT:
            self._broken("an HTTP/2 header block was interrupted")
            return
        if ftype in (_HEADERS, _PUSH):
            p = _strip(payload, flags) if ftype == _HEADERS else (_strip(payload, flags & _PADDED) or b"")[4:]
            if p is None:
                self._broken("a malformed HTTP/2 HEADERS frame")
                return
            self._sblock = (sid if ftype == _HEADERS else -1, flags, bytearray(p), [raw])
            if flags & _END_HEADERS:
                self._header_block()
        elif ftype == _CONT:
            if self._sblock is None:
                self._broken("an unexpected CONTINUATION")
                return
            self._sblock[2].extend(payload)
            self._sblock[3].append(raw)
            if flags & _END_HEADERS:
                self._header_block()
        elif ftype == _DATA:
            st = self._streams.get(sid)
            if st is None or st.gate is None:
                self._queue.append(("raw", sid, raw, False))
                if flags & _END_STREAM:
                    self._streams.pop(sid, None)  # nothing more to know about it
                return
            body = _strip(payload, flags & _PADDED)
            if body is None:
                self._broken("a malformed HTTP/2 DATA frame")
                return
            self._data(st, raw, len(payload), body, bool(flags & _END_STREAM))
        elif ftype == _RST:
            st = self._streams.get(sid)
            if st is not None and st.gate is not None and not st.gate.ended:
                st.gate.fail("the router reset the stream")
                st.gate.finish()
                self._queue.append(("data", sid, _Unit(b"", 0, st.total, end=True, trailers=True)))
            elif st is not None and st.gate is None:
                self._streams.pop(sid, None)
            self._queue.append(("raw", sid, raw, False))
        elif ftype in (_WINDOW, _PRIORITY, _SETTINGS, _PING, _GOAWAY):
            self._queue.append(("raw", 0, raw, False))
        else:  # unknown frame types: kept in their stream's order
            self._queue.append(("raw", sid, raw, False))

    def _header_block(self) -> None:
        sid, flags, block, raws = self._sblock  # type: ignore[misc]
        self._sblock = None
        try:
            hdrs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self._sdec.decode(bytes(block))]
        except (HPACKError, ValueError, IndexError, UnicodeDecodeError):
            self._broken("the router's HPACK could not be decoded")
            return
        raw = b"".join(raws)
        if sid < 0:  # PUSH_PROMISE: decoded to keep HPACK in step, passed on
            self._queue.append(("raw", 0, raw, True))
            return
        st = self._streams.get(sid)
        if st is None:
            st = self._streams[sid] = _Stream(sid)
        status = next((v for k, v in hdrs if k == ":status"), "")
        if st.responded or not status.isdigit() or 100 <= int(status) < 200:
            # trailers (or an interim response): a gated body ends here, before the trailers leave
            if st.responded and st.gate is not None and flags & _END_STREAM:
                self._end_body(st, trailers=True)
            elif flags & _END_STREAM:
                self._streams.pop(sid, None)
            self._queue.append(("raw", sid, raw, True))
            return
        st.responded = True
        h = {k: v for k, v in hdrs}
        api = tool_api(st.method, st.path)
        if api is not None and 200 <= int(status) < 300 and not flags & _END_STREAM:
            ctype = h.get("content-type", "").lower()
            streamed = "event-stream" in ctype
            st.encoding = h.get("content-encoding")
            st.decoder = BodyDecoder(st.encoding)
            exact = "content-length" in h
            st.gate = self.new_body(("h2", sid), api, streamed=streamed, model=st.model, fit=True, exact=exact)
        elif flags & _END_STREAM:
            self._streams.pop(sid, None)
        self._queue.append(("raw", sid, raw, True))

    def _data(self, st: _Stream, raw: bytes, fc: int, body: bytes, end: bool) -> None:
        g = st.gate
        assert g is not None and st.decoder is not None
        dec = st.decoder.feed(body)
        if st.decoder.error:
            g.fail(st.decoder.error)
        st.total += len(dec)
        if not st.rewriting:
            st.decoded += dec
        g.feed(dec)
        unit = _Unit(raw, fc, st.total, end=end)
        if end:
            self._end_body(st, unit=unit)
        else:
            self._queue.append(("data", st.sid, unit))

    def _end_body(self, st: _Stream, unit: _Unit | None = None, trailers: bool = False) -> None:
        g = st.gate
        assert g is not None and st.decoder is not None
        tail = st.decoder.flush()
        if st.decoder.error:
            g.fail(st.decoder.error)
        if tail:
            st.total += len(tail)
            st.decoded += tail
            g.feed(tail)
        g.finish()
        if unit is None:
            unit = _Unit(b"", 0, st.total, end=True, trailers=trailers)
        else:
            unit.decoded_end = st.total
        self._queue.append(("data", st.sid, unit))

    # -- output ------------------------------------------------------------------------------------
    def pump(self) -> None:
        if self._dead and not self.close_agent:
            self._broken("the agent's side is not HTTP/2 the gate can read")
        waiting: set[int] = set()
        hdr_wait = False
        keep: deque = deque()
        for item in self._queue:
            kind, sid = item[0], item[1]
            if kind == "raw":
                ordered_hdr = item[3]
                if (sid and sid in waiting) or (ordered_hdr and hdr_wait):
                    keep.append(item)
                    if ordered_hdr:
                        hdr_wait = True
                    if sid:
                        waiting.add(sid)
                    continue
                self.out += item[2]
                continue
            if sid in waiting:
                keep.append(item)
                continue
            st = self._streams[sid]
            out = self._release(st, item[2])
            if out is None:
                keep.append(item)
                waiting.add(sid)
                continue
            self.out += out
            if item[2].end:
                self.body_done(("h2", sid))
                self._streams.pop(sid, None)
        self._queue = keep

    def _release(self, st: _Stream, u: _Unit) -> bytes | None:
        g = st.gate
        assert g is not None
        if st.dead:
            st.budget += u.fc
            return self._dead_end(st, u)
        if not st.rewriting:
            # once rewriting, a compressed frame is never sent as it came (its bits may encode what is
            # replaced); a whole (non-streamed) body leaves only once judged
            limit = g.orig_upto if g.rewrite_from is None else -1 if codings(st.encoding) else g.rewrite_from
            whole_ok = g.streamed or g.settled
            if u.decoded_end <= limit and whole_ok and (not u.end or g.rewrite_from is not None or g.settled):
                del st.decoded[: u.decoded_end - st.sent]
                st.sent = u.decoded_end
                return u.raw
            if g.rewrite_from is None:
                return None
            st.rewriting = True
            st.prefix = bytes(st.decoded[: g.rewrite_from - st.sent])
            st.decoded = bytearray()
            if codings(st.encoding) and g.streamed:  # our bytes cannot continue the router's compressed stream
                self.error = self.error or "a tool call was blocked inside a content-encoded HTTP/2 stream: stream ended"
                st.dead = True
                st.budget += u.fc
                return self._dead_end(st, u)
        st.budget += u.fc
        if not u.end:
            return b""
        if not g.settled:
            st.budget -= u.fc
            return None
        data = self._fitted(st)
        if data is None:
            st.dead = True
            self.error = self.error or "a blocked answer could not be fitted into the stream: stream ended"
            return self._dead_end(st, u)
        return data_frames(st.sid, data, st.budget, end_stream=not u.trailers)

    def _fitted(self, st: _Stream) -> bytes | None:
        """The rest of the body (decoded prefix + generated part), fitted into the stream's budget."""
        g = st.gate
        assert g is not None
        room = st.budget - len(st.prefix)
        if not codings(st.encoding):
            gen = g.take(room)
            return None if g.overflow else st.prefix + b"".join(gen)
        # a non-streamed encoded body: encode the whole generated body (the prefix is empty: nothing was sent)
        if st.prefix or g.rewrite_from != 0:
            return None
        full = len(b"".join(g.render_fit(None)))
        for limit in range(full, 0, -max(16, full // 24)):
            gen = g.render_fit(limit)
            if g.overflow:
                return None
            data = b"".join(gen)
            if g.exact:
                enc = encode_exact(data.rstrip(b" "), st.encoding, st.budget)
            else:
                enc = encode_all(data, st.encoding)
                enc = enc if len(enc) <= st.budget else None
            if enc is not None:
                return enc
        return None

    def _dead_end(self, st: _Stream, u: _Unit) -> bytes:
        """Fail closed: the stream's remaining flow-control bytes as padding only; END_STREAM at its end."""
        if not u.end:
            return b""
        return data_frames(st.sid, b"", st.budget, end_stream=not u.trailers)


def _strip(payload: bytes, flags: int) -> bytes | None:
    """A DATA/HEADERS payload without padding (and HEADERS' priority fields); None when malformed."""
    p = payload
    if flags & _PADDED:
        if not p or p[0] > len(p) - 1:
            return None
        p = p[1 : len(p) - p[0]]
    if flags & _PRIO and len(p) >= 5:
        p = p[5:]
    return p
