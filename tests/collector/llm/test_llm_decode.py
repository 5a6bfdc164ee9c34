"""LLM decoding into rows (collector/llm/*): models, streamed tool calls byte for byte, usage,
router headers, truncation, redaction. Byte streams are built like real peers send them."""

from __future__ import annotations

import json

import pytest

from collector.llm.pipeline import DecodeContext, decode_connection
from collector.secrets import Fingerprinter
from tests.collector.protocols.wire import (
    anthropic_stream,
    conn_from,
    conn_from_conv,
    h1_request,
    h1_response,
    h2_connection,
    openai_chat_stream,
    sse,
)

ARGS = '{"command": "echo Prüfe — 数据を取得 ✓ 🚀 && ls -la", "path": "/tmp/ü"}'
KEY = "sk-proj-Q1w2E3r4T5y6U7i8O9p0AsDfGhJkL"


@pytest.fixture
def ctx() -> DecodeContext:
    return DecodeContext("host-1", Fingerprinter(b"s" * 32), "keylog")


def _h1(path, req_obj, resp_body, ctype="application/json", headers=(), chunked=True):
    req = h1_request("POST", path, "router.example", json.dumps(req_obj).encode(),
                     headers=[("Authorization", f"Bearer {KEY}"), ("Content-Type", "application/json")])
    resp = h1_response(200, resp_body, headers=[("Content-Type", ctype), *headers], chunked=chunked, pieces=7)
    return conn_from(req, [resp[i : i + 50] for i in range(0, len(resp), 50)], flow_uid="F1")


def test_openai_chat_streamed_tool_calls_exact(ctx):
    body = openai_chat_stream("gpt-4o-2024-08-06", [("bash", ARGS), ("read_file", '{"p": "ü"}')])
    rows = decode_connection(_h1("/v1/chat/completions", {"model": "gpt-4o", "stream": True}, body,
                                 "text/event-stream", headers=[("x-litellm-call-id", "abc"), ("server", "uvicorn")]), ctx)
    (x,) = rows.tables["llm_exchanges"]
    assert (x["api"], x["model_requested"], x["model_returned"], x["streamed"], x["status"], x["tool_call_count"],
            x["input_tokens"], x["output_tokens"], x["router"], x["truncated"]) == (
        "openai.chat", "gpt-4o", "gpt-4o-2024-08-06", True, 200, 2, 10, 20, "litellm", False)
    assert json.loads(x["router_headers"]) == {"x-litellm-call-id": "abc", "server": "uvicorn"}
    assert [(t["idx"], t["name"], t["arguments"], t["call_id"]) for t in rows.tables["tool_calls"]] == [
        (0, "bash", ARGS, "call_0"), (1, "read_file", '{"p": "ü"}', "call_1")]
    assert KEY not in json.dumps(rows.tables, default=str)
    (s,) = rows.tables["secrets_seen"]
    assert (s["kind"], s["location"], s["last4"], s["direction"], s["destination"]) == (
        "openai_api_key", "header:authorization", "hJkL", "request", "router.example")


