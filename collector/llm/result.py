"""What an LLM decoder extracts from one exchange (provider-neutral)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec


@dataclass
class ToolCall:
    idx: int
    name: str | None
    arguments: str  # exactly as the client assembled it (raw, NOT yet redacted)
    call_id: str | None = None
    direction: str = "response"  # 'response' (the model asks) | 'request' (history the agent resent)


@dataclass
class LlmResult:
    api: str
    model_requested: str | None = None
    model_returned: str | None = None
    streamed: bool = False
    input_tokens: int | None = None
    output_tokens: int | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    text: str | None = None  # assembled assistant text of a streamed response (stored redacted, capped)
    stream: dict[str, Any] | None = None  # per-stream summary for stream-integrity rules
    errors: list[str] = field(default_factory=list)  # 'invalid_json_request', ...
    truncated: bool = False  # the response ended before its final event


_fast_decode = msgspec.json.Decoder().decode
_fast_encode = msgspec.json.Encoder().encode
_slow_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def loads(data: bytes | str) -> Any:
    """json.loads that returns None on invalid input (LLM bodies are untrusted). msgspec's C decoder
    first (~3x json's on LLM bodies): what it accepts decodes to what json.loads returns (integers of
    any size stay exact ints); what it refuses and json.loads may take (NaN/Infinity, lone surrogate
    escapes such as half an emoji in one stream delta, a BOM, numbers beyond float range, UTF-16)
    goes to json's own decoder, so the result is always json.loads's."""
    try:
        return _fast_decode(data)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        pass
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def dumps(value: Any) -> str:
    """Compact JSON text (UTF-8 kept, no ASCII escaping) for the store's JSON columns. msgspec's encoder
    (~4x json's); a value it refuses (a lone surrogate) goes to json's with the same separators."""
    try:
        return _fast_encode(value).decode()
    except (msgspec.MsgspecError, TypeError, ValueError):
        return _slow_encode(value)


_SURROGATE = re.compile("[\ud800-\udfff]")


def fix_surrogates(s: str) -> str:
    """Join UTF-16 surrogate halves that arrived in separate JSON fragments (an emoji's `\\ud83d` in one
    delta and `\\ude80` in the next), so concatenated arguments equal what the client decoded."""
    if _SURROGATE.search(s):
        return s.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return s


def as_int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def as_list(v: Any) -> list:
    """A JSON array, or [] for anything else (untrusted bodies put anything anywhere)."""
    return v if isinstance(v, list) else []


def as_str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def new_stream_summary() -> dict[str, Any]:
    return {
        "events": 0,
        "types": {},
        "invalid_json": 0,
        "done": False,  # the provider's terminal event ([DONE], message_stop, response.completed)
        "after_done": 0,
        "models": [],
        "ids": [],
        "incomplete_last_event": False,
        "first_ms": None,
        "last_ms": None,
        "anomalies": [],
    }


def start_stream(res: LlmResult) -> dict[str, Any]:
    """Mark `res` streamed and attach a fresh stream summary."""
    res.streamed = True
    res.stream = new_stream_summary()
    return res.stream


def json_events(
    summary: dict[str, Any], events: Iterable[Any], t0: float | None, *, done_marker: bool = True,
    stop_at_done: bool = True,
) -> Iterator[tuple[Any, dict]]:
    """The part every stream decoder shares: stamp each event (count, first and last time, an
    incomplete last event), count and skip events after the terminal one (a decoder sets
    summary['done']; Gemini's `finishReason` is not terminal: `stop_at_done=False` reads on), honour
    `data: [DONE]`, count and skip invalid JSON. Yields (event, parsed object) for the decoder's own
    logic. One loop, no per-event helper call: it runs once per streamed event."""
    for ev in events:
        summary["events"] += 1
        if ev.ts is not None and t0 is not None:
            ms = round((ev.ts - t0) * 1000, 3)
            if summary["first_ms"] is None:
                summary["first_ms"] = ms
            summary["last_ms"] = ms
        if not ev.complete:
            summary["incomplete_last_event"] = True
        if summary["done"] and stop_at_done:
            summary["after_done"] += 1
            continue
        data = ev.data
        if done_marker and data[:1] != "{" and data.strip() == "[DONE]":
            summary["done"] = True
            continue
        obj = loads(data)
        if not isinstance(obj, dict):
            summary["invalid_json"] += 1
            continue
        yield ev, obj


def note(summary: dict[str, Any], key: str, value: Any) -> None:
    if value is not None and value not in summary[key] and len(summary[key]) < 16:
        summary[key].append(value)


def note_message(res: LlmResult, summary: dict[str, Any], message: dict) -> None:
    """The model and id a stream's message object names (Anthropic's `message_start.message`, the
    Responses API's `response`): the first model is the one returned; both go into the summary."""
    model = as_str(message.get("model"))
    if model:
        res.model_returned = res.model_returned or model
        note(summary, "models", model)
    note(summary, "ids", as_str(message.get("id")))


def message_items(req: Any, key: str) -> Iterator[Any]:
    """Each element of the `messages[*].<key>` lists of a request: the history an agent resends."""
    if isinstance(req, dict):
        for m in as_list(req.get("messages")):
            if isinstance(m, dict):
                yield from as_list(m.get(key))


@dataclass(frozen=True)
class ApiDecoder:
    """The shape every JSON-over-HTTP LLM API decoder shares; an API supplies its three parts.

    Calling it with (request JSON, response body, SSE events or None, request time) returns the
    LlmResult: model requested and `stream` flag from the request, the tool calls the agent resent in
    it, then either the stream (a fresh summary; `truncated` when the provider's terminal event never
    came) or the JSON body (its `model`; `invalid_json_response` when it is not an object)."""

    api: str
    request_tool_calls: Callable[[Any], list[ToolCall]]
    body: Callable[[LlmResult, dict], None]  # usage, tool calls and text of a non-streamed response
    stream: Callable[[LlmResult, dict[str, Any], list[Any], float | None], None]  # (res, summary, events, t0)

    def __call__(self, req: Any, resp_body: bytes | None, events: list[Any] | None, t0: float | None) -> LlmResult:
        res = LlmResult(self.api)
        if isinstance(req, dict):
            res.model_requested = as_str(req.get("model"))
            res.streamed = req.get("stream") is True
        res.tool_calls = self.request_tool_calls(req)
        if events is not None:
            summary = start_stream(res)
            self.stream(res, summary, events, t0)
            if not summary["done"]:
                res.truncated = True
        elif resp_body:
            body = loads(resp_body)
            if not isinstance(body, dict):
                res.errors.append("invalid_json_response")
                return res
            res.model_returned = as_str(body.get("model"))
            self.body(res, body)
        return res
