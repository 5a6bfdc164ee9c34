"""What each LLM API's response looks like to the gate: which streamed events belong to which tool
call, when a call is complete, and how a response is rewritten once some calls are blocked.

Three APIs (OpenAI Chat Completions, the OpenAI Responses API, Anthropic Messages), each streamed
(server-sent events, or for the Responses API also WebSocket messages: the same JSON events) and
not (one JSON body). A blocked call is replaced *in the response's own format* by a text part saying
why, so the agent reads it as the model's answer and tells its user: Anthropic gets a text block at
the tool block's index (and `stop_reason` `end_turn` when no tool call is left), Chat Completions a
content delta (and `finish_reason` `stop`), the Responses API an assistant message item at the
function call's output index.

Sans-IO and stateful per response: `on_event` is called in stream order at parse time (it may say a
call is complete, which the gate then judges), `render` in the same order at release time, when the
verdicts of every call so far are known.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from collector.policy.model import ToolCall

TOOL_APIS = ("openai.chat", "openai.responses", "anthropic.messages")
ORIG = None  # render(): pass the event's original bytes


class Malformed(Exception):
    """A response the gate cannot read as its API (its reason says why, without secrets)."""


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def sse(data: str, event: str | None = None) -> bytes:
    return (f"event: {event}\n" if event else "").encode() + f"data: {data}\n\n".encode()


@dataclass
class Event:
    """One streamed event: its JSON (None for a comment/keep-alive or a `[DONE]`) and the calls it carries."""

    obj: Any
    event: str  # the SSE event name ('message' when none)
    raw: bytes
    done_marker: bool = False  # chat's `data: [DONE]`
    calls: set = field(default_factory=set)  # keys of the tool calls this event belongs to


@dataclass
class Call:
    key: Any
    first: Event | None = None  # the event that opens it (its replacement goes there)
    name: str | None = None
    call_id: str | None = None
    parts: list[str] = field(default_factory=list)
    final: str | None = None
    extra: list[str] = field(default_factory=list)  # other argument texts the agent might act on
    complete: bool = False
    index: int = 0
    events: int = 0
    item: dict | None = None  # Responses: the item as last seen (output_item.done)

    def variants(self) -> list[str]:
        joined = "".join(self.parts)
        texts = [self.final if self.final is not None else joined]
        if self.parts and self.final is not None and joined != self.final:
            texts.append(joined)
        texts += self.extra
        return list(dict.fromkeys(t for t in texts))


class StreamApi:
    """Base: subclasses know one API. `complete(call)` is how they report a finished call."""

    api = ""

    def __init__(self, complete: Callable[[Call], None]):
        self.complete = complete
        self.calls: dict[Any, Call] = {}
        self.blocked: set = set()  # keys the gate blocked (set before render)
        self.messages: dict[Any, str] = {}  # key -> the text that replaces it

    def tool_call(self, c: Call, text: str) -> ToolCall:
        return ToolCall(c.name, text, self.api, c.call_id, c.index)

    def on_event(self, ev: Event) -> None:
        raise NotImplementedError

    def end(self) -> None:
        """The body ended: calls still open are complete now (judged on what arrived)."""
        for c in self.calls.values():
            if not c.complete:
                c.complete = True
                self.complete(c)

    def render(self, ev: Event) -> bytes | None:
        raise NotImplementedError

    def terminal(self, message: str) -> bytes:
        """Events that end the response with `message` as the model's text (unparseable input, a call
        still open when the gate gives up)."""
        raise NotImplementedError

    def _new_call(self, key: Any, ev: Event) -> Call:
        if key in self.calls:
            raise Malformed("a tool call was opened twice")
        c = Call(key, ev, index=len(self.calls))
        self.calls[key] = c
        ev.calls.add(key)
        c.events += 1
        return c

    def _of(self, key: Any, ev: Event, what: str) -> Call:
        c = self.calls.get(key)
        if c is None:
            raise Malformed(f"{what} for a tool call that was never opened")
        if c.complete:
            raise Malformed(f"{what} after the tool call was complete")
        ev.calls.add(key)
        c.events += 1
        return c


def _json(ev: Event) -> dict:
    if not isinstance(ev.obj, dict):
        raise Malformed(f"event {ev.event!r} is not a JSON object")
    return ev.obj


# -- Anthropic Messages -----------------------------------------------------------------------------
_STOP_TOOL_USE = re.compile(rb'("stop_reason"\s*:\s*)"tool_use"')


class AnthropicStream(StreamApi):
    api = "anthropic.messages"

    def __init__(self, complete: Callable[[Call], None], model: str | None = None):
        super().__init__(complete)
        self.model = model
        self.open_rendered: set[int] = set()  # blocks whose start the agent got and whose stop not yet
        self.max_index = -1
        self.started = False  # message_start rendered
        self.tool_blocks: set[int] = set()

    def on_event(self, ev: Event) -> None:
        if ev.obj is None:
            return
        o = _json(ev)
        typ = o.get("type") if isinstance(o.get("type"), str) else ev.event
        idx = o.get("index")
        if typ == "content_block_start":
            cb = o.get("content_block")
            if not isinstance(cb, dict) or not isinstance(idx, int):
                raise Malformed("content_block_start without a block or an index")
            if cb.get("type") == "tool_use":
                c = self._new_call(idx, ev)
                c.name = cb.get("name") if isinstance(cb.get("name"), str) else None
                c.call_id = cb.get("id") if isinstance(cb.get("id"), str) else None
                if cb.get("input") not in (None, {}):
                    c.extra.append(dumps(cb.get("input")))
                self.tool_blocks.add(idx)
        elif typ == "content_block_delta":
            d = o.get("delta")
            if idx in self.calls:
                c = self._of(idx, ev, "an input delta")
                if not isinstance(d, dict) or d.get("type") != "input_json_delta" or not isinstance(d.get("partial_json"), str):
                    raise Malformed("a tool_use block got a delta that is not input_json_delta")
                c.parts.append(d["partial_json"])
            elif isinstance(d, dict) and d.get("type") == "input_json_delta":
                raise Malformed("an input_json_delta outside a tool_use block")
        elif typ == "content_block_stop" and idx in self.calls:
            c = self._of(idx, ev, "content_block_stop")
            if not c.parts and not c.extra:
                c.final = "{}"
            c.complete = True
            self.complete(c)

    def end(self) -> None:
        for c in self.calls.values():
            if not c.complete and not c.parts and not c.extra:
                c.final = "{}"
        super().end()

    def _kept_tool_use(self) -> bool:
        return any(k not in self.blocked for k in self.calls)

    def render(self, ev: Event) -> bytes | None:
        o = ev.obj if isinstance(ev.obj, dict) else {}
        typ = o.get("type")
        for key in ev.calls & self.blocked:
            c = self.calls[key]
            return self.text_block(key, self.messages[key]) if c.first is ev else b""
        if typ == "message_start":
            self.started = True
        elif typ == "content_block_start" and isinstance(o.get("index"), int):
            self.open_rendered.add(o["index"])
            self.max_index = max(self.max_index, o["index"])
        elif typ == "content_block_stop" and isinstance(o.get("index"), int):
            self.open_rendered.discard(o["index"])
        elif typ == "message_delta" and self.blocked and not self._kept_tool_use():
            return _STOP_TOOL_USE.sub(rb'\1"end_turn"', ev.raw)
        return ORIG

    def text_block(self, index: int, text: str) -> bytes:
        self.max_index = max(self.max_index, index)
        return (sse(dumps({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
                    "content_block_start")
                + sse(dumps({"type": "content_block_delta", "index": index,
                             "delta": {"type": "text_delta", "text": text}}), "content_block_delta")
                + sse(dumps({"type": "content_block_stop", "index": index}), "content_block_stop"))

    def terminal(self, message: str) -> bytes:
        out = b""
        if not self.started:
            self.started = True
            out += sse(dumps({"type": "message_start", "message": {
                "id": "msg_routerwatch_gate", "type": "message", "role": "assistant", "model": self.model or "unknown",
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0}}}), "message_start")
        for i in sorted(self.open_rendered):
            out += sse(dumps({"type": "content_block_stop", "index": i}), "content_block_stop")
        self.open_rendered.clear()
        out += self.text_block(self.max_index + 1, message)
        out += sse(dumps({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                          "usage": {"output_tokens": 0}}), "message_delta")
        out += sse(dumps({"type": "message_stop"}), "message_stop")
        return out


# -- OpenAI Chat Completions ------------------------------------------------------------------------
class ChatStream(StreamApi):
    api = "openai.chat"

    def __init__(self, complete: Callable[[Call], None], model: str | None = None):
        super().__init__(complete)
        self.model = model
        self.finished: set[int] = set()  # choices whose finish_reason arrived
        self.base: dict[str, Any] = {}  # id/object/created/model of the chunks, for terminal()
        self.done = False

    def on_event(self, ev: Event) -> None:
        if ev.done_marker:
            self.done = True
            self._complete_choices(None)
            return
        if ev.obj is None:
            return
        o = _json(ev)
        if not self.base:
            self.base = {k: o[k] for k in ("id", "object", "created", "model") if k in o}
        choices = o.get("choices")
        if choices is None:
            return
        if not isinstance(choices, list):
            raise Malformed("choices is not a list")
        for ch in choices:
            if not isinstance(ch, dict):
                raise Malformed("a choice is not an object")
            ci = ch.get("index", 0)
            if not isinstance(ci, int):
                raise Malformed("a choice index is not a number")
            delta = ch.get("delta") or {}
            tcs = delta.get("tool_calls") if isinstance(delta, dict) else None
            if tcs is not None:
                if not isinstance(tcs, list):
                    raise Malformed("tool_calls is not a list")
                if ci in self.finished:
                    raise Malformed("a tool call delta after the choice's finish_reason")
                for pos, tc in enumerate(tcs):
                    if not isinstance(tc, dict):
                        raise Malformed("a tool call delta is not an object")
                    ti = tc.get("index", pos)
                    if not isinstance(ti, int):
                        raise Malformed("a tool call index is not a number")
                    key = (ci, ti)
                    c = self.calls.get(key)
                    if c is None:
                        c = self._new_call(key, ev)
                    elif key not in ev.calls:  # a later chunk of the call (one chunk may name it twice)
                        self._of(key, ev, "a tool call delta")
                    if isinstance(tc.get("id"), str) and tc["id"]:
                        c.call_id = (c.call_id or "") + tc["id"]
                    fn = tc.get("function")
                    if isinstance(fn, dict):
                        if isinstance(fn.get("name"), str) and fn["name"]:
                            c.name = (c.name or "") + fn["name"]
                        if isinstance(fn.get("arguments"), str):
                            c.parts.append(fn["arguments"])
            if ch.get("finish_reason"):
                self._complete_choices(ci)

    def _complete_choices(self, ci: int | None) -> None:
        if ci is not None:
            self.finished.add(ci)
        for key, c in self.calls.items():
            if not c.complete and (ci is None or key[0] == ci):
                c.complete = True
                self.complete(c)

    def render(self, ev: Event) -> bytes | None:
        if ev.obj is None or not isinstance(ev.obj, dict):
            return ORIG
        blocked_here = ev.calls & self.blocked
        choices = ev.obj.get("choices")
        finishing = isinstance(choices, list) and any(
            isinstance(ch, dict) and ch.get("finish_reason") == "tool_calls" and self._all_blocked(ch.get("index", 0))
            for ch in choices)
        if not blocked_here and not finishing and not self._renumber_needed(ev):
            return ORIG
        o = json.loads(json.dumps(ev.obj))  # a copy to edit
        only_tool_deltas = True
        for ch in o.get("choices") or []:
            ci = ch.get("index", 0)
            delta = ch.get("delta") if isinstance(ch.get("delta"), dict) else {}
            if set(delta) - {"tool_calls"} or ch.get("finish_reason"):
                only_tool_deltas = False
            kept = []
            for pos, tc in enumerate(delta.get("tool_calls") or []):
                key = (ci, tc.get("index", pos))
                if key in self.blocked:
                    c = self.calls[key]
                    if c.first is ev:
                        msg = self.messages[key]
                        prev = delta.get("content")
                        delta["content"] = (prev + "\n" if isinstance(prev, str) and prev else "") + msg
                        only_tool_deltas = False
                    continue
                tc = dict(tc)
                tc["index"] = key[1] - sum(1 for b in self.blocked if b[0] == ci and b[1] < key[1])
                kept.append(tc)
            if "tool_calls" in delta:
                if kept:
                    delta["tool_calls"] = kept
                    only_tool_deltas = False
                else:
                    del delta["tool_calls"]
            if ch.get("finish_reason") == "tool_calls" and self._all_blocked(ci):
                ch["finish_reason"] = "stop"
        if only_tool_deltas and blocked_here:
            return b""
        return sse(dumps(o), None if ev.event == "message" else ev.event)

    def _all_blocked(self, ci: int) -> bool:
        keys = [k for k in self.calls if k[0] == ci]
        return bool(keys) and all(k in self.blocked for k in keys)

    def _renumber_needed(self, ev: Event) -> bool:
        return any(any(b[0] == k[0] and b[1] < k[1] for b in self.blocked) for k in ev.calls)

    def terminal(self, message: str) -> bytes:
        base = {"id": "chatcmpl-routerwatch-gate", "object": "chat.completion.chunk", "created": 0,
                "model": self.model or "unknown", **self.base}
        out = sse(dumps({**base, "choices": [{"index": 0, "delta": {"content": message}, "finish_reason": None}]}))
        out += sse(dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        if not self.done:
            out += b"data: [DONE]\n\n"
        return out


# -- OpenAI Responses API ---------------------------------------------------------------------------
TOOL_ITEMS = {"function_call": "arguments", "custom_tool_call": "input", "local_shell_call": "action"}
_ARG_DELTAS = {"response.function_call_arguments.delta", "response.custom_tool_call_input.delta"}
_ARG_DONE = {"response.function_call_arguments.done": "arguments", "response.custom_tool_call_input.done": "input"}
_FINAL = {"response.completed", "response.incomplete", "response.failed", "response.done"}


def item_arguments(item: dict) -> str | None:
    field_ = TOOL_ITEMS.get(item.get("type", ""))
    if field_ is None:
        return None
    v = item.get(field_)
    return v if isinstance(v, str) else dumps(v if v is not None else {})


def message_item(item_id: str, text: str, done: bool = True) -> dict:
    """An assistant message item (only the fields clients need: it may have to fit where a call was)."""
    if not done:
        return {"id": item_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    return {"id": item_id, "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}


class ResponsesStream(StreamApi):
    api = "openai.responses"

    def __init__(self, complete: Callable[[Call], None], model: str | None = None, sse_framing: bool = True):
        super().__init__(complete)
        self.model = model
        self.sse_framing = sse_framing  # False: WebSocket messages (one JSON event each)
        self.last_seq = -1
        self.max_output = -1
        self.response: dict = {}
        self.final_seen = False

    def frame(self, obj: dict) -> bytes:
        """One event: an SSE block, or (WebSocket) a line the body gate cuts into one message each
        (compact JSON holds no raw newline)."""
        text = dumps(obj)
        return sse(text, obj.get("type")) if self.sse_framing else text.encode() + b"\n"

    def on_event(self, ev: Event) -> None:
        if ev.obj is None:
            return
        o = _json(ev)
        typ = o.get("type") if isinstance(o.get("type"), str) else ev.event
        if isinstance(o.get("sequence_number"), int):
            self.last_seq = max(self.last_seq, o["sequence_number"])
        if isinstance(o.get("response"), dict):
            self.response = {k: o["response"][k] for k in ("id", "object", "created_at", "model") if k in o["response"]}
        oi = o.get("output_index")
        if isinstance(oi, int):
            self.max_output = max(self.max_output, oi)
        if typ in ("response.output_item.added", "response.output_item.done"):
            item = o.get("item")
            if not isinstance(item, dict) or not isinstance(oi, int):
                raise Malformed(f"{typ} without an item or an output_index")
            if item.get("type") in TOOL_ITEMS:
                key = ("item", oi)
                c = self.calls.get(key) if typ.endswith("done") else None
                if c is None and typ.endswith("added"):
                    c = self._new_call(key, ev)
                elif c is None:  # a tool item that was never announced: judged on its own
                    c = self._new_call(key, ev)
                else:
                    self._of(key, ev, "output_item.done")
                c.name = item.get("name") if isinstance(item.get("name"), str) else c.name
                c.call_id = item.get("call_id") if isinstance(item.get("call_id"), str) else c.call_id
                c.item = item
                if typ.endswith("done"):
                    c.final = item_arguments(item)
                    c.complete = True
                    self.complete(c)
                elif item_arguments(item) not in (None, "", "{}"):
                    c.extra.append(item_arguments(item) or "")
            elif ("item", oi) in self.calls and typ.endswith("done"):
                raise Malformed("an output index changed from a tool call to another item")
        elif typ in _ARG_DELTAS or typ in _ARG_DONE:
            if not isinstance(oi, int):
                raise Malformed(f"{typ} without an output_index")
            c = self._of(("item", oi), ev, typ)
            if typ in _ARG_DELTAS:
                if not isinstance(o.get("delta"), str):
                    raise Malformed(f"{typ} without a string delta")
                c.parts.append(o["delta"])
            else:
                v = o.get(_ARG_DONE[typ])
                if isinstance(v, str):
                    c.extra.append(v)
        elif typ in _FINAL:
            self.final_seen = True
            resp = o.get("response")
            output = resp.get("output") if isinstance(resp, dict) else None
            for i, item in enumerate(output if isinstance(output, list) else []):
                if isinstance(item, dict) and item.get("type") in TOOL_ITEMS:
                    if any(s.item and s.item.get("id") == item.get("id") and s.final == item_arguments(item)
                           for k, s in self.calls.items() if k[0] == "item"):
                        continue  # the streamed call again, as judged
                    c = self._new_call(("final", i), ev)
                    c.name = item.get("name") if isinstance(item.get("name"), str) else None
                    c.call_id = item.get("call_id") if isinstance(item.get("call_id"), str) else None
                    c.final = item_arguments(item)
                    c.item = item
                    c.complete = True
                    self.complete(c)

    def _final_blocked(self, i: int, item: dict) -> bool:
        """Is item i of the final response blocked, directly or as the streamed call with its id?"""
        if ("final", i) in self.blocked:
            return True
        return any(k[0] == "item" and (c.item or {}).get("id") == item.get("id") and (c.item or {}).get("id")
                   for k, c in self.calls.items() if k in self.blocked)

    def render(self, ev: Event) -> bytes | None:
        o = ev.obj if isinstance(ev.obj, dict) else None
        if o is None:
            return ORIG
        for key in sorted(ev.calls & self.blocked, key=str):
            if key[0] != "item":
                continue
            c = self.calls[key]
            return self.replacement(key[1], (c.item or {}).get("id") or f"msg_routerwatch_{key[1]}", self.messages[key],
                                    o.get("sequence_number")) if c.first is ev else b""
        if o.get("type") in _FINAL and self.blocked:
            resp = o.get("response")
            output = resp.get("output") if isinstance(resp, dict) else None
            if isinstance(output, list) and any(isinstance(it, dict) and it.get("type") in TOOL_ITEMS
                                                and self._final_blocked(i, it) for i, it in enumerate(output)):
                o = json.loads(json.dumps(o))
                new = []
                for i, it in enumerate(o["response"]["output"]):
                    if isinstance(it, dict) and it.get("type") in TOOL_ITEMS and self._final_blocked(i, it):
                        msg = self.messages.get(("final", i)) or next(
                            (self.messages[k] for k, c in self.calls.items()
                             if k in self.blocked and (c.item or {}).get("id") == it.get("id")), "routerwatch blocked a tool call")
                        new.append(message_item(it.get("id") or f"msg_routerwatch_{i}", msg))
                    else:
                        new.append(it)
                o["response"]["output"] = new
                return self.frame(o)
        return ORIG

    def replacement(self, oi: int, item_id: str, text: str, seq: int | None) -> bytes:
        def ev(obj: dict) -> bytes:
            nonlocal seq
            if seq is not None:
                obj = {**obj, "sequence_number": seq}
                seq += 1
            return self.frame(obj)

        part = {"type": "output_text", "text": "", "annotations": []}
        where = {"item_id": item_id, "output_index": oi, "content_index": 0}
        return (ev({"type": "response.output_item.added", "output_index": oi, "item": message_item(item_id, "", False)})
                + ev({"type": "response.content_part.added", **where, "part": part})
                + ev({"type": "response.output_text.delta", **where, "delta": text})
                + ev({"type": "response.output_text.done", **where, "text": text})
                + ev({"type": "response.content_part.done", **where, "part": {**part, "text": text}})
                + ev({"type": "response.output_item.done", "output_index": oi, "item": message_item(item_id, text)}))

    def terminal(self, message: str) -> bytes:
        oi = self.max_output + 1
        item_id = f"msg_routerwatch_gate_{oi}"
        seq = self.last_seq + 1
        out = self.replacement(oi, item_id, message, seq)
        if not self.final_seen:
            resp = {"id": "resp_routerwatch_gate", "object": "response", "model": self.model or "unknown", **self.response,
                    "status": "completed", "output": [message_item(item_id, message)]}
            out += self.frame({"type": "response.completed", "sequence_number": seq + 6, "response": resp})
        return out


STREAMS: dict[str, type[StreamApi]] = {
    "anthropic.messages": AnthropicStream, "openai.chat": ChatStream, "openai.responses": ResponsesStream,
}


# -- non-streamed bodies ----------------------------------------------------------------------------
@dataclass
class BodyCall:
    path: tuple  # where the call sits in the body
    call: ToolCall


def body_calls(api: str, body: Any) -> list[BodyCall]:
    """Tool calls of a complete JSON response; Malformed when the body is not the API's shape."""
    if not isinstance(body, dict):
        raise Malformed("the response body is not a JSON object")
    out: list[BodyCall] = []
    if api == "openai.chat":
        choices = body.get("choices")
        if not isinstance(choices, list):
            raise Malformed("no choices list")
        for ci, ch in enumerate(choices):
            msg = ch.get("message") if isinstance(ch, dict) else None
            tcs = msg.get("tool_calls") if isinstance(msg, dict) else None
            if tcs is None:
                continue
            if not isinstance(tcs, list):
                raise Malformed("tool_calls is not a list")
            for ti, tc in enumerate(tcs):
                fn = tc.get("function") if isinstance(tc, dict) else None
                if not isinstance(fn, dict):
                    raise Malformed("a tool call without a function")
                args = fn.get("arguments")
                out.append(BodyCall((ci, ti), ToolCall(fn.get("name") if isinstance(fn.get("name"), str) else None,
                                                        args if isinstance(args, str) else dumps(args), api,
                                                        tc.get("id"), len(out))))
    elif api == "openai.responses":
        output = body.get("output")
        if not isinstance(output, list):
            raise Malformed("no output list")
        for i, item in enumerate(output):
            if isinstance(item, dict) and item.get("type") in TOOL_ITEMS:
                out.append(BodyCall((i,), ToolCall(item.get("name"), item_arguments(item) or "", api,
                                                   item.get("call_id"), len(out))))
    elif api == "anthropic.messages":
        content = body.get("content")
        if not isinstance(content, list):
            raise Malformed("no content list")
        for i, block in enumerate(content):
            if isinstance(block, dict) and block.get("type") == "tool_use":
                out.append(BodyCall((i,), ToolCall(block.get("name"), dumps(block.get("input", {})), api,
                                                   block.get("id"), len(out))))
    return out


