"""A small loopback HTTPS "router" with its own CA: OpenAI chat (JSON, gzip), Anthropic messages (SSE,
chunked), a 1 MB body. Enough to exercise the proxy without the full router zoo."""

from __future__ import annotations

import gzip
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from collector.proxy.ca import CertificateAuthority

TOOL_CALL = {"name": "bash", "arguments": json.dumps({"command": "ls -la /tmp"})}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a: object) -> None:
        self.server.paths.append(self.path)  # type: ignore[attr-defined]

    def _body(self) -> bytes:
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n)

    def _send(self, status: int, body: bytes, ctype: str = "application/json", gz: bool = False) -> None:
        if gz:
            body = gzip.compress(body)
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.send_header("x-router", "test-router")
        if gz:
            self.send_header("content-encoding", "gzip")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/big"):
            self._send(200, b"x" * 1_000_000, "application/octet-stream")
        else:
            self._send(200, b'{"ok": true}')

    def do_POST(self) -> None:  # noqa: N802
        req = json.loads(self._body() or b"{}")
        if self.path.startswith("/v1/chat/completions"):
            resp = {"id": "chatcmpl-1", "object": "chat.completion", "model": req.get("model", "gpt-4o"),
                    "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                        "role": "assistant", "content": None,
                        "tool_calls": [{"id": "call_1", "type": "function", "function": TOOL_CALL}]}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
            gz = "gzip" in (self.headers.get("accept-encoding") or "")
            self._send(200, json.dumps(resp).encode(), gz=gz)
        elif self.path.startswith("/v1/messages"):
            events = [
                ("message_start", {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                   "model": req.get("model", "claude"), "content": [], "usage": {"input_tokens": 9, "output_tokens": 1}}}),
                ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
                    "type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}}),
                ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                    "type": "input_json_delta", "partial_json": json.dumps({"command": "ls -la /tmp"})}}),
                ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 12}}),
                ("message_stop", {"type": "message_stop"}),
            ]
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for name, data in events:
                chunk = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif ":streamGenerateContent" in self.path or ":generateContent" in self.path:
            model = self.path.split("/models/", 1)[-1].split(":", 1)[0]
            call = {"functionCall": {"name": "run_shell_command", "args": {"command": "ls -la /tmp"}}}
            answer = [call] if not _after_tool(req) else [{"text": "Done."}]
            chunk = {"candidates": [{"content": {"role": "model", "parts": answer}, "finishReason": "STOP", "index": 0}],
                     "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 5, "totalTokenCount": 17},
                     "modelVersion": model}
            if "alt=sse" in self.path:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                data = f"data: {json.dumps(chunk)}\r\n\r\n".encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n")
            else:
                self._send(200, json.dumps(chunk).encode())
        elif ":countTokens" in self.path:
            self._send(200, b'{"totalTokens": 12}')
        else:
            self.log_message("unhandled %s", self.path)
            self._send(404, b'{"error": "not found"}')


def _after_tool(req: dict) -> bool:
    """Gemini request whose last turn carries a functionResponse (the agent reports the tool's result)."""
    contents = req.get("contents") or []
    last = contents[-1] if contents else {}
    return any("functionResponse" in p for p in last.get("parts") or [])


class Router:
    def __init__(self, ca: CertificateAuthority, host: str = "127.0.0.1"):
        self.ca = ca
        server_cls = ThreadingHTTPServer
        if ":" in host:
            class _V6(ThreadingHTTPServer):
                address_family = socket.AF_INET6

            server_cls = _V6
        self.httpd = server_cls((host, 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.paths = []  # type: ignore[attr-defined]
        ctx = ca.server_context(host, alpn=("http/1.1",))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.url = f"https://[{host}]:{self.port}" if ":" in host else f"https://{host}:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
