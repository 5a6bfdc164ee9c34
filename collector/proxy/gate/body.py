"""One LLM response body through the gate: what may reach the agent unchanged, what is held, and
what replaces a blocked tool call.

Sans-IO. The transport (HTTP/1.1, HTTP/2, WebSocket) feeds the decoded body (`feed`) or messages
(`feed_message`), tells when it ends (`finish`), runs the judge over `pending` calls (`resolve`),
and asks `take()` what to forward:

* `orig_upto`: how much of the body (bytes; WebSocket: messages) may go to the agent *as it
  arrived*. Events stream on at once; only events of a tool call not yet judged are held, and
  everything after them (order is kept). A partial event is never released.
* generated pieces: once a call is blocked (or the response cannot be read), everything from that
  event on is the gate's: original events copied, the blocked call replaced by a text part in the
  API's format, terminal events rewritten (`stop_reason`, `finish_reason`, `response.completed`).

`fit` (HTTP/2, where the agent's flow-control window counts the bytes the router sent): generated
output is produced only at the end of the body and must not exceed the bytes it replaces; block
messages are shortened until it fits (`take(room=...)`), `exact` pads to exactly that length
(a body whose Content-Length header already went out).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from collector.policy.judge import Context, block_message
from collector.policy.model import BLOCK, UNPARSEABLE, Hit, ToolCall, Verdict, strongest
from collector.proxy.gate.apis import (
    ORIG,
    STREAMS,
    Call,
    Event,
    Malformed,
    ResponsesStream,
    body_calls,
    rewrite_body,
    synthetic_body,
)
from collector.proxy.gate.sse import Block, SseSplitter

MAX_JSON_BODY = 64 * 1024 * 1024  # a non-streamed body larger than this cannot be judged (fail closed)


@dataclass
class Decision:
    """One judged tool call (or an unreadable response: `call` None) and what the gate did."""

    call: ToolCall | None
    verdict: Verdict
    streamed: bool


@dataclass
class _Seg:
    start: int
    end: int
    ev: Event


@dataclass
class Pending:
    key: Any
    calls: list[ToolCall]  # every argument text the agent might act on (all are judged)


@dataclass
class _Fit:
    template: list[bytes] = field(default_factory=list)  # rendered with placeholders
    tokens: dict[bytes, tuple[Verdict, ToolCall | None]] = field(default_factory=dict)


class BodyGate:
    def __init__(self, api: str, ctx: Context, *, streamed: bool, model: str | None = None, fit: bool = False,
                 exact: bool = False, messages: bool = False, unjudged: Callable[[str], Verdict] | None = None):
        self.api = api
        self._unjudged = unjudged
        self.ctx = ctx
        self.streamed = streamed
        self.model = model
        self.fit = fit
        self.exact = exact
        self.messages = messages  # WebSocket: units are messages, not bytes
        self.pending: list[Pending] = []
        self.decisions: list[Decision] = []
        self.verdicts: dict[Any, Verdict] = {}
        self.orig_upto = 0
        self.released = 0  # end of the last event released (as it came or rendered)
        self.rewrite_from: int | None = None
        self.ended = False
        self.error: str | None = None  # why the body could not be read
        self._pieces: list[bytes] = []
        self._segs: list[_Seg] = []
        self._failed: str | None = None  # fail() reason: everything unreleased is replaced
        self._terminal_done = False
        self._fit = _Fit() if fit else None
        self.overflow = False  # fit mode: the output could not be made to fit
        self._token_n = 0
        self._json = bytearray()
        self._json_calls: list = []
        self._json_body: Any = None
        self._splitter = SseSplitter() if streamed and not messages else None
        self._msg_index = 0
        self.stream = STREAMS[api](self._complete, model) if streamed else None
        if messages and isinstance(self.stream, ResponsesStream):
            self.stream.sse_framing = False

    # -- input ------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Decoded body bytes (event stream or JSON)."""
        if self.ended or not data:
            return
        if self._splitter is None:
            if len(self._json) + len(data) > MAX_JSON_BODY:
                self._json.clear()
                self._fail_body("the response body is larger than the gate judges")
                return
            self._json += data
            return
        for blk in self._splitter.feed(data):
            self._event(blk)
        self._release()

    def feed_message(self, text: str | bytes) -> None:
        """One WebSocket message (a Responses API event)."""
        if self.ended:
            return
        raw = text.encode() if isinstance(text, str) else text
        i = self._msg_index
        self._msg_index += 1
        self._event(Block(i, i + 1, "message", raw.decode("utf-8", "replace"), raw))
        self._release()

    def finish(self) -> None:
        """The body (or the WebSocket) ended."""
        if self.ended:
            return
        self.ended = True
        if self._splitter is not None:
            blocks, rest = self._splitter.finish()
            for blk in blocks:
                self._event(blk)
            if rest is not None:
                if rest.data is not None:
                    self._event(rest)
                    if not self._failed:
                        self.fail("the event stream ended inside an event")
                else:
                    self._segs.append(_Seg(rest.start, rest.end, Event(None, "message", rest.raw)))
            if self.stream is not None:
                self._safe(self.stream.end)
        elif self.stream is not None:  # messages
            self._safe(self.stream.end)
        else:
            self._json_finish()
        self._release()

    def _safe(self, fn, *a) -> None:  # noqa: ANN001
        try:
            fn(*a)
        except Malformed as exc:
            self.fail(str(exc))

    def _event(self, blk: Block) -> None:
        if self._failed is not None:
            self._segs.append(_Seg(blk.start, blk.end, Event(None, blk.event, blk.raw)))
            return
        if blk.data is None:
            ev = Event(None, blk.event, blk.raw)
        elif blk.data.strip() == "[DONE]":
            ev = Event(None, blk.event, blk.raw, done_marker=True)
        else:
            try:
                obj = json.loads(blk.data)
            except ValueError:
                obj = _BAD
            ev = Event(obj, blk.event, blk.raw)
        seg = _Seg(blk.start, blk.end, ev)
        self._segs.append(seg)
        if ev.obj is _BAD:
            ev.obj = None
            self.fail(f"an event of the {self.api} stream is not JSON")
            return
        try:
            self.stream.on_event(ev)  # type: ignore[union-attr]
        except Malformed as exc:
            self.fail(str(exc))

    def _complete(self, c: Call) -> None:
        assert self.stream is not None
        self.pending.append(Pending(c.key, [self.stream.tool_call(c, t) for t in c.variants()]))

    # -- verdicts ---------------------------------------------------------------------------------
    def resolve(self, key: Any, verdicts: list[Verdict]) -> None:
        """The verdicts of every argument text of the call `key` (the strongest decides)."""
        v = strongest([h for x in verdicts for h in x.hits]) if verdicts else Verdict("allow")
        self.verdicts[key] = v
        self.pending = [p for p in self.pending if p.key != key]
        call = self._call_of(key)
        self.decisions.append(Decision(call, v, self.streamed))
        if v.action == BLOCK:
            if self.stream is not None:
                self.stream.blocked.add(key)
                self.stream.messages[key] = self._message(v, call)
        self._release()
        if self.stream is None and self.ended and not self.pending:
            self._json_render()

    def _call_of(self, key: Any) -> ToolCall | None:
        if self.stream is not None and key in self.stream.calls:
            c = self.stream.calls[key]
            return self.stream.tool_call(c, c.variants()[0])
        for bc in self._json_calls:
            if bc.path == key:
                return bc.call
        return None

    def _message(self, v: Verdict, call: ToolCall | None) -> str:
        if self._fit is None:
            return block_message(v, call, self.ctx.router)
        self._token_n += 1
        token = f"\u27e6rw{secrets.token_hex(6)}.{self._token_n}\u27e7"
        self._fit.tokens[token.encode()] = (v, call)
        return token

    def fail(self, reason: str) -> None:
        """The response cannot be read as its API: under the policy's `unjudged` setting (default:
        block) everything not yet released is replaced by a message and the API's terminal events."""
        if self._failed is not None:
            return
        self.error = reason
        v = self._unjudged(reason) if self._unjudged else Verdict(BLOCK, (Hit(UNPARSEABLE, reason, BLOCK),))
        self.decisions.append(Decision(None, v, self.streamed))
        if v.action != BLOCK:
            return  # let it through (`unjudged: allow`): nothing is rewritten
        self._failed = reason
        self._fail_verdict = v
        self.pending.clear()

    # -- release ----------------------------------------------------------------------------------
    def _release(self) -> None:
        while self._segs:
            seg = self._segs[0]
            if self._failed is None and any(k not in self.verdicts for k in seg.ev.calls):
                return
            self._segs.pop(0)
            self.released = seg.end
            if self._failed is not None:
                rendered: bytes | None = b""
                if not self._terminal_done:
                    self._terminal_done = True
                    assert self.stream is not None
                    rendered = self.stream.terminal(self._message(self._fail_verdict, None))
            else:
                rendered = self.stream.render(seg.ev)  # type: ignore[union-attr]
            if self.rewrite_from is None:
                if rendered is ORIG:
                    self.orig_upto = seg.end
                    continue
                self.rewrite_from = seg.start
            self._emit(seg.ev.raw if rendered is ORIG else rendered, original=rendered is ORIG)

    def _emit(self, data: bytes, original: bool) -> None:
        if not data:
            return
        if self.messages and not original:
            for m in data.split(b"\n"):
                if m:
                    self._put(m)
        else:
            self._put(data)

    def _put(self, piece: bytes) -> None:
        if self._fit is not None:
            self._fit.template.append(piece)
        else:
            self._pieces.append(piece)

    # -- non-streamed JSON ------------------------------------------------------------------------
    def _json_finish(self) -> None:
        raw = bytes(self._json)
        try:
            body = json.loads(raw)
            self._json_calls = body_calls(self.api, body)
        except (ValueError, Malformed) as exc:
            self._fail_body(str(exc) if isinstance(exc, Malformed) else f"the {self.api} response is not JSON")
            return
        self._json_body = body
        for bc in self._json_calls:
            self.pending.append(Pending(bc.path, [bc.call]))
        self._json_render()

    def _json_render(self) -> None:
        if self.pending or self._json_body is None or self.rewrite_from is not None or self.orig_upto:
            return
        blocked = {bc.path: bc for bc in self._json_calls if self.verdicts.get(bc.path, Verdict("allow")).blocked}
        if not blocked:
            self.orig_upto = len(self._json)
            return
        self.rewrite_from = 0
        msgs = {p: self._message(self.verdicts[p], bc.call) for p, bc in blocked.items()}
        self._put(json.dumps(rewrite_body(self.api, self._json_body, msgs), ensure_ascii=False,
                             separators=(",", ":")).encode())

    def _fail_body(self, reason: str) -> None:
        self.fail(reason)
        if self._failed is None:  # unjudged: allow -> the body passes as it came
            self._json_body = None
            self.orig_upto = len(self._json)
            return
        self.rewrite_from = 0
        self._put(json.dumps(synthetic_body(self.api, self._message(self._fail_verdict, None), self.model),
                             ensure_ascii=False, separators=(",", ":")).encode())

    # -- output -----------------------------------------------------------------------------------
    @property
    def settled(self) -> bool:
        """Ended, judged and released: nothing more will come out."""
        return self.ended and not self.pending and not self._segs

    def take(self, room: int | None = None) -> list[bytes]:
        """Generated pieces not taken yet. In `fit` mode they come only once settled, shortened to fit
        `room` bytes (padded to exactly `room` when `exact`); [] with `overflow` set if they cannot."""
        if self._fit is None:
            out, self._pieces = self._pieces, []
            return out
        if not self.settled or not self._fit.template:
            return []
        out = self.render_fit(room)
        self._fit.template = []
        return out

    def render_fit(self, room: int | None) -> list[bytes]:
        """The fit-mode output with messages as long as `room` allows (None: full messages)."""
        assert self._fit is not None
        self.overflow = False
        body = b"".join(self._fit.template)
        tokens = self._fit.tokens
        counts = {t: body.count(t) for t in tokens}
        fixed = len(body) - sum(len(t) * n for t, n in counts.items())

        def render(limit: int | None) -> bytes:
            out = body
            for t, (v, call) in tokens.items():
                msg = block_message(v, call, self.ctx.router, limit)
                out = out.replace(t, json.dumps(msg, ensure_ascii=False)[1:-1].encode())
            return out

        out = render(None)
        if room is not None and len(out) > room:
            lo, hi, best = 0, max(len(block_message(v, c, self.ctx.router)) for v, c in tokens.values()), None
            while lo <= hi:  # the longest message limit that fits
                mid = (lo + hi) // 2
                cand = render(mid)
                if len(cand) <= room:
                    best, lo = cand, mid + 1
                else:
                    hi = mid - 1
            if best is None or fixed > room:
                self.overflow = True
                return []
            out = best
        if room is not None and self.exact and len(out) < room:
            out += _pad(room - len(out), sse=self._splitter is not None)
        return [out]


_BAD = object()


def _pad(n: int, sse: bool) -> bytes:
    """n bytes a reader ignores: JSON whitespace after the value, or an SSE comment line."""
    if not sse:
        return b" " * n
    return b"\n" if n == 1 else b":" + b" " * (n - 2) + b"\n"