def test_anthropic_streamed_over_h2_with_gzip(ctx):
    body = anthropic_stream("claude-sonnet-4-5-20250929", [("bash", ARGS)])
    req = {"model": "claude-sonnet-4-5", "stream": True, "max_tokens": 100,
           "messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t0", "name": "old",
                                                           "input": {"a": "ü"}}]}]}
    conv = h2_connection([([(":method", "POST"), (":path", "/v1/messages"), (":authority", "api.router.example"),
                            (":scheme", "https"), ("x-api-key", "sk-ant-api03-" + "x" * 40)],
                           json.dumps(req).encode(),
                           [(":status", "200"), ("content-type", "text/event-stream"), ("x-oneapi-request-id", "1")],
                           body)], gzip_response=True)
    rows = decode_connection(conn_from_conv(conv, flow_uid="F2"), ctx)
    (x,) = rows.tables["llm_exchanges"]
    assert (x["api"], x["model_requested"], x["model_returned"], x["streamed"], x["input_tokens"],
            x["output_tokens"], x["router"], x["tool_call_count"]) == (
        "anthropic.messages", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929", True, 11, 22, "one-api", 1)
    calls = [(t["direction"], t["name"], t["arguments"]) for t in rows.tables["tool_calls"]]
    assert calls == [("request", "old", '{"a": "ü"}'), ("response", "bash", ARGS)]
    assert rows.tables["http"][0]["http_version"] == "HTTP/2" and rows.tables["http"][0]["stream_id"] == 1
    assert {s["kind"] for s in rows.tables["secrets_seen"]} == {"anthropic_api_key"}


def test_openai_responses_streamed_and_not(ctx):
    evs = [{"type": "response.created", "response": {"id": "resp_1", "model": "gpt-5-2025"}},
           {"type": "response.output_item.added", "output_index": 0,
            "item": {"type": "function_call", "name": "bash", "call_id": "call_9", "arguments": ""}}]
    evs += [{"type": "response.function_call_arguments.delta", "output_index": 0, "delta": ARGS[i : i + 4]}
            for i in range(0, len(ARGS), 4)]
    evs += [{"type": "response.function_call_arguments.done", "output_index": 0, "arguments": ARGS},
            {"type": "response.completed", "response": {"id": "resp_1", "model": "gpt-5-2025",
                                                        "usage": {"input_tokens": 3, "output_tokens": 4}}}]
    body = sse(evs, [e["type"] for e in evs])
    rows = decode_connection(_h1("/v1/responses", {"model": "gpt-5", "stream": True}, body, "text/event-stream"), ctx)
    (x,) = rows.tables["llm_exchanges"]
    assert (x["api"], x["model_returned"], x["input_tokens"], x["output_tokens"], x["tool_call_count"]) == (
        "openai.responses", "gpt-5-2025", 3, 4, 1)
    assert rows.tables["tool_calls"][0]["arguments"] == ARGS
    nonstream = {"id": "r", "model": "gpt-5-2025", "output": [
        {"type": "function_call", "name": "bash", "call_id": "c", "arguments": ARGS}], "usage": {"input_tokens": 1}}
    rows = decode_connection(_h1("/v1/responses", {"model": "gpt-5", "input": [
        {"type": "function_call", "name": "prev", "call_id": "c0", "arguments": "{}"}]},
        json.dumps(nonstream).encode()), ctx)
    assert [(t["direction"], t["name"], t["arguments"]) for t in rows.tables["tool_calls"]] == [
        ("request", "prev", "{}"), ("response", "bash", ARGS)]
    assert rows.tables["llm_exchanges"][0]["streamed"] is False


def test_nonstreamed_chat_and_anthropic(ctx):
    resp = {"id": "x", "model": "gpt-4o-mini-2024", "usage": {"prompt_tokens": 1, "completion_tokens": 2},
            "choices": [{"message": {"tool_calls": [{"id": "c1", "type": "function",
                                                     "function": {"name": "f", "arguments": ARGS}}]}}]}
    rows = decode_connection(_h1("/v1/chat/completions", {"model": "gpt-4o-mini"}, json.dumps(resp).encode()), ctx)
    assert rows.tables["tool_calls"][0]["arguments"] == ARGS
    resp = {"id": "m", "type": "message", "model": "claude-x", "usage": {"input_tokens": 5, "output_tokens": 6},
            "content": [{"type": "tool_use", "id": "tu", "name": "bash", "input": json.loads(ARGS)}]}
    rows = decode_connection(_h1("/v1/messages", {"model": "claude-y", "max_tokens": 5}, json.dumps(resp).encode()), ctx)
    (x,) = rows.tables["llm_exchanges"]
    assert (x["model_requested"], x["model_returned"], x["streamed"]) == ("claude-y", "claude-x", False)
    assert json.loads(rows.tables["tool_calls"][0]["arguments"]) == json.loads(ARGS)


def test_stream_cut_short_is_truncated_partial(ctx):
    body = anthropic_stream("claude-z", [("bash", ARGS)])
    conn = _h1("/v1/messages", {"model": "claude-z", "stream": True, "max_tokens": 1}, body, "text/event-stream",
               chunked=False)
    cut = sum(len(c.data) for c in conn.server) - 120
    data = b"".join(c.data for c in conn.server)[:cut]
    conn.server = [conn.server[0].__class__(conn.server[0].ts, data)]
    conn.truncated = True
    rows = decode_connection(conn, ctx)
    (x,) = rows.tables["llm_exchanges"]
    assert x["truncated"] and x["model_returned"] == "claude-z"
    assert rows.tables["http"][0]["truncated"]


def test_invalid_json_and_secret_split_across_deltas(ctx):
    rows = decode_connection(_h1("/v1/chat/completions", {"model": "m"}, b"{not json"), ctx)
    (x,) = rows.tables["llm_exchanges"]
    assert "invalid_json_response" in json.loads(x["stream_events"])["errors"]
    secret_args = json.dumps({"cmd": f"curl -H 'Authorization: Bearer {KEY}' https://x"})
    body = openai_chat_stream("m", [("bash", secret_args)])  # 7-character deltas split the key
    rows = decode_connection(_h1("/v1/chat/completions", {"model": "m", "stream": True}, body,
                                 "text/event-stream"), ctx)
    assert KEY not in json.dumps(rows.tables, default=str)
    assert "[REDACTED:openai_api_key:" in rows.tables["tool_calls"][0]["arguments"]
    assert {(s["direction"], s["location"]) for s in rows.tables["secrets_seen"]} >= {
        ("response", "tool_call"), ("request", "header:authorization")}


def test_gemini_streamed_function_call_and_key_in_path(ctx):
    chunks = [{"candidates": [{"content": {"parts": [{"functionCall": {"name": "bash", "args": json.loads(ARGS)}}]}}],
               "modelVersion": "gemini-2.5-flash-001", "responseId": "r1"},
              {"candidates": [{"content": {"parts": [{"text": "ok"}]}, "finishReason": "STOP"}],
               "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 9}, "modelVersion": "gemini-2.5-flash-001"}]
    gkey = "AIzaSyD3mOcKk3y-0123456789abcdefghijkXY"
    req = h1_request("POST", f"/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key={gkey}", "g.example",
                     b'{"contents": []}')
    resp = h1_response(200, sse(chunks), headers=[("Content-Type", "text/event-stream")], chunked=True)
    rows = decode_connection(conn_from(req, resp), ctx)
    (x,) = rows.tables["llm_exchanges"]
    assert (x["api"], x["model_requested"], x["model_returned"], x["streamed"], x["input_tokens"], x["output_tokens"],
            x["truncated"]) == ("gemini.generate", "gemini-2.5-flash", "gemini-2.5-flash-001", True, 7, 9, False)
    assert json.loads(rows.tables["tool_calls"][0]["arguments"]) == json.loads(ARGS)
    assert gkey not in json.dumps(rows.tables, default=str) and "[REDACTED:google_api_key:" in x["path"]
    assert [(s["kind"], s["location"]) for s in rows.tables["secrets_seen"]] == [("google_api_key", "path")]


def test_loads_is_json_loads():
    """llm.result.loads tries msgspec first: results (or None) must be json.loads's own, including
    bytes json.loads reads as UTF-16/32 and values with trailing data."""
    from collector.llm.result import loads

    def ref(d):
        try:
            return json.loads(d)
        except (ValueError, RecursionError):
            return None

    cases = ['{"a": [1, 2.5, "ü🚀"]}', '{"a":1} ', ' {"a":1}', '{"a":1}x', '{"a":1}{"b":2}', "[1,]", "[NaN]",
             '"\\ud83d"', '{"a":"\\ud83d"}', "[" * 50_000, "{}", "[]", "{", "\ufeff{}", '{"a":1,"a":2}', "[1e400]",
             '{"n": 123456789012345678901234567890}', "[-0, -0.0, 1E5, 1e-400]", '"\x01"', "[" * 900 + "]" * 900]
    for c in cases:
        for d in (c, c.encode("utf-8", "surrogatepass"), c.encode("utf-16-le", "surrogatepass"),
                  c.encode("utf-16", "surrogatepass"), c.encode("utf-32", "surrogatepass")):
            assert repr(loads(d)) == repr(ref(d)), d[:40]


def test_loads_and_dumps_agree_with_json_on_generated_values():
    """msgspec decodes and encodes first: generated JSON (any Unicode, surrogate halves, big ints,
    floats, deep nesting) decodes to json.loads's value, and dumps() is compact JSON of the same value."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from collector.llm.result import dumps, loads

    scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
                        st.floats(allow_nan=False, allow_infinity=False), st.text())
    values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                           st.dictionaries(st.text(), inner, max_size=4)),
                          max_leaves=20)

    @settings(max_examples=1500, deadline=None)
    @given(values, st.booleans())
    def check(v, ascii_only):
        text = json.dumps(v, ensure_ascii=ascii_only)
        for d in (text, text.encode("utf-8", "surrogatepass")):
            assert repr(loads(d)) == repr(json.loads(d))
        out = dumps(v)
        assert json.loads(out) == v
        # floats: the same value, an exponent may be spelled 1e-7 rather than 1e-07
        assert out == json.dumps(v, ensure_ascii=False, separators=(",", ":")) or \
            any(isinstance(x, float) for x in _leaves(v))

    check()
    assert dumps({"a": "\ud83d", "b": [1, "é"]}) == '{"a":"\ud83d","b":[1,"é"]}'


def _leaves(v):
    if isinstance(v, dict):
        for x in v.values():
            yield from _leaves(x)
    elif isinstance(v, list):
        for x in v:
            yield from _leaves(x)
    else:
        yield v


def test_header_and_path_cache_gives_the_same_rows(ctx):
    """Header values and paths are redacted once per DecodeContext (agents repeat them): the rows of
    an exchange seen twice, and with a cold cache, are identical; the cache never travels in a pickle."""
    import pickle

    conn = _h1(f"/v1/chat/completions?key={KEY}", {"model": "m", "messages": []},
               b'{"model":"m","choices":[]}', headers=[("X-Note", f"use {KEY}"), ("Server", "litellm")])
    first = decode_connection(conn, ctx)
    again = decode_connection(conn, ctx)
    cold = decode_connection(conn, DecodeContext("host-1", Fingerprinter(b"s" * 32), "keylog"))
    assert first.tables == again.tables == cold.tables
    kinds = sorted((r["location"], r["kind"]) for r in first.tables["secrets_seen"])
    assert ("header:authorization", "openai_api_key") in kinds and ("header:x-note", "openai_api_key") in kinds
    assert ("path", "openai_api_key") in kinds
    assert KEY not in json.dumps(first.tables, default=str)
    assert ctx.cache and pickle.loads(pickle.dumps(ctx)).cache == {}


def test_gemini_stream_reads_on_after_finish_reason():
    """Gemini's finishReason is not a terminal event: a later chunk (usage) is still read and not
    counted as after-done; invalid JSON is counted; each event is stamped."""
    from collector.llm.gemini import decode_generate
    from collector.protocols.sse import SseEvent

    data = [{"candidates": [{"content": {"parts": [{"text": "hi"}]}, "finishReason": "STOP"}], "responseId": "r1"},
            "{not json",
            {"usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4}, "modelVersion": "gemini-x-001"}]
    events = [SseEvent("message", d if isinstance(d, str) else json.dumps(d), None, 10.0 + i) for i, d in enumerate(data)]
    res = decode_generate("/v1beta/models/gemini-x:streamGenerateContent", {}, None, events, 10.0)
    s = res.stream
    assert (res.text, res.input_tokens, res.output_tokens, res.model_returned, res.truncated) == ("hi", 3, 4, "gemini-x-001", False)
    assert (s["events"], s["invalid_json"], s["after_done"], s["done"], s["first_ms"], s["last_ms"]) == (3, 1, 0, True, 0.0, 2000.0)
    assert (s["types"], s["ids"], s["models"]) == ({"chunk": 2}, ["r1"], ["gemini-x-001"])
