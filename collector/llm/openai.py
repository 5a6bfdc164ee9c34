"""OpenAI Chat Completions and Responses API: models, usage, streamed and non-streamed tool calls.

Streamed tool-call arguments are the concatenation of the `arguments` deltas in arrival order, per
(choice, tool index) for Chat Completions and per output item for the Responses API, exactly the
string an SDK hands the agent. For the Responses API the final `response.output_item.done` /
`response.function_call_arguments.done` value wins (what SDKs expose); a mismatch with the deltas
is recorded as a stream anomaly.
"""

from __future__ import annotations

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


# -- Chat Completions --------------------------------------------------------------------------------
def _function_call(idx: int, fn: dict, call_id: Any, direction: str = "response") -> ToolCall:
    """A ToolCall from an object holding `name` and `arguments` (a JSON string as the API sends it;
    anything else becomes "")."""
    args = fn.get("arguments")
    return ToolCall(idx, as_str(fn.get("name")), args if isinstance(args, str) else "", as_str(call_id), direction)


def chat_request_tool_calls(req: Any) -> list[ToolCall]:
    out: list[ToolCall] = []
    for tc in message_items(req, "tool_calls"):
        fn = tc.get("function") if isinstance(tc, dict) else None
        if isinstance(fn, dict):
            out.append(_function_call(len(out), fn, tc.get("id"), "request"))
    return out


def _chat_body(res: LlmResult, body: dict) -> None:
    _chat_usage(res, body.get("usage"))
    n = 0
    for ch in as_list(body.get("choices")):
        msg = ch.get("message") if isinstance(ch, dict) else None
        if not isinstance(msg, dict):
            continue
        for tc in as_list(msg.get("tool_calls")):
            fn = tc.get("function") if isinstance(tc, dict) else None
            if isinstance(fn, dict):
                res.tool_calls.append(_function_call(n, fn, tc.get("id")))
                n += 1


def _chat_usage(res: LlmResult, usage: Any) -> None:
    if isinstance(usage, dict):
        res.input_tokens = as_int(usage.get("prompt_tokens"))
        res.output_tokens = as_int(usage.get("completion_tokens"))


def _chat_stream(res: LlmResult, s: dict[str, Any], events: list[SseEvent], t0: float | None) -> None:
    calls: dict[tuple[int, int], dict] = {}
    text: list[str] = []
    finish: list[str] = []
    types, models, ids = s["types"], s["models"], s["ids"]
    for _ev, chunk in json_events(s, events, t0):  # once per streamed event: note() and as_*() inlined
        typ = chunk.get("object")
        typ = typ if isinstance(typ, str) and typ else "?"
        types[typ] = types.get(typ, 0) + 1
        model = chunk.get("model")
        if isinstance(model, str) and model:
            res.model_returned = res.model_returned or model
            if model not in models and len(models) < 16:
                models.append(model)
        cid = chunk.get("id")
        if isinstance(cid, str) and cid not in ids and len(ids) < 16:
            ids.append(cid)
        usage = chunk.get("usage")
        if usage:
            _chat_usage(res, usage)
        if isinstance(chunk.get("error"), dict):
            s["anomalies"].append("error_event")
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            continue
        for ch in choices:
            if not isinstance(ch, dict):
                continue
            ci = as_int(ch.get("index")) or 0
            fr = ch.get("finish_reason")
            if isinstance(fr, str) and fr:
                finish.append(fr)
            delta = ch.get("delta")
            if not isinstance(delta, dict):
                continue
            content = delta.get("content")
            if isinstance(content, str) and len(text) < 100_000:
                text.append(content)
            tcs = delta.get("tool_calls")
            if not isinstance(tcs, list):
                continue
            for tc in tcs:
                if not isinstance(tc, dict):
                    continue
                ti = as_int(tc.get("index"))
                if ti is None:
                    ti = len([k for k in calls if k[0] == ci])
                # string fields accumulate by concatenation, as the SDKs' stream accumulators do
                c = calls.get((ci, ti))
                if c is None:
                    c = calls[(ci, ti)] = {"id": None, "name": None, "args": []}
                tid = tc.get("id")
                if isinstance(tid, str) and tid:
                    c["id"] = (c["id"] or "") + tid
                fn = tc.get("function")
                if isinstance(fn, dict):
                    name = fn.get("name")
                    if isinstance(name, str) and name:
                        c["name"] = (c["name"] or "") + name
                    args = fn.get("arguments")
                    if isinstance(args, str):
                        c["args"].append(args)
    s["finish_reasons"] = finish[:16]
    res.text = "".join(text)
    for n, key in enumerate(sorted(calls)):
        c = calls[key]
        res.tool_calls.append(ToolCall(n, c["name"], fix_surrogates("".join(c["args"])), c["id"]))


