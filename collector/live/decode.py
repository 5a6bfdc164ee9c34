"""Uprobe plaintext -> the shared HTTP/LLM decoders (collector.llm.pipeline), as store rows."""

from __future__ import annotations

from collector.llm.pipeline import DecodeContext, decode_connection
from collector.protocols.messages import ConnectionBytes
from collector.secrets import Fingerprinter


def decode_plaintext(cb: ConnectionBytes, flow: dict, host_id: str, fp: Fingerprinter) -> list[tuple[str, list[dict]]]:
    """One closed connection's plaintext -> [(table, rows)] (http, llm_exchanges, tool_calls, secrets_seen)."""
    ctx = DecodeContext(host_id=host_id, fingerprinter=fp, source="uprobe", pid=cb.pid)
    out = decode_connection(cb, ctx)
    return [(t, rows) for t, rows in out.tables.items() if rows]
