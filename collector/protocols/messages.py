"""What every plaintext source hands to the HTTP/LLM decoders.

Three sources produce plaintext: tshark decryption of a capture with a key log, libssl uprobes
(live), and the TLS-intercepting proxy. The first two yield a connection's raw byte streams
(`ConnectionBytes`, parsed by collector.protocols); the proxy yields already-parsed messages
(`HttpRequest`/`HttpResponse`). Both reach the same LLM decoders in collector.llm.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Chunk:
    """Bytes seen in one direction at time `ts` (seconds since the epoch)."""

    ts: float
    data: bytes


@dataclass
class ConnectionBytes:
    """One connection's plaintext, each direction in order."""

    client: list[Chunk]  # client -> server
    server: list[Chunk]  # server -> client
    flow_uid: str | None = None
    community_id: str | None = None
    src_ip: str | None = None
    src_port: int | None = None
    dst_ip: str | None = None
    dst_port: int | None = None
    server_name: str | None = None  # SNI
    alpn: str | None = None  # 'h2', 'http/1.1' or None (sniffed from the bytes)
    pid: int | None = None
    truncated: bool = False  # bytes are missing (capture ended, uprobe size limit, ...)


@dataclass
class HttpRequest:
    method: str
    authority: str  # Host header or :authority
    path: str
    headers: list[tuple[str, str]]
    body: bytes  # decoded (Content-Encoding removed)
    ts: float
    http_version: str = "HTTP/1.1"
    stream_id: int | None = None
    truncated: bool = False
    # Filled by the byte-stream parsers (collector.protocols); None means "compute from body".
    ts_end: float | None = None  # last byte
    body_size: int | None = None  # decoded size, also when `body` holds only a capped prefix
    body_sha256: str | None = None  # of the full decoded body
    body_capped: bool = False  # `body` is a prefix (size cap)
    error: str | None = None  # framing/decoding problem noticed while parsing (no secret content)


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes  # decoded (Content-Encoding removed); for SSE the whole event stream
    ts: float  # first byte
    ts_end: float | None = None
    http_version: str = "HTTP/1.1"
    truncated: bool = False
    chunks: list[Chunk] = field(default_factory=list)  # body pieces as they arrived (SSE timing)
    body_size: int | None = None
    body_sha256: str | None = None
    body_capped: bool = False
    error: str | None = None
