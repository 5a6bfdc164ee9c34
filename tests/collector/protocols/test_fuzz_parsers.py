"""Hypothesis fuzzing of every parser that reads untrusted bytes, each against an invariant (a stub
that returns nothing, or a parser that gets one thing wrong, fails here):

* HTTP/1.1: on valid conversations the same messages as h11 (the reference parser) and as were sent,
  however the bytes are cut; on mutated or random bytes the same result whether the bytes arrive
  whole or in pieces (a streaming parser must not depend on where a read ends);
* HTTP/2: on conversations h2's own client and server produce, exactly the headers and bodies sent
  (HPACK and framing round trip); on mutated connections and random frames, the same cut-invariance;
* content decoding: compressed bodies (gzip, deflate, br, zstd, and chains) decode to the original,
  in any pieces; garbage gets the same verdict whole or in pieces;
* SSE: events written per the WHATWG rules, with any line endings, parse back to the same events;
  CRLF, LF and CR mean the same on any input;
* the LLM decoders: tool calls streamed or returned in a body come back exactly; on arbitrary JSON
  the result still names its API and numbers its tool calls 0..n-1;
* decode_http: exactly one `http` row per exchange; the secret scanner: every match is where it says.

CI runs a short pass; `ROUTERWATCH_FUZZ_EXAMPLES=100000 pytest tests/collector/protocols/test_fuzz_parsers.py`
is the dedicated long run.
"""

from __future__ import annotations

import gzip
import json
import os
import string
import zlib

import brotli
import h11
import zstandard
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


def _pieces(data: bytes, cut: list[int] | None) -> list[bytes]:
    if not cut:
        return [data] if data else []
    out, i, k = [], 0, 0
    while i < len(data):
        n = cut[k % len(cut)]
        out.append(data[i : i + n])
        i, k = i + n, k + 1
    return out


def _msg(m: HttpRequest | HttpResponse | None) -> dict | None:
    """A parsed message without its arrival times (which follow the cuts by design)."""
    if m is None:
        return None
    d = {k: v for k, v in vars(m).items() if k not in ("ts", "ts_end", "chunks")}
    if isinstance(m, HttpResponse):
        d["chunk_bytes"] = b"".join(c.data for c in m.chunks)
    return d


def _parse(client: bytes, server: bytes, ccut: list[int] | None = None, scut: list[int] | None = None,
           truncated: bool = True) -> tuple[list, str | None]:
    """Client bytes, then server bytes (each cut into pieces), through one ConnectionParser."""
    p = ConnectionParser(keep=4096)
    out = []
    t = 0.0
    for from_client, data, cut in ((True, client, ccut), (False, server, scut)):
        for piece in _pieces(data, cut):
            t += 1
            out += p.feed(from_client, piece, t)
    out += p.close(truncated=truncated)
    for req, resp in out:
        assert isinstance(req, HttpRequest) and (resp is None or isinstance(resp, HttpResponse))
    return [(_msg(a), _msg(b)) for a, b in out], p.error


# -- HTTP/1.1 against h11 ------------------------------------------------------------------------
_FRAMING = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "expect", "te", "trailer",
            "keep-alive", "proxy-connection", "content-encoding"}
header_name = st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=12).filter(
    lambda n: n.lower() not in _FRAMING)
header_value = st.text(string.ascii_letters + string.digits + " -_./:;=,\"'()", min_size=1, max_size=24).map(
    str.strip).filter(bool)
headers = st.lists(st.tuples(header_name, header_value), max_size=4)
framing = st.sampled_from(["length", "chunked"])


@st.composite
def chunked_body(draw, body: bytes) -> bytes:
    """Chunks of random sizes, sometimes with extensions, sometimes trailers."""
    out, i = b"", 0
    while i < len(body):
        n = draw(st.integers(1, max(1, len(body) - i)))
        ext = draw(st.sampled_from([b"", b";x=1", b";name=\"v\""]))
        out += b"%x" % n + ext + b"\r\n" + body[i : i + n] + b"\r\n"
        i += n
    trailers = draw(st.lists(st.tuples(header_name, header_value), max_size=2))
    return out + b"0\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in trailers) + b"\r\n"


