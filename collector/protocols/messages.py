"""What every plaintext source hands to the HTTP/LLM decoders.

Three sources produce plaintext: decryption of a capture with a key log, libssl/Go uprobes (live),
and the TLS-intercepting proxy. Each knows its connection as a `Connection` (the one identity type:
the key-log path's `StreamMeta` and the uprobe path's `ConnectionBytes` extend it, the proxy builds
one for its upstream leg), and each connection's bytes go through the same parsers
(collector.protocols: HTTP/1.1, HTTP/2) to `HttpRequest`/`HttpResponse` pairs, which reach the same
decoders (collector.llm.pipeline.decode_http).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass
class Chunk:
    """Bytes seen in one direction at time `ts` (seconds since the epoch)."""

    ts: float
    data: bytes


@dataclass
class Connection:
    """Which connection an exchange travelled on, as far as its source knows: what the decoders put
    in every row (flow_uid links to `flows`; community_id stands in where no flow is known yet)."""

    flow_uid: str | None = None
    community_id: str | None = None
    src_ip: str | None = None  # the client's end
    src_port: int | None = None
    dst_ip: str | None = None  # the server's end
    dst_port: int | None = None
    server_name: str | None = None  # SNI, or the proxy's CONNECT target
    alpn: str | None = None  # 'h2', 'http/1.1' or None (sniffed from the bytes)
    pid: int | None = None  # the client process, when attributed

    def identity(self) -> Connection:
        """Just the identity (a source's record may carry more): small to pickle, and a copy."""
        return Connection(**{f.name: getattr(self, f.name) for f in fields(Connection)})


@dataclass(kw_only=True)
class ConnectionBytes(Connection):
    """One connection's plaintext, each direction in order (the uprobe and test paths)."""

    client: list[Chunk]  # client -> server
    server: list[Chunk]  # server -> client
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
