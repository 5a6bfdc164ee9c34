"""Gemini generateContent / streamGenerateContent (`?alt=sse`): model, usage, function calls.

The model is named in the path (`/v1beta/models/<model>:generateContent`); `modelVersion` in the
response is the model returned. Function-call `args` objects are serialised with
`json.dumps(..., ensure_ascii=False)`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from collector.llm.result import (
    LlmResult,
    ToolCall,
    as_int,
    as_list,
    as_str,
    json_events,
    loads,
    note,
    start_stream,
)
from collector.protocols.sse import SseEvent

PATH = re.compile(r"/models/([^/:?]+):(generateContent|streamGenerateContent)")


def _chunk(res: LlmResult, body: dict, calls: list[ToolCall], text: list[str]) -> None:
    model = as_str(body.get("modelVersion"))
    if model:
        res.model_returned = res.model_returned or model
    usage = body.get("usageMetadata")
    if isinstance(usage, dict):
        res.input_tokens = as_int(usage.get("promptTokenCount")) or res.input_tokens
        res.output_tokens = as_int(usage.get("candidatesTokenCount")) or res.output_tokens
    for cand in as_list(body.get("candidates")):
        content = cand.get("content") if isinstance(cand, dict) else None
        if not isinstance(content, dict):
            continue
        for part in as_list(content.get("parts")):
            if not isinstance(part, dict):
                continue
            fc = part.get("functionCall")
            if isinstance(fc, dict):
                calls.append(ToolCall(len(calls), as_str(fc.get("name")),
                                      json.dumps(fc.get("args", {}), ensure_ascii=False), as_str(fc.get("id"))))
            elif isinstance(part.get("text"), str) and len(text) < 100_000:
                text.append(part["text"])


def decode_generate(path: str, req: Any, resp_body: bytes | None, events: list[SseEvent] | None,
                    t0: float | None) -> LlmResult:
    res = LlmResult("gemini.generate")
    m = PATH.search(path)
    if m:
        res.model_requested = m.group(1)
        res.streamed = m.group(2) == "streamGenerateContent"
    calls: list[ToolCall] = []
    text: list[str] = []
    if events is not None:
        s = start_stream(res)
        for _ev, body in json_events(s, events, t0, done_marker=False, stop_at_done=False):
            s["types"]["chunk"] = s["types"].get("chunk", 0) + 1
            note(s, "models", as_str(body.get("modelVersion")))
            note(s, "ids", as_str(body.get("responseId")))
            _chunk(res, body, calls, text)
            for cand in as_list(body.get("candidates")):
                if isinstance(cand, dict) and cand.get("finishReason"):
                    s["done"] = True
        if not s["done"]:
            res.truncated = True
        res.text = "".join(text)
    elif resp_body:
        body = loads(resp_body)
        if isinstance(body, list):  # streamGenerateContent without alt=sse: a JSON array of chunks
            for b in body:
                if isinstance(b, dict):
                    _chunk(res, b, calls, text)
        elif isinstance(body, dict):
            _chunk(res, body, calls, text)
        else:
            res.errors.append("invalid_json_response")
    res.tool_calls = calls
    return res