@st.composite
def h1_message(draw, head: str, hdrs: list[tuple[str, str]], body: bytes, with_body: bool = True) -> bytes:
    """One message's bytes: `head` line, headers, then the body framed by length or chunks."""
    lines = [head, *(f"{k}: {v}" for k, v in hdrs)]
    payload = b""
    if with_body:
        if draw(framing) == "chunked":
            lines.append("Transfer-Encoding: chunked")
            payload = draw(chunked_body(body))
        else:
            lines.append(f"Content-Length: {len(body)}")
            payload = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


@st.composite
def h1_conversations(draw) -> tuple[bytes, bytes, list[tuple]]:
    """A keep-alive conversation of 1-4 exchanges: (client bytes, server bytes, what was sent)."""
    client, server, sent = b"", b"", []
    for _ in range(draw(st.integers(1, 4))):
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]))
        path = "/" + draw(st.text(string.ascii_letters + string.digits + "/-_.~%?=&", max_size=20))
        req_h = [("Host", draw(st.sampled_from(["r", "api.example", "127.0.0.1:8080"]))), *draw(headers)]
        req_body = draw(st.binary(max_size=200)) if method in ("POST", "PUT", "PATCH") else b""
        client += draw(h1_message(f"{method} {path} HTTP/1.1", req_h, req_body, with_body=bool(req_body)))
        status = draw(st.sampled_from([200, 201, 204, 301, 304, 400, 404, 429, 500, 503]))
        resp_h = draw(headers)
        no_body = method == "HEAD" or status in (204, 304)
        resp_body = b"" if no_body else draw(st.binary(max_size=300))
        if method == "HEAD" and status not in (204, 304):  # HEAD: the length of the body a GET would get
            resp_h = [*resp_h, ("Content-Length", str(draw(st.integers(0, 5000))))]
        server += draw(h1_message(f"HTTP/1.1 {status} X", resp_h, resp_body, with_body=not no_body))
        sent.append((method, path, req_h, req_body, status, resp_h, resp_body))
    return client, server, sent


def _h11_parse(client: bytes, server: bytes, methods: list[str]) -> list[tuple]:
    """The reference: h11 as a server reading the client's bytes and as a client reading the server's."""
    srv = h11.Connection(h11.SERVER)
    srv.receive_data(client)
    srv.receive_data(b"")
    reqs = []
    while True:
        ev = srv.next_event()
        if isinstance(ev, h11.Request):
            reqs.append([ev.method.decode(), ev.target.decode(), [(k.decode(), v.decode()) for k, v in ev.headers.raw_items()], b""])
        elif isinstance(ev, h11.Data):
            reqs[-1][3] += ev.data
        elif isinstance(ev, h11.EndOfMessage):
            srv.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
            srv.send(h11.EndOfMessage())
            srv.start_next_cycle()
        elif ev is h11.NEED_DATA or isinstance(ev, h11.ConnectionClosed):
            break
    cli = h11.Connection(h11.CLIENT)
    cli.receive_data(server)
    resps = []
    for method in methods:
        cli.send(h11.Request(method=method, target="/", headers=[("Host", "r"), ("Content-Length", "0")]))
        cli.send(h11.EndOfMessage())
        while True:
            ev = cli.next_event()
            if isinstance(ev, h11.Response):
                resps.append([ev.status_code, [(k.decode(), v.decode()) for k, v in ev.headers.raw_items()], b""])
            elif isinstance(ev, h11.Data):
                resps[-1][2] += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                cli.start_next_cycle()
                break
    return [(*q, *r) for q, r in zip(reqs, resps, strict=True)]


@FUZZ
@given(h1_conversations(), cuts, cuts)
def test_http1_matches_h11(conv, ccut, scut):
    client, server, sent = conv
    ref = _h11_parse(client, server, [s[0] for s in sent])
    ours, error = _parse(client, server, ccut, scut, truncated=False)
    assert error is None
    got = [(q["method"], q["path"], q["headers"], q["body"], r["status"], r["headers"], r["body"]) for q, r in ours]
    assert got == [tuple(x) for x in ref]
    # and what was sent (h11 keeps chunked framing headers, and so do we: both list them)
    assert [(m, p, b, s, rb) for m, p, _, b, s, _, rb in got] == [(s[0], s[1], s[3], s[4], s[6]) for s in sent]
    assert all(q["authority"] == dict(s[2])["Host"] and not q["truncated"] and not r["truncated"]
               for (q, r), s in zip(ours, sent, strict=True))