# -- Responses API -----------------------------------------------------------------------------------
def responses_request_tool_calls(req: Any) -> list[ToolCall]:
    out: list[ToolCall] = []
    if isinstance(req, dict) and isinstance(req.get("input"), list):
        for item in req["input"]:
            if isinstance(item, dict) and item.get("type") == "function_call":
                out.append(_function_call(len(out), item, item.get("call_id"), "request"))
    return out


def _responses_usage(res: LlmResult, usage: Any) -> None:
    if isinstance(usage, dict):
        res.input_tokens = as_int(usage.get("input_tokens"))
        res.output_tokens = as_int(usage.get("output_tokens"))


def _output_calls(res: LlmResult, output: Any) -> None:
    n = 0
    texts = []
    for item in as_list(output):
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call":
            res.tool_calls.append(_function_call(n, item, item.get("call_id")))
            n += 1
        elif item.get("type") == "message":
            for part in as_list(item.get("content")):
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    texts.append(part["text"])
    if texts and res.text is None:
        res.text = "".join(texts)


def _responses_body(res: LlmResult, body: dict) -> None:
    _responses_usage(res, body.get("usage"))
    _output_calls(res, body.get("output"))


def _responses_stream(res: LlmResult, s: dict[str, Any], events: list[SseEvent], t0: float | None) -> None:
    items: dict[int, dict] = {}
    text: list[str] = []
    for ev, e in json_events(s, events, t0):
        typ = as_str(e.get("type")) or ev.event
        s["types"][typ] = s["types"].get(typ, 0) + 1
        resp = e.get("response")
        if isinstance(resp, dict):
            note_message(res, s, resp)
            if resp.get("usage"):
                _responses_usage(res, resp.get("usage"))
        oi = as_int(e.get("output_index"))
        if typ == "response.output_item.added" or typ == "response.output_item.done":
            item = e.get("item")
            if isinstance(item, dict) and item.get("type") == "function_call" and oi is not None:
                c = items.setdefault(oi, {"name": None, "call_id": None, "deltas": [], "final": None})
                c["name"] = as_str(item.get("name")) or c["name"]
                c["call_id"] = as_str(item.get("call_id")) or c["call_id"]
                if typ == "response.output_item.done" and isinstance(item.get("arguments"), str):
                    c["final"] = item["arguments"]
        elif typ == "response.function_call_arguments.delta" and oi is not None:
            c = items.setdefault(oi, {"name": None, "call_id": None, "deltas": [], "final": None})
            if isinstance(e.get("delta"), str):
                c["deltas"].append(e["delta"])
        elif typ == "response.function_call_arguments.done" and oi is not None:
            c = items.setdefault(oi, {"name": None, "call_id": None, "deltas": [], "final": None})
            if isinstance(e.get("arguments"), str):
                c["final"] = e["arguments"]
        elif typ == "response.output_text.delta" and isinstance(e.get("delta"), str) and len(text) < 100_000:
            text.append(e["delta"])
        elif typ in ("response.completed", "response.failed", "response.incomplete"):
            s["done"] = True
        elif typ == "error":
            s["anomalies"].append("error_event")
    res.text = "".join(text)
    for n, oi in enumerate(sorted(items)):
        c = items[oi]
        streamed = fix_surrogates("".join(c["deltas"]))
        final = c["final"] if c["final"] is not None else streamed
        if c["final"] is not None and c["deltas"] and streamed != c["final"]:
            s["anomalies"].append("tool_arguments_differ_from_deltas")
        res.tool_calls.append(ToolCall(n, c["name"], final, c["call_id"]))


decode_chat = ApiDecoder("openai.chat", chat_request_tool_calls, _chat_body, _chat_stream)
decode_responses = ApiDecoder("openai.responses", responses_request_tool_calls, _responses_body, _responses_stream)
