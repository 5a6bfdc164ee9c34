"""Hypothesis fuzzing of every parser that reads untrusted bytes: HTTP/1.x, HTTP/2, SSE, content
decoding, the LLM JSON decoders and the secret scanner. None may raise, whatever the input.

CI runs a short pass; `ROUTERWATCH_FUZZ_EXAMPLES=100000 pytest tests/collector/protocols/test_fuzz_parsers.py`
is the dedicated long run.
"""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.llm import anthropic, gemini, openai
from collector.llm.pipeline import DecodeContext, decode_http
from collector.protocols.connection import ConnectionParser
from collector.protocols.encoding import BodyDecoder
from collector.protocols.http2 import PREFACE
from collector.protocols.messages import HttpRequest, HttpResponse
from collector.protocols.sse import SseEvent, parse_sse
from collector.secrets import Fingerprinter, detect, redact
from tests.collector.protocols.wire import (
    anthropic_stream,
    h1_request,
    h1_response,
    h2_connection,
    openai_chat_stream,
)

N = int(os.environ.get("ROUTERWATCH_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=N, deadline=None, suppress_health_check=list(HealthCheck), database=None)

H1 = h1_request("POST", "/v1/chat/completions", "r", b'{"model":"m"}') + h1_request("GET", "/", "r")
H1R = h1_response(200, openai_chat_stream("m", [("f", '{"a": "ü"}')]), headers=[("Content-Type", "text/event-stream")],
                  chunked=True, pieces=4) + h1_response(404, b"x")
H2 = h2_connection([([(":method", "POST"), (":path", "/v1/messages"), (":authority", "r"), (":scheme", "https")],
                     b'{"model":"m","stream":true}', [(":status", "200"), ("content-type", "text/event-stream")],
                     anthropic_stream("m", [("f", '{"a": 1}')]))], gzip_response=True)


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    b = bytearray(data)
    for kind, pos, val in edits:
        if not b:
            break
        p = pos % len(b)
        if kind == 0:
            b[p] = val
        elif kind == 1:
            del b[p : p + 1 + val % 8]
        else:
            b[p:p] = bytes([val]) * (1 + val % 4)
    return bytes(b)


edits = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8)
cuts = st.lists(st.integers(1, 64), min_size=1, max_size=16)


def _feed(client: bytes, server: bytes, cut: list[int]) -> None:
    p = ConnectionParser(keep=4096)
    i = j = k = 0
    while i < len(client) or j < len(server):
        n = cut[k % len(cut)]
        k += 1
        if i < len(client):
            p.feed(True, client[i : i + n], float(k))
            i += n
        if j < len(server):
            p.feed(False, server[j : j + n], float(k))
            j += n
    for req, resp in p.close(truncated=bool(k % 2)):
        assert isinstance(req, HttpRequest) and (resp is None or isinstance(resp, HttpResponse))


@FUZZ
@given(st.binary(max_size=2048), st.binary(max_size=2048), cuts)
def test_random_bytes(client, server, cut):
    _feed(client, server, cut)
    _feed(b"POST / HTTP/1.1\r\n" + client, server, cut)
    _feed(PREFACE + client, server, cut)


@FUZZ
@given(edits, edits, cuts)
def test_mutated_http1(ce, se, cut):
    _feed(_mutate(H1, ce), _mutate(H1R, se), cut)


@FUZZ
@given(edits, st.integers(0, len(H2) - 1), cuts)
def test_mutated_http2(e, which, cut):
    conv = list(H2)
    frm, data = conv[which]
    conv[which] = (frm, _mutate(data, e))
    p = ConnectionParser(keep=4096)
    for k, (frm, data) in enumerate(conv):
        n = cut[k % len(cut)]
        for i in range(0, len(data), n):
            p.feed(frm, data[i : i + n], float(k))
    p.close(truncated=True)


@st.composite
def frames(draw) -> bytes:
    out = bytearray(PREFACE)
    for _ in range(draw(st.integers(0, 8))):
        payload = draw(st.binary(max_size=64))
        ftype = draw(st.integers(0, 10))
        out += len(payload).to_bytes(3, "big") + bytes([ftype, draw(st.integers(0, 255))])
        out += draw(st.integers(0, 7)).to_bytes(4, "big") + payload
    return bytes(out)


@FUZZ
@given(frames(), frames())
def test_random_http2_frames(c, s):
    p = ConnectionParser(keep=4096)
    p.feed(True, c, 1.0)
    p.feed(False, s[len(PREFACE):], 2.0)
    p.close(truncated=True)


@FUZZ
@given(st.binary(max_size=4096), st.sampled_from(["gzip", "deflate", "br", "zstd", "gzip, br", "bogus"]))
def test_content_decoding(data, enc):
    d = BodyDecoder(enc)
    d.feed(data)
    d.flush()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["model", "stream", "messages", "choices", "delta", "tool_calls", "function", "index",
                         "arguments", "name", "id", "type", "content", "input", "output", "item", "usage",
                         "message", "content_block", "partial_json", "output_index", "response", "candidates",
                         "parts", "functionCall", "args", "text", "object"]), children, max_size=6),
    max_leaves=20,
)


@FUZZ
@given(json_values, json_values, st.lists(json_values, max_size=6), st.binary(max_size=512))
def test_llm_decoders(req, resp, events, raw):
    evs = [SseEvent("message", json.dumps(e), None, 1.0) for e in events] + [SseEvent("x", raw.decode("latin-1"), None, None)]
    body = json.dumps(resp).encode()
    for f in (openai.decode_chat, openai.decode_responses, anthropic.decode_messages):
        f(req, body, None, 0.0)
        f(req, raw, None, 0.0)
        f(req, None, evs, 0.0)
    gemini.decode_generate("/v1beta/models/g:streamGenerateContent", req, body, evs, 0.0)
    gemini.decode_generate("/v1beta/models/g:generateContent", req, body, None, 0.0)


@FUZZ
@given(st.binary(max_size=2048))
def test_sse(data):
    parse_sse(data)


CTX = DecodeContext("h", Fingerprinter(b"f" * 32), "keylog")


@FUZZ
@given(st.sampled_from(["/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1beta/models/x:generateContent",
                        "/other"]), json_values, st.binary(max_size=1024), st.booleans())
def test_decode_http_rows(path, req, resp_body, sse_ctype):
    ctype = "text/event-stream" if sse_ctype else "application/json"
    r = decode_http(HttpRequest("POST", "h", path, [("authorization", "Bearer x")], json.dumps(req).encode(), 1.0),
                    HttpResponse(200, [("content-type", ctype)], resp_body, 2.0), CTX)
    assert len(r.tables["http"]) == 1


secretish = st.text(alphabet=st.sampled_from(list("sk-antproj_AKIAghpxoxb0123456789abcdefABCDEF \n\\\"{}:=0x")),
                    max_size=300)


@FUZZ
@given(st.one_of(st.text(max_size=500), secretish))
def test_secret_scanner(text):
    red, pairs = redact(text, Fingerprinter(b"f" * 32))
    for m, _ in pairs:
        assert text[m.start:m.end] == m.value
    assert len(detect(red)) <= len([m for m, _ in pairs]) + len(detect(text))
