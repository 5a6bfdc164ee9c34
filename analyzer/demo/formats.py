"""Wire formats of the three LLM APIs the zoo speaks: request reading and response/SSE building.

Sans-IO: dicts in, bodies and SSE events out. The zoo decides *what* the model answers (a tool call or
text); this module only knows *how* OpenAI Chat Completions, the OpenAI Responses API and Anthropic
Messages spell it, streamed or not, so the real SDKs parse it as they would a provider's answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

API_BY_PATH = {
    "/v1/chat/completions": "openai.chat",
    "/v1/responses": "openai.responses",
    "/v1/messages": "anthropic.messages",
}

# A reason string with 2-, 3- and 4-byte UTF-8 so decoders are tested byte for byte.
REASON = "Prüfe die Daten — 数据を取得 ✓ 🚀"
ARG_CHUNK = 9  # characters per streamed argument delta: every tool call streams in several pieces


@dataclass
class Request:
    """What the zoo needs to know about one LLM API request."""

    api: str
    model: str
    stream: bool
    tool_names: list[str]
    user_text: str
    after_tool_result: bool
    include_usage: bool = False
    raw: dict[str, Any] = field(default_factory=dict)
    tool_schemas: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> JSON-schema properties


@dataclass
class Answer:
    """The scripted model output: a tool call (name + JSON arguments) or plain text."""

    model: str
    text: str
    tool_name: str | None = None
    arguments: str | None = None
    call_id: str = "call_0"
    msg_id: str = "0"
    created: int = 0
    input_tokens: int = 10
    output_tokens: int = 10
    anomaly: bool = False


def _text_of(content: Any) -> str:
    """Text of a message content: a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p)
    return ""


def parse_request(api: str, body: dict[str, Any]) -> Request:
    """Read model, stream flag, tool names and the latest user text from a request body."""
    model = str(body.get("model", ""))
    stream = bool(body.get("stream", False))
    tools = body.get("tools") or []
    names: list[str] = []
    schemas: dict[str, dict[str, Any]] = {}
    for t in tools:
        if not isinstance(t, dict):
            continue
        fn = t.get("function") if isinstance(t.get("function"), dict) else t
        name = fn.get("name")
        if name:
            names.append(str(name))
            schema = fn.get("parameters") or fn.get("input_schema") or {}
            props = schema.get("properties") if isinstance(schema, dict) else None
            schemas[str(name)] = props if isinstance(props, dict) else {}
    user_text, after_tool = "", False
    if api == "openai.responses":
        inp = body.get("input")
        if isinstance(inp, str):
            user_text = inp
        elif isinstance(inp, list):
            for item in inp:
                if not isinstance(item, dict):
                    continue
                if item.get("type") == "function_call_output":
                    after_tool = True
                elif item.get("role") == "user":
                    user_text, after_tool = _text_of(item.get("content")), False
    else:
        for msg in body.get("messages") or []:
            if not isinstance(msg, dict):
                continue
            content = msg.get("content")
            if msg.get("role") == "tool":
                after_tool = True
            elif msg.get("role") == "user":
                blocks = content if isinstance(content, list) else []
                if any(isinstance(b, dict) and b.get("type") == "tool_result" for b in blocks):
                    after_tool = True
                else:
                    user_text, after_tool = _text_of(content), False
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    return Request(api, model, stream, names, user_text, after_tool, include_usage, body, schemas)


SHELL_TOOL = re.compile(r"(?i)shell|bash|exec|command|terminal|run")


def pick_shell_tool(req: Request) -> tuple[str, bool]:
    """(tool name, whether it looks like a shell tool): run_shell, else the first shell-like name,
    else the first tool."""
    if "run_shell" in req.tool_names:
        return "run_shell", True
    shell = next((n for n in req.tool_names if SHELL_TOOL.search(n)), None)
    return (shell, True) if shell else (req.tool_names[0], False)


def shell_arguments(command: str, props: dict[str, Any], shell_like: bool = True) -> dict[str, Any]:
    """Arguments for a shell tool that fit its schema: `command` as a string, or as an argv array
    (Codex's `shell` tool), plus a non-ASCII reason/description where the schema has room for one.
    A tool that is not shell-like (or has no schema) gets the plain {"command", "reason"} form."""
    if not props or not shell_like:
        return {"command": command, "reason": REASON}
    key = "command" if "command" in props else next(iter(props))
    value: Any = ["bash", "-lc", command] if props.get(key, {}).get("type") == "array" else command
    args: dict[str, Any] = {key: value}
    for extra in ("reason", "description", "justification"):
        if extra in props and extra != key:
            args[extra] = REASON
    return args


