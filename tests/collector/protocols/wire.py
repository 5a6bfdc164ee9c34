"""Builders of real HTTP/1.1 and HTTP/2 byte streams (HTTP/2 from the h2 library's own client and
server state machines, so frames and HPACK are what real peers produce) and of LLM SSE bodies."""

from __future__ import annotations

import gzip
import json

import h2.config
import h2.connection

from collector.protocols.messages import Chunk, ConnectionBytes


def h1_request(method: str, path: str, host: str, body: bytes = b"", headers=(), chunked: bool = False) -> bytes:
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}", *[f"{k}: {v}" for k, v in headers]]
    if chunked:
        head.append("Transfer-Encoding: chunked")
        payload = (b"%x\r\n" % len(body) + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
    else:
        if body or method in ("POST", "PUT"):
            head.append(f"Content-Length: {len(body)}")
        payload = body
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload


def h1_response(status: int, body: bytes = b"", headers=(), chunked: bool = False, pieces: int = 1) -> bytes:
    head = [f"HTTP/1.1 {status} OK", *[f"{k}: {v}" for k, v in headers]]
    if chunked:
        head.append("Transfer-Encoding: chunked")
        step = max(1, len(body) // pieces + 1)
        payload = b"".join(b"%x\r\n" % len(body[i : i + step]) + body[i : i + step] + b"\r\n"
                           for i in range(0, len(body), step)) + b"0\r\n\r\n"
    else:
        head.append(f"Content-Length: {len(body)}")
        payload = body
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload


def h2_connection(exchanges, *, gzip_response: bool = False, split: int = 3) -> list[tuple[bool, bytes]]:
    """exchanges: [(request headers, request body, response headers, response body)] -> the
    conversation as (from_client, bytes) in causal order, produced by h2's client and server talking
    to each other. Response bodies are sent in `split` DATA frames."""
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    s = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, validate_inbound_headers=False))
    c.initiate_connection()
    s.initiate_connection()
    conv: list[tuple[bool, bytes]] = []

    def pump() -> None:
        for _ in range(4):
            d = c.data_to_send()
            if d:
                conv.append((True, d))
                s.receive_data(d)
            d = s.data_to_send()
            if d:
                conv.append((False, d))
                c.receive_data(d)

    pump()
    for req_h, req_b, resp_h, resp_b in exchanges:
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, req_h, end_stream=not req_b)
        if req_b:
            c.send_data(sid, req_b, end_stream=True)
        pump()
        if gzip_response:
            resp_h = [*resp_h, ("content-encoding", "gzip")]
            resp_b = gzip.compress(resp_b)
        s.send_headers(sid, resp_h, end_stream=not resp_b)
        step = max(1, len(resp_b) // split + 1)
        for i in range(0, len(resp_b), step):
            s.send_data(sid, resp_b[i : i + step], end_stream=i + step >= len(resp_b))
            pump()
        pump()
    return conv


def conn_from_conv(conv: list[tuple[bool, bytes]], **kw) -> ConnectionBytes:
    t = 1000.0
    cc, ss = [], []
    for from_client, data in conv:
        (cc if from_client else ss).append(Chunk(t, data))
        t += 0.01
    return ConnectionBytes(client=cc, server=ss, **kw)


def conn_from(client: list[bytes] | bytes, server: list[bytes] | bytes, **kw) -> ConnectionBytes:
    """Alternate client and server chunks in time (client first), 10 ms apart."""
    client = [client] if isinstance(client, bytes) else client
    server = [server] if isinstance(server, bytes) else server
    t = 1000.0
    cc, ss = [], []
    for i in range(max(len(client), len(server))):
        if i < len(client):
            cc.append(Chunk(t, client[i]))
            t += 0.01
        if i < len(server):
            ss.append(Chunk(t, server[i]))
            t += 0.01
    return ConnectionBytes(client=cc, server=ss, **kw)


def sse(objs, event_names=None, done: bool = False) -> bytes:
    out = b""
    for i, o in enumerate(objs):
        if event_names:
            out += f"event: {event_names[i]}\n".encode()
        out += b"data: " + json.dumps(o).encode() + b"\n\n"
    if done:
        out += b"data: [DONE]\n\n"
    return out


def split_text(s: str, n: int) -> list[str]:
    return [s[i : i + n] for i in range(0, len(s), n)] or [""]


def openai_chat_stream(model: str, calls: list[tuple[str, str]], text: str = "", usage=(10, 20)) -> bytes:
    """A Chat Completions stream whose tool calls' arguments arrive in 7-character deltas."""
    chunks = [{"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model,
               "choices": [{"index": 0, "delta": {"role": "assistant", "content": text or None}}]}]
    for ti, (name, args) in enumerate(calls):
        for j, piece in enumerate(split_text(args, 7)):
            tc = {"index": ti, "function": {"arguments": piece}}
            if j == 0:
                tc.update(id=f"call_{ti}", type="function")
                tc["function"]["name"] = name
            chunks.append({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model,
                           "choices": [{"index": 0, "delta": {"tool_calls": [tc]}}]})
    chunks.append({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model,
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls" if calls else "stop"}]})
    chunks.append({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model, "choices": [],
                   "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1]}})
    return sse(chunks, done=True)


def anthropic_stream(model: str, calls: list[tuple[str, str]], text: str = "hi", usage=(11, 22)) -> bytes:
    ev = [("message_start", {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                                  "model": model, "content": [],
                                                                  "usage": {"input_tokens": usage[0], "output_tokens": 1}}}),
          ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
          ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
          ("content_block_stop", {"type": "content_block_stop", "index": 0})]
    for i, (name, args) in enumerate(calls, start=1):
        ev.append(("content_block_start", {"type": "content_block_start", "index": i,
                                           "content_block": {"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": {}}}))
        for piece in split_text(args, 5):
            ev.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                               "delta": {"type": "input_json_delta", "partial_json": piece}}))
        ev.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    ev.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                                 "usage": {"output_tokens": usage[1]}}))
    ev.append(("message_stop", {"type": "message_stop"}))
    return sse([e for _, e in ev], [n for n, _ in ev])
