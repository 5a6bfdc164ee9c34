"""The gate on a WebSocket after `101 Switching Protocols`: the Responses API over `wss://` (Codex).

Each server message is one Responses event (the same JSON as the SSE stream), so each response
(`response.created` ... `response.completed`) goes through a BodyGate in message mode. A message
is released as the router framed it (permessage-deflate compressed or not) unless it is held (a tool
call being judged) or replaced. Generated messages are sent uncompressed (RSV1 clear, which
permessage-deflate allows per message). Dropping a compressed message would leave the agent's
inflater without text the router's later messages may refer back to (context takeover), so from the
first dropped compressed message on, every later message is decompressed here and sent uncompressed.
Control frames: ping and pong pass at once, a close frame keeps its place after held messages.
The agent's messages go to the router untouched.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from collector.policy.judge import Context, Judge
from collector.proxy.gate.apis import _FINAL
from collector.proxy.gate.body import BodyGate
from collector.proxy.gate.conn import ConnGate, Judged

MAX_MESSAGE = 64 * 1024 * 1024
_TEXT, _BINARY, _CONT, _CLOSE, _PING, _PONG = 1, 2, 0, 8, 9, 10


@dataclass
class _Msg:
    raw: bytes  # every frame of the message as the router sent it
    text: bytes  # the decompressed payload
    compressed: bool
    gate: BodyGate | None
    index: int  # its position in its response's BodyGate
    control: bool = False


def frame(payload: bytes, opcode: int = _TEXT) -> bytes:
    """An unmasked (server) frame, FIN set, not compressed."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + n.to_bytes(2, "big")
    else:
        head += bytes([127]) + n.to_bytes(8, "big")
    return head + payload


class WebSocketGate(ConnGate):
    def __init__(self, judge: Judge, ctx: Context, key: tuple, extensions: str, model: str | None = None):
        super().__init__(judge, ctx)
        self.key = key
        ext = extensions.lower()
        self.deflate = "permessage-deflate" in ext
        self.no_takeover = "server_no_context_takeover" in ext
        m = re.search(r"server_max_window_bits\s*=\s*\"?(\d+)", ext)
        self.wbits = int(m.group(1)) if m else 15
        self._inflater = zlib.decompressobj(-self.wbits)
        self.model = model
        self._buf = bytearray()
        self._frames: list[bytes] = []  # raw frames of the message being assembled
        self._payload: list[bytes] = []
        self._rsv1 = False
        self._queue: list[_Msg] = []
        self._gate: BodyGate | None = None
        self._n = 0  # responses seen
        self.desync = False  # a compressed message was dropped: send everything uncompressed from now on
        self._dead = False

    def client_data(self, data: bytes) -> None:
        """The agent's messages (response.create) go to the router as they are."""

    def server_data(self, data: bytes) -> None:
        if self._dead:
            return
        self._buf += data
        while True:
            f = self._frame()
            if f is None:
                break
        self.pump()

    def server_eof(self) -> None:
        if self._gate is not None:
            self._gate.finish()
        self.pump()

    def _fail(self, why: str) -> None:
        self.error = self.error or why
        self._dead = True
        if self._gate is not None:
            self._gate.fail(why)
            self._gate.finish()
        self.close_agent = True

    def _frame(self) -> bool | None:
        b = self._buf
        if len(b) < 2:
            return None
        b0, b1 = b[0], b[1]
        n, pos = b1 & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, pos = int.from_bytes(b[2:4], "big"), 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, pos = int.from_bytes(b[2:10], "big"), 10
        masked = bool(b1 & 0x80)
        if n > MAX_MESSAGE:
            self._fail("a WebSocket frame is too large to judge")
            return None
        end = pos + (4 if masked else 0) + n
        if len(b) < end:
            return None
        raw = bytes(b[:end])
        payload = bytes(b[pos + (4 if masked else 0) : end])
        if masked:
            key = b[pos : pos + 4]
            payload = bytes(x ^ key[i % 4] for i, x in enumerate(payload))
        del b[:end]
        opcode, fin = b0 & 0x0F, bool(b0 & 0x80)
        if opcode in (_PING, _PONG):
            self.out += raw
            return True
        if opcode == _CLOSE:
            self._queue.append(_Msg(raw, b"", False, None, 0, control=True))
            return True
        if opcode in (_TEXT, _BINARY):
            self._frames, self._payload, self._rsv1 = [raw], [payload], bool(b0 & 0x40)
        elif opcode == _CONT and self._frames:
            self._frames.append(raw)
            self._payload.append(payload)
        else:
            self._fail("a WebSocket frame out of sequence")
            return None
        if fin:
            self._message(b"".join(self._frames), b"".join(self._payload), self._rsv1)
            self._frames, self._payload = [], []
        return True

    def _message(self, raw: bytes, payload: bytes, compressed: bool) -> None:
        if compressed:
            if not self.deflate:
                self._fail("a compressed WebSocket message without permessage-deflate")
                return
            if self.no_takeover:
                self._inflater = zlib.decompressobj(-self.wbits)
            try:
                text = self._inflater.decompress(payload + b"\x00\x00\xff\xff", MAX_MESSAGE)
            except zlib.error:
                self._fail("a WebSocket message does not inflate")
                return
        else:
            text = payload
        if self._gate is None:
            self._n += 1
            self._gate = self.new_body(("ws", self._n), "openai.responses", streamed=True, model=self.model,
                                       messages=True)
        g = self._gate
        idx = g._msg_index
        self._queue.append(_Msg(raw, text, compressed, g, idx))
        g.feed_message(text)
        if _is_final(text):
            g.finish()
            self._gate = None

    def pump(self) -> None:
        while self._queue:
            m = self._queue[0]
            if m.control:
                self._queue.pop(0)
                self.out += m.raw
                continue
            g = m.gate
            assert g is not None
            self._emit_generated(g)
            if g.rewrite_from is not None and m.index >= g.rewrite_from:
                if m.index >= g.released:
                    return  # not yet rendered
                self._queue.pop(0)  # replaced (its copy, if any, came with the generated messages)
                if m.compressed and not self.no_takeover:
                    self.desync = True
                continue
            if m.index >= g.orig_upto:
                return  # held
            self._queue.pop(0)
            self.out += frame(m.text) if (self.desync and m.compressed) else m.raw
        for key, (g, _t) in list(self._bodies.items()):
            self._emit_generated(g)
            if g.settled and not any(q.gate is g for q in self._queue):
                self.body_done(key)

    def _emit_generated(self, g: BodyGate) -> None:
        for piece in g.take():
            self.out += frame(piece)

    def take_judged(self) -> list[Judged]:
        out = super().take_judged()
        for j in out:
            j.key = self.key
        return out


_TYPE = re.compile(rb'"type"\s*:\s*"([^"\\]{1,80})"')


def _is_final(text: bytes) -> bool:
    """Does this event end a response (its first "type" is the event's own: events open with it)?"""
    m = _TYPE.search(text)
    return bool(m) and (m.group(1).decode() in _FINAL or m.group(1) == b"error")