def _pieces(s: str, n: int = ARG_CHUNK) -> list[str]:
    return [s[i : i + n] for i in range(0, len(s), n)] or [""]


def dumps(obj: Any) -> str:
    """Compact JSON with raw UTF-8 (as most servers send it), so non-ASCII crosses the wire unescaped."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# --- OpenAI Chat Completions -------------------------------------------------------------------------

def chat_body(a: Answer) -> dict[str, Any]:
    if a.tool_name:
        message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
            {"id": a.call_id, "type": "function", "function": {"name": a.tool_name, "arguments": a.arguments}}]}
        finish = "tool_calls"
    else:
        message = {"role": "assistant", "content": a.text, "refusal": None}
        finish = "stop"
    return {
        "id": f"chatcmpl-{a.msg_id}", "object": "chat.completion", "created": a.created, "model": a.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {"prompt_tokens": a.input_tokens, "completion_tokens": a.output_tokens,
                  "total_tokens": a.input_tokens + a.output_tokens},
        "system_fingerprint": "fp_routerwatch_demo",
    }


def chat_events(a: Answer, include_usage: bool) -> Iterator[tuple[str | None, dict[str, Any] | str]]:
    """(event name, data) pairs of a streamed chat completion, ending with [DONE]."""
    base = {"id": f"chatcmpl-{a.msg_id}", "object": "chat.completion.chunk", "created": a.created,
            "model": a.model, "system_fingerprint": "fp_routerwatch_demo"}

    def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict | None = None) -> dict[str, Any]:
        c = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if usage is not None:
            c["usage"] = usage
        return c

    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": None if a.tool_name else ""}]
    if a.tool_name:
        deltas.append({"tool_calls": [{"index": 0, "id": a.call_id, "type": "function",
                                       "function": {"name": a.tool_name, "arguments": ""}}]})
        deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in _pieces(a.arguments or "")]
    else:
        deltas += [{"content": p} for p in _pieces(a.text)]
    for i, d in enumerate(deltas):
        if a.anomaly:
            # Cumulative usage that goes *down* while the stream runs, and an event type no API defines.
            left = max(1, a.output_tokens * 3 - i * 7)
            yield None, chunk(d, usage={"prompt_tokens": a.input_tokens, "completion_tokens": left,
                                         "total_tokens": a.input_tokens + left})
            if i == 1:
                yield "router.notice", {"object": "router.notice", "note": "quota refreshed"}
        else:
            yield None, chunk(d)
    yield None, chunk({}, "tool_calls" if a.tool_name else "stop")
    if include_usage or a.anomaly:
        yield None, {**base, "choices": [], "usage": {"prompt_tokens": a.input_tokens, "completion_tokens": a.output_tokens,
                                                      "total_tokens": a.input_tokens + a.output_tokens}}
    yield None, "[DONE]"


# --- OpenAI Responses API ----------------------------------------------------------------------------

def _responses_item(a: Answer, done: bool) -> dict[str, Any]:
    status = "completed" if done else "in_progress"
    if a.tool_name:
        return {"type": "function_call", "id": f"fc_{a.msg_id}", "call_id": a.call_id, "name": a.tool_name,
                "arguments": (a.arguments or "") if done else "", "status": status}
    return {"type": "message", "id": f"msg_{a.msg_id}", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": a.text, "annotations": []}] if done else []}


def responses_body(a: Answer, done: bool = True, usage: bool = True) -> dict[str, Any]:
    return {
        "id": f"resp_{a.msg_id}", "object": "response", "created_at": a.created,
        "status": "completed" if done else "in_progress", "error": None, "incomplete_details": None,
        "instructions": None, "model": a.model, "output": [_responses_item(a, True)] if done else [],
        "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "temperature": 1.0, "top_p": 1.0,
        "usage": {"input_tokens": a.input_tokens, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": a.output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": a.input_tokens + a.output_tokens} if (done and usage) else None,
    }


def responses_events(a: Answer) -> Iterator[tuple[str | None, dict[str, Any] | str]]:
    """Typed Responses API stream events (event name equals the data's `type`)."""
    seq = 0

    def ev(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        nonlocal seq
        seq += 1
        return kind, {"type": kind, "sequence_number": seq - 1, **fields}

    yield ev("response.created", response=responses_body(a, done=False))
    yield ev("response.in_progress", response=responses_body(a, done=False))
    item = _responses_item(a, done=False)
    yield ev("response.output_item.added", output_index=0, item=item)
    if a.tool_name:
        for i, p in enumerate(_pieces(a.arguments or "")):
            yield ev("response.function_call_arguments.delta", item_id=item["id"], output_index=0, delta=p)
            if a.anomaly and i < 3:
                snap = responses_body(a, done=False)
                left = max(1, a.output_tokens * 3 - i * 7)
                snap["usage"] = {"input_tokens": a.input_tokens, "output_tokens": left,
                                 "total_tokens": a.input_tokens + left}
                yield ev("response.in_progress", response=snap)
                if i == 1:
                    yield ev("response.router_notice", note="quota refreshed")
        yield ev("response.function_call_arguments.done", item_id=item["id"], output_index=0,
                 name=a.tool_name, arguments=a.arguments)
    else:
        part = {"type": "output_text", "text": "", "annotations": []}
        yield ev("response.content_part.added", item_id=item["id"], output_index=0, content_index=0, part=part)
        for p in _pieces(a.text):
            yield ev("response.output_text.delta", item_id=item["id"], output_index=0, content_index=0,
                     delta=p, logprobs=[])
        yield ev("response.output_text.done", item_id=item["id"], output_index=0, content_index=0,
                 text=a.text, logprobs=[])
        yield ev("response.content_part.done", item_id=item["id"], output_index=0, content_index=0,
                 part={**part, "text": a.text})
    yield ev("response.output_item.done", output_index=0, item=_responses_item(a, done=True))
    yield ev("response.completed", response=responses_body(a))


# --- Anthropic Messages ------------------------------------------------------------------------------

PREAMBLE = "I'll run that."


def anthropic_body(a: Answer) -> dict[str, Any]:
    content: list[dict[str, Any]]
    if a.tool_name:
        content = [{"type": "text", "text": PREAMBLE},
                   {"type": "tool_use", "id": a.call_id, "name": a.tool_name, "input": json.loads(a.arguments or "{}")}]
    else:
        content = [{"type": "text", "text": a.text}]
    return {"id": f"msg_{a.msg_id}", "type": "message", "role": "assistant", "model": a.model,
            "content": content, "stop_reason": "tool_use" if a.tool_name else "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": a.input_tokens, "output_tokens": a.output_tokens}}


def anthropic_events(a: Answer) -> Iterator[tuple[str | None, dict[str, Any] | str]]:
    """message_start … content_block_* (text, tool_use + input_json_delta) … message_delta, message_stop."""
    msg = {**anthropic_body(a), "content": [], "stop_reason": None,
           "usage": {"input_tokens": a.input_tokens, "output_tokens": 1}}
    yield "message_start", {"type": "message_start", "message": msg}
    text = PREAMBLE if a.tool_name else a.text
    yield "content_block_start", {"type": "content_block_start", "index": 0,
                                  "content_block": {"type": "text", "text": ""}}
    yield "ping", {"type": "ping"}
    for p in _pieces(text):
        yield "content_block_delta", {"type": "content_block_delta", "index": 0,
                                      "delta": {"type": "text_delta", "text": p}}
    yield "content_block_stop", {"type": "content_block_stop", "index": 0}
    if a.tool_name:
        yield "content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
            "type": "tool_use", "id": a.call_id, "name": a.tool_name, "input": {}}}
        for i, p in enumerate(_pieces(a.arguments or "")):
            yield "content_block_delta", {"type": "content_block_delta", "index": 1,
                                          "delta": {"type": "input_json_delta", "partial_json": p}}
            if a.anomaly and i == 1:
                yield "router_notice", {"type": "router_notice", "note": "quota refreshed"}
        yield "content_block_stop", {"type": "content_block_stop", "index": 1}
    stop = "tool_use" if a.tool_name else "end_turn"
    if a.anomaly:
        # message_delta usage is cumulative: here it shrinks from one delta to the next.
        for left in (a.output_tokens * 3, a.output_tokens * 2):
            yield "message_delta", {"type": "message_delta", "delta": {"stop_reason": None, "stop_sequence": None},
                                    "usage": {"output_tokens": left}}
    yield "message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                            "usage": {"output_tokens": a.output_tokens}}
    yield "message_stop", {"type": "message_stop"}


def sse(event: str | None, data: dict[str, Any] | str) -> bytes:
    """One SSE event as bytes."""
    payload = data if isinstance(data, str) else dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def body_for(api: str, a: Answer) -> dict[str, Any]:
    return {"openai.chat": chat_body, "openai.responses": responses_body, "anthropic.messages": anthropic_body}[api](a)


def events_for(api: str, a: Answer, include_usage: bool) -> Iterator[tuple[str | None, dict[str, Any] | str]]:
    if api == "openai.chat":
        return chat_events(a, include_usage)
    if api == "openai.responses":
        return responses_events(a)
    return anthropic_events(a)
