"""The proxy's tap on its own: the shared parsers cut the relayed bytes into exchanges exactly as the
key-log/uprobe path does, a WebSocket upgrade hands the bytes that follow the 101 (same read
included) to the frame reader, and the end of the connection settles what is open."""

from __future__ import annotations

import os

from collector.protocols.connection import parse_connection
from collector.proxy.tap import Exchange, H2Tap, Http1Tap
from tests.collector.protocols.wire import conn_from, conn_from_conv, h1_request, h1_response, h2_connection


def _tap(cls=Http1Tap, authority: str = "router.example:8443") -> tuple[Http1Tap, list[Exchange]]:  # noqa: ANN001
    got: list[Exchange] = []
    return cls(authority, got.append), got


def _key(req, resp) -> tuple:  # noqa: ANN001
    return (req.method, req.authority, req.path, req.headers, req.body, req.body_sha256, req.truncated,
            resp.status, resp.headers, resp.body, resp.body_sha256, resp.truncated)


def test_same_exchanges_as_the_key_log_path_in_any_reads() -> None:
    client = h1_request("POST", "/v1/chat/completions", "r", b'{"model":"m"}' * 50) + h1_request("GET", "/v1/models", "r")
    server = (h1_response(200, os.urandom(3000), chunked=True, pieces=7)
              + h1_response(200, b'{"data":[]}', headers=[("Content-Type", "application/json")]))
    want = [_key(q, r) for q, r in parse_connection(conn_from(client, server))[0]]
    for n in (1, 7, 1 << 20):
        tap, got = _tap()
        for i in range(0, len(client), n):
            tap.client_data(client[i : i + n], 1.0)
        for i in range(0, len(server), n):
            tap.server_data(server[i : i + n], 2.0)
        tap.close(3.0)
        assert [_key(e.request, e.response) for e in got] == want and tap.exchanges == 2 and tap.error is None


def test_h2_tap_matches_the_key_log_path() -> None:
    conv = h2_connection([([(":method", "POST"), (":path", "/v1/messages"), (":authority", "r"), (":scheme", "https")],
                           b'{"model":"m"}', [(":status", "200")], b"x" * 5000)] * 3)
    want = [_key(q, r) for q, r in parse_connection(conn_from_conv(conv))[0]]
    tap, got = _tap(H2Tap)
    for from_client, data in conv:
        (tap.client_data if from_client else tap.server_data)(data, 1.0)
    tap.close(2.0)
    assert [_key(e.request, e.response) for e in got] == want and len(want) == 3


def _masked(payload: bytes, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_websocket_frames_in_the_same_read_as_the_101() -> None:
    tap, got = _tap()
    tap.client_data(b"GET /v1/realtime HTTP/1.1\r\nHost: r\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 1.0)
    tap.server_data(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n" + b"\x81\x05hello", 2.0)
    tap.client_data(_masked(b'{"type":"response.create"}'), 3.0)
    tap.server_data(b"\x81\x03bye", 4.0)
    assert got == []  # the session is one exchange, emitted when the connection ends
    tap.close(5.0)
    (ex,) = got
    assert ex.request.path == "/v1/realtime" and ex.response.status == 101 and ex.websocket is not None
    ws = ex.websocket
    assert (ws.messages_in, ws.messages_out) == (2, 1) and [t for _, t in ws.text_in] == ["hello", "bye"]
    assert ws.text_out == [(3.0, '{"type":"response.create"}')] and ws.error is None and tap.error is None


def test_other_upgrades_are_not_read_and_say_so() -> None:
    tap, got = _tap()
    tap.client_data(b"GET / HTTP/1.1\r\nHost: r\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n", 1.0)
    tap.server_data(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n\x00\x00\x00\x04\x00", 2.0)
    tap.close(3.0)
    (ex,) = got
    assert ex.response.status == 101 and ex.response.truncated and tap.error == "unsupported upgrade 'h2c'"


def test_close_settles_open_exchanges() -> None:
    tap, got = _tap()
    tap.client_data(h1_request("GET", "/a", "") + h1_request("POST", "/b", "r", b"half of it"), 1.0)
    tap.server_data(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", 2.0)
    tap.close(9.0)
    a, b = got
    # no Host value: the CONNECT target; a body framed by the close is complete at the close
    assert (a.request.authority, a.response.body, a.response.truncated, a.response.ts_end) == (
        "router.example:8443", b"until the end", False, 9.0)
    assert b.request.path == "/b" and b.request.truncated and b.response is None