@FUZZ
@given(edits, edits, cuts, cuts)
def test_mutated_http1_is_cut_invariant(ce, se, ccut, scut):
    client, server = _mutate(H1, ce), _mutate(H1R, se)
    assert _parse(client, server, ccut, scut) == _parse(client, server)


def test_unmutated_http1_seed_parses_fully():
    """The seed conversation the mutations start from is itself parsed completely."""
    ours, error = _parse(H1, H1R, truncated=False)
    assert error is None and [(q["method"], r["status"]) for q, r in ours] == [("POST", 200), ("GET", 404)]


@FUZZ
@given(st.binary(max_size=2048), st.binary(max_size=2048), cuts, cuts)
def test_random_bytes_are_cut_invariant(client, server, ccut, scut):
    for prefix in (b"", b"POST / HTTP/1.1\r\n", PREFACE):
        assert _parse(prefix + client, server, ccut, scut) == _parse(prefix + client, server)


# -- HTTP/2: round trip through h2's own peers ---------------------------------------------------
h2_value = st.text(string.ascii_letters + string.digits + " -_./:;=,", min_size=1, max_size=24).map(str.strip).filter(bool)
h2_headers = st.lists(st.tuples(header_name.map(str.lower), h2_value), max_size=4)


@st.composite
def h2_exchanges(draw) -> list[tuple]:
    out = []
    for _ in range(draw(st.integers(1, 3))):
        path = "/" + draw(st.text(string.ascii_letters + string.digits + "/-_.", max_size=16))
        req_h = [(":method", "POST"), (":path", path), (":authority", "r.example"), (":scheme", "https"),
                 *draw(h2_headers)]
        resp_h = [(":status", str(draw(st.sampled_from([200, 400, 429, 500])))), *draw(h2_headers)]
        out.append((req_h, draw(st.binary(max_size=300)), resp_h, draw(st.binary(min_size=1, max_size=3000))))
    return out


@FUZZ
@given(h2_exchanges(), st.integers(1, 5), cuts, cuts)
def test_http2_round_trip(exchanges, split, ccut, scut):
    conv = h2_connection(exchanges, split=split)
    client = b"".join(d for c, d in conv if c)
    server = b"".join(d for c, d in conv if not c)
    ours, error = _parse(client, server, ccut, scut, truncated=False)
    assert error is None
    assert len(ours) == len(exchanges)
    for (q, r), (req_h, req_b, resp_h, resp_b) in zip(ours, exchanges, strict=True):
        assert (q["method"], q["path"], q["authority"]) == ("POST", req_h[1][1], "r.example")
        assert [h for h in q["headers"] if not h[0].startswith(":")] == req_h[4:]
        assert q["body"] == req_b and r["body"] == resp_b
        assert r["status"] == int(resp_h[0][1])
        assert [h for h in r["headers"] if not h[0].startswith(":")] == resp_h[1:]
        assert not q["truncated"] and not r["truncated"]


@FUZZ
@given(edits, st.integers(0, len(H2) - 1), cuts, cuts)
def test_mutated_http2_is_cut_invariant(e, which, ccut, scut):
    conv = list(H2)
    frm, data = conv[which]
    conv[which] = (frm, _mutate(data, e))
    client = b"".join(d for c, d in conv if c)
    server = b"".join(d for c, d in conv if not c)
    assert _parse(client, server, ccut, scut) == _parse(client, server)


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
@given(frames(), frames(), cuts, cuts)
def test_random_http2_frames_are_cut_invariant(c, s, ccut, scut):
    s = s[len(PREFACE):]
    assert _parse(c, s, ccut, scut) == _parse(c, s)


# -- content decoding ----------------------------------------------------------------------------
_ENCODERS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
}


def _decode(enc: str, pieces: list[bytes]) -> tuple[bytes, str | None]:
    d = BodyDecoder(enc)
    out = b"".join(d.feed(p) for p in pieces) + d.flush()
    return out, d.error