def rewrite_body(api: str, body: dict, blocked: dict[tuple, str]) -> dict:
    """`body` with the calls at the `blocked` paths replaced by their messages (a copy)."""
    o = json.loads(json.dumps(body))
    if api == "openai.chat":
        for ci, ch in enumerate(o["choices"]):
            msg = ch.get("message") if isinstance(ch, dict) else None
            if not isinstance(msg, dict) or not isinstance(msg.get("tool_calls"), list):
                continue
            texts = [blocked[(ci, ti)] for ti in range(len(msg["tool_calls"])) if (ci, ti) in blocked]
            if not texts:
                continue
            kept = [tc for ti, tc in enumerate(msg["tool_calls"]) if (ci, ti) not in blocked]
            prev = msg.get("content")
            msg["content"] = "\n".join(([prev] if isinstance(prev, str) and prev else []) + texts)
            if kept:
                msg["tool_calls"] = kept
            else:
                del msg["tool_calls"]
                if ch.get("finish_reason") == "tool_calls":
                    ch["finish_reason"] = "stop"
    elif api == "openai.responses":
        for (i,), text in blocked.items():
            item = o["output"][i]
            o["output"][i] = message_item(item.get("id") or f"msg_routerwatch_{i}", text)
    elif api == "anthropic.messages":
        for (i,), text in blocked.items():
            o["content"][i] = {"type": "text", "text": text}
        if not any(isinstance(b, dict) and b.get("type") == "tool_use" for b in o["content"]) \
                and o.get("stop_reason") == "tool_use":
            o["stop_reason"] = "end_turn"
    return o


def synthetic_body(api: str, message: str, model: str | None) -> dict:
    """A complete response of `api` whose only content is `message` (for a body the gate cannot read)."""
    model = model or "unknown"
    if api == "openai.chat":
        return {"id": "chatcmpl-routerwatch-gate", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": message}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}
    if api == "openai.responses":
        return {"id": "resp_routerwatch_gate", "object": "response", "status": "completed", "model": model,
                "output": [message_item("msg_routerwatch_gate", message)]}
    return {"id": "msg_routerwatch_gate", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": message}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0}}
