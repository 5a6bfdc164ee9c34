"""The proxy's hand-off to the shared HTTP/LLM decoders (collector.llm.pipeline.decode_http).

The proxy already has parsed messages, so it skips the byte-stream parsers and calls the same
`decode_http` that the key-log and uprobe paths reach, with the connection's metadata: every row
it writes is redacted there (collector.secrets), exactly as for the other plaintext sources.
"""

from __future__ import annotations

from collector.llm import pipeline
from collector.protocols.messages import HttpRequest, HttpResponse
from collector.secrets import Fingerprinter

CONN_FIELDS = ("flow_uid", "pid", "dst_ip", "dst_port", "server_name")


class ExchangeDecoder:
    """Callable (request, response, meta) -> {table: rows}; `meta` is the sink's connection metadata
    (host_id, flow_uid, pid, dst_ip, dst_port, server_name, seq)."""

    def __init__(self, fingerprinter: Fingerprinter):
        self.fp = fingerprinter

    def __call__(self, req: HttpRequest, resp: HttpResponse | None, meta: dict) -> dict[str, list[dict]]:
        ctx = pipeline.DecodeContext(host_id=meta["host_id"], fingerprinter=self.fp, source="proxy",
                                     pid=meta.get("pid"))
        conn = pipeline.ConnMeta(**{k: meta.get(k) for k in CONN_FIELDS})
        rows = pipeline.decode_http(req, resp, ctx, conn, seq=meta.get("seq", 0))
        return {t: list(r) for t, r in rows.tables.items()}
