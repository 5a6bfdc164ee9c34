"""The proxy's hand-off to the shared HTTP/LLM decoders (collector.llm.pipeline.decode_http).

The proxy already has parsed messages, so it skips the byte-stream parsers and calls the same
`decode_http` that the key-log and uprobe paths reach, with the connection's metadata: every row
it writes is redacted there (collector.secrets), exactly as for the other plaintext sources.
"""

from __future__ import annotations

from collector.llm import pipeline
from collector.protocols.messages import Connection, HttpRequest, HttpResponse
from collector.secrets import Fingerprinter


class ExchangeDecoder:
    """Callable (request, response, upstream connection, host_id, seq) -> {table: rows}."""

    def __init__(self, fingerprinter: Fingerprinter):
        self.fp = fingerprinter

    def __call__(self, req: HttpRequest, resp: HttpResponse | None, conn: Connection, host_id: str,
                 seq: int = 0) -> dict[str, list[dict]]:
        ctx = pipeline.DecodeContext(host_id=host_id, fingerprinter=self.fp, source="proxy", pid=conn.pid)
        rows = pipeline.decode_http(req, resp, ctx, conn, seq=seq)
        return {t: list(r) for t, r in rows.tables.items()}
