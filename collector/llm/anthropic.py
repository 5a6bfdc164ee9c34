"""Anthropic Messages API: models (the streamed `message_start` model too), usage, tool calls.

A streamed tool call's arguments are the concatenation of its `input_json_delta.partial_json`
pieces in arrival order (byte-exact, what the SDK parses); a non-streamed `tool_use.input` object is
serialised with `json.dumps(..., ensure_ascii=False)`, the spacing Anthropic's stream uses.
"""

from __future__ import annotations

import json
from typing import Any

from collector.llm.result import (
    ApiDecoder,
    LlmResult,
    ToolCall,
    as_int,
    as_list,
    as_str,
    fix_surrogates,
    json_events,
    message_items,
    note_message,
)
from collector.protocols.sse import SseEvent


def _dump(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)


def request_tool_calls(req: Any) -> list[ToolCall]:
    out: list[ToolCall] = []
    for block in message_items(req, "content"):
        if isinstance(block, dict) and block.get("type") == "tool_use":
            out.append(ToolCall(len(out), as_str(block.get("name")), _dump(block.get("input", {})),
                                as_str(block.get("id")), "request"))
    return out


def _usage(res: LlmResult, usage: Any) -> None:
    if isinstance(usage, dict):
        if as_int(usage.get("input_tokens")) is not None:
            res.input_tokens = usage["input_tokens"]
        if as_int(usage.get("output_tokens")) is not None:
            res.output_tokens = usage["output_tokens"]


def _body(res: LlmResult, body: dict) -> None:
    _usage(res, body.get("usage"))
    n = 0
    for block in as_list(body.get("content")):
        if isinstance(block, dict) and block.get("type") in ("tool_use", "server_tool_use"):
            res.tool_calls.append(ToolCall(n, as_str(block.get("name")), _dump(block.get("input", {})),
                                           as_str(block.get("id"))))
            n += 1


def _stream(res: LlmResult, s: dict[str, Any], events: list[SseEvent], t0: float | None) -> None:
    blocks: dict[int, dict] = {}
    text: list[str] = []
    for ev, e in json_events(s, events, t0, done_marker=False):
        typ = as_str(e.get("type")) or ev.event
        s["types"][typ] = s["types"].get(typ, 0) + 1
        if typ == "message_start":
            msg = e.get("message")
            if isinstance(msg, dict):
                note_message(res, s, msg)
                _usage(res, msg.get("usage"))
        elif typ == "content_block_start":
            cb = e.get("content_block")
            idx = as_int(e.get("index"))
            if isinstance(cb, dict) and idx is not None:
                blocks[idx] = {"type": cb.get("type"), "name": as_str(cb.get("name")), "id": as_str(cb.get("id")),
                               "input": cb.get("input"), "parts": []}
        elif typ == "content_block_delta":
            d = e.get("delta")
            idx = as_int(e.get("index"))
            if not isinstance(d, dict):
                continue
            if d.get("type") == "input_json_delta" and isinstance(d.get("partial_json"), str):
                b = blocks.setdefault(idx if idx is not None else -1,
                                      {"type": "tool_use", "name": None, "id": None, "input": None, "parts": []})
                b["parts"].append(d["partial_json"])
                if b["type"] not in ("tool_use", "server_tool_use"):
                    s["anomalies"].append("input_json_delta_on_non_tool_block")
            elif d.get("type") == "text_delta" and isinstance(d.get("text"), str) and len(text) < 100_000:
                text.append(d["text"])
        elif typ == "message_delta":
            _usage(res, e.get("usage"))
            delta = e.get("delta")
            if isinstance(delta, dict) and as_str(delta.get("stop_reason")):
                s.setdefault("finish_reasons", []).append(delta["stop_reason"])
        elif typ == "message_stop":
            s["done"] = True
        elif typ == "error":
            s["anomalies"].append("error_event")
    res.text = "".join(text)
    n = 0
    for idx in sorted(blocks):
        b = blocks[idx]
        if b["type"] not in ("tool_use", "server_tool_use") and not b["parts"]:
            continue
        args = fix_surrogates("".join(b["parts"])) if b["parts"] else _dump(b["input"] if b["input"] is not None else {})
        res.tool_calls.append(ToolCall(n, b["name"], args, b["id"]))
        n += 1


decode_messages = ApiDecoder("anthropic.messages", request_tool_calls, _body, _stream)