@FUZZ
@given(st.binary(max_size=4096), st.lists(st.sampled_from(sorted(_ENCODERS)), min_size=1, max_size=3), cuts)
def test_content_decoding_round_trip(data, chain, cut):
    wire = data
    for name in chain:  # applied in header order, so the last one listed is undone first
        wire = _ENCODERS[name](wire)
    out, error = _decode(", ".join(chain), _pieces(wire, cut))
    assert error is None and out == data


@FUZZ
@given(st.binary(max_size=4096), st.sampled_from(["gzip", "deflate", "br", "zstd", "gzip, br", "bogus", "identity"]),
       cuts)
def test_content_decoding_is_cut_invariant(data, enc, cut):
    """The same verdict whole or in pieces; the same output when the body is sound. A corrupt one may
    lose the output of the read that hit the error (zlib drops it), so there each is a prefix of the other."""
    (out_p, err_p), (out_w, err_w) = _decode(enc, _pieces(data, cut)), _decode(enc, [data])
    assert err_p == err_w
    if err_w is None:
        assert out_p == out_w
    else:
        shorter, longer = sorted((out_p, out_w), key=len)
        assert longer.startswith(shorter)


# -- SSE -----------------------------------------------------------------------------------------
sse_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=30)


@st.composite
def sse_events(draw) -> list[tuple[str, str, str | None]]:
    """(event type, data, id) with multi-line data and no CR/LF inside a field."""
    out = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.one_of(st.none(), sse_text.filter(lambda s: s and not s.startswith(" "))))
        lines = draw(st.lists(sse_text, min_size=1, max_size=3))
        ev_id = draw(st.one_of(st.none(), sse_text.filter(lambda s: not s.startswith(" "))))
        out.append((name, "\n".join(lines), ev_id))
    return out


@FUZZ
@given(sse_events(), st.sampled_from(["\n", "\r\n", "\r"]), st.booleans())
def test_sse_round_trip(events, eol, comments):
    text = ""
    for name, data, ev_id in events:
        if comments:
            text += ": keep-alive" + eol
        if name is not None:
            text += f"event: {name}{eol}"
        if ev_id is not None:
            text += f"id: {ev_id}{eol}"
        text += "".join(f"data: {line}{eol}" for line in data.split("\n")) + eol
    got = [(e.event, e.data, e.complete) for e in parse_sse(text.encode())]
    assert got == [(name or "message", data, True) for name, data, _ in events]


@FUZZ
@given(st.binary(max_size=2048))
def test_sse_line_endings_are_equivalent(data):
    def key(evs: list[SseEvent]) -> list[tuple]:
        return [(e.event, e.data, e.id, e.complete) for e in evs]

    assert key(parse_sse(data)) == key(parse_sse(data.replace(b"\r\n", b"\n")))


# -- LLM decoders ----------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["model", "stream", "messages", "choices", "delta", "tool_calls", "function", "index",
                         "arguments", "name", "id", "type", "content", "input", "output", "item", "usage",
                         "message", "content_block", "partial_json", "output_index", "response", "candidates",
                         "parts", "functionCall", "args", "text", "object"]), children, max_size=6),
    max_leaves=20,
)
tool_calls = st.lists(st.tuples(st.text(string.ascii_letters + "_", min_size=1, max_size=12),
                                st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=3).map(
                                    lambda d: json.dumps(d, ensure_ascii=False))), max_size=3)


def _stream_events(body: bytes) -> list[SseEvent]:
    return parse_sse(body)


@FUZZ
@given(tool_calls, st.text(max_size=40))
def test_streamed_tool_calls_round_trip(calls, text):
    chat = openai.decode_chat({"model": "m", "stream": True}, None, _stream_events(openai_chat_stream("m", calls, text)), 0.0)
    assert [(c.name, c.arguments, c.idx) for c in chat.tool_calls] == [(n, a, i) for i, (n, a) in enumerate(calls)]
    assert chat.model_returned == "m" and not chat.truncated and chat.text == text
    msgs = anthropic.decode_messages({"model": "m", "stream": True}, None,
                                     _stream_events(anthropic_stream("m", calls, text)), 0.0)
    assert [(c.name, c.arguments, c.idx) for c in msgs.tool_calls] == [(n, a, i) for i, (n, a) in enumerate(calls)]
    assert msgs.model_returned == "m" and not msgs.truncated and msgs.text == text


