"""The proxy's hand-off to the shared HTTP/LLM decoders (collector.llm.pipeline.decode_http).

The proxy already has parsed messages, so it skips the byte-stream parsers and calls the same
`decode_http` that the key-log and uprobe paths reach, with the connection's metadata. Until that
pipeline is importable, a minimal decoder writes the `http` row only (headers redacted by
collector.secrets), so proxy mode never stores a credential in the clear either way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets as _random

from collector.protocols.messages import HttpRequest, HttpResponse
from collector.secrets import Fingerprinter, redact_headers, secret_row


def _ts(t: float | None) -> dt.datetime | None:
    return None if t is None else dt.datetime.fromtimestamp(t, dt.UTC).replace(tzinfo=None)


class ExchangeDecoder:
    """Callable (request, response, meta) -> {table: rows}; `meta` is the sink's connection metadata."""

    def __init__(self, fingerprinter: Fingerprinter):
        self.fp = fingerprinter
        try:
            from collector.llm import pipeline  # noqa: F401
        except ImportError:
            self._pipeline = None
        else:
            self._pipeline = pipeline

    def __call__(self, req: HttpRequest, resp: HttpResponse | None, meta: dict) -> dict[str, list[dict]]:
        if self._pipeline is not None:
            return self._via_pipeline(req, resp, meta)
        return self._http_only(req, resp, meta)

    def _via_pipeline(self, req: HttpRequest, resp: HttpResponse | None, meta: dict) -> dict[str, list[dict]]:
        p = self._pipeline
        ctx = p.DecodeContext(host_id=meta["host_id"], fingerprinter=self.fp, source="proxy", pid=meta.get("pid"))
        conn = p.ConnMeta(**{k: meta.get(k) for k in ("flow_uid", "pid", "dst_ip", "dst_port", "server_name")})
        rows = p.decode_http(req, resp, ctx, conn, seq=meta.get("seq", 0))
        return {t: list(r) for t, r in rows.tables.items()}

    def _http_only(self, req: HttpRequest, resp: HttpResponse | None, meta: dict) -> dict[str, list[dict]]:
        exchange_id = "X" + _random.token_hex(10)
        req_h, found = redact_headers(req.headers, self.fp)
        resp_h, found_r = redact_headers(resp.headers if resp else [], self.fp)
        row = {
            "ts": _ts(req.ts), "host_id": meta["host_id"], "flow_uid": meta["flow_uid"], "exchange_id": exchange_id,
            "method": req.method, "host": req.authority, "path": req.path,
            "status": resp.status if resp else None, "http_version": req.http_version,
            "request_headers": json.dumps(req_h), "response_headers": json.dumps(resp_h),
            "request_body_bytes": len(req.body), "response_body_bytes": len(resp.body) if resp else None,
            "request_digest": hashlib.sha256(req.body).hexdigest(),
            "response_digest": hashlib.sha256(resp.body).hexdigest() if resp else None,
            "ts_response": _ts(resp.ts) if resp else None,
            "duration_ms": ((resp.ts_end or resp.ts) - req.ts) * 1000 if resp else None,
            "truncated": req.truncated or (resp.truncated if resp else True), "source": "proxy",
        }
        secrets_rows = [
            secret_row(m, f, direction=d, location=name, destination=req.authority, ts=_ts(req.ts),
                       host_id=meta["host_id"], flow_uid=meta["flow_uid"], exchange_id=exchange_id, pid=meta.get("pid"))
            for d, lst in (("request", found), ("response", found_r)) for name, m, f in lst
        ]
        return {"http": [row], "secrets_seen": secrets_rows}