@FUZZ
@given(tool_calls)
def test_body_tool_calls_round_trip(calls):
    chat_body = {"model": "m", "choices": [{"message": {"tool_calls": [
        {"id": f"c{i}", "function": {"name": n, "arguments": a}} for i, (n, a) in enumerate(calls)]}}]}
    chat = openai.decode_chat({"model": "m"}, json.dumps(chat_body).encode(), None, 0.0)
    assert [(c.name, c.arguments, c.call_id) for c in chat.tool_calls] == [(n, a, f"c{i}") for i, (n, a) in enumerate(calls)]
    resp_body = {"model": "m", "output": [{"type": "function_call", "name": n, "arguments": a, "call_id": f"c{i}"}
                                          for i, (n, a) in enumerate(calls)]}
    responses = openai.decode_responses({"model": "m"}, json.dumps(resp_body).encode(), None, 0.0)
    assert [(c.name, c.arguments) for c in responses.tool_calls] == calls
    msg_body = {"model": "m", "content": [{"type": "tool_use", "name": n, "id": f"t{i}", "input": json.loads(a)}
                                          for i, (n, a) in enumerate(calls)]}
    msgs = anthropic.decode_messages({"model": "m"}, json.dumps(msg_body).encode(), None, 0.0)
    assert [(c.name, json.loads(c.arguments)) for c in msgs.tool_calls] == [(n, json.loads(a)) for n, a in calls]


@FUZZ
@given(json_values, json_values, st.lists(json_values, max_size=6), st.binary(max_size=512))
def test_llm_decoders_on_arbitrary_json(req, resp, events, raw):
    evs = [SseEvent("message", json.dumps(e), None, 1.0) for e in events] + [SseEvent("x", raw.decode("latin-1"), None, None)]
    body = json.dumps(resp).encode()
    for f, api in ((openai.decode_chat, "openai.chat"), (openai.decode_responses, "openai.responses"),
                   (anthropic.decode_messages, "anthropic.messages")):
        for r in (f(req, body, None, 0.0), f(req, raw, None, 0.0), f(req, None, evs, 0.0)):
            assert r.api == api
            resp_calls = [c for c in r.tool_calls if c.direction == "response"]
            assert [c.idx for c in resp_calls] == list(range(len(resp_calls)))
            assert all(isinstance(c.arguments, str) for c in r.tool_calls)
        assert f(req, None, evs, 0.0).streamed is True
        assert "invalid_json_response" in f(req, b"\xff{", None, 0.0).errors
    for path, streamed in (("/v1beta/models/g:streamGenerateContent", True), ("/v1beta/models/g:generateContent", False)):
        r = gemini.decode_generate(path, req, body, evs if streamed else None, 0.0)
        assert r.api == "gemini.generate" and r.model_requested == "g" and r.streamed is streamed
        assert [c.idx for c in r.tool_calls] == list(range(len(r.tool_calls)))


CTX = DecodeContext("h", Fingerprinter(b"f" * 32), "keylog")


@FUZZ
@given(st.sampled_from(["/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1beta/models/x:generateContent",
                        "/other"]), json_values, st.binary(max_size=1024), st.booleans())
def test_decode_http_rows(path, req, resp_body, sse_ctype):
    ctype = "text/event-stream" if sse_ctype else "application/json"
    r = decode_http(HttpRequest("POST", "h", path, [("authorization", "Bearer x")], json.dumps(req).encode(), 1.0),
                    HttpResponse(200, [("content-type", ctype)], resp_body, 2.0), CTX)
    assert len(r.tables["http"]) == 1
    assert len(r.tables["llm_exchanges"]) <= 1


secretish = st.text(alphabet=st.sampled_from(list("sk-antproj_AKIAghpxoxb0123456789abcdefABCDEF \n\\\"{}:=0x")),
                    max_size=300)


@FUZZ
@given(st.one_of(st.text(max_size=500), secretish))
def test_secret_scanner(text):
    red, pairs = redact(text, Fingerprinter(b"f" * 32))
    for m, _ in pairs:
        assert text[m.start:m.end] == m.value
    assert len(detect(red)) <= len([m for m, _ in pairs]) + len(detect(text))
