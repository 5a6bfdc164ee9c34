"""Uprobe plaintext -> the shared HTTP/LLM decoders (collector.llm.pipeline), as store rows.

Two entry points over the same parser and row builder, so an exchange's rows are the same whichever
one produced them: `decode_plaintext` decodes a connection that ended (every exchange, the unfinished
ones marked truncated), `decode_completed` a connection still open (only the exchanges whose request
and response are both finished: what the parser returns before it is told the connection ended).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from collector.llm.pipeline import DecodeContext, decode_exchanges
from collector.protocols.connection import Exchange, feed_connection
from collector.protocols.messages import ConnectionBytes
from collector.secrets import Fingerprinter


@dataclass
class Completed:
    """What an open connection's bytes so far hold."""

    tables: list[tuple[str, list[dict]]] = field(default_factory=list)  # rows of finished exchanges from `skip` on
    exchanges: int = 0  # finished exchanges in the bytes (including the first `skip`)
    idle: bool = False  # HTTP/1.x between exchanges: the bytes fed can be dropped, nothing is pending
    protocol: str | None = None  # 'h1' | 'h2' | 'other' | None (not known yet)


def _ctx(cb: ConnectionBytes, host_id: str, fp: Fingerprinter) -> DecodeContext:
    return DecodeContext(host_id=host_id, fingerprinter=fp, source="uprobe", pid=cb.pid)


def _rows(exchanges: list[Exchange], ctx: DecodeContext, cb: ConnectionBytes, start_seq: int):
    out = decode_exchanges(exchanges, ctx, cb, start_seq=start_seq)
    return [(t, rows) for t, rows in out.tables.items() if rows]


def decode_plaintext(cb: ConnectionBytes, flow: dict, host_id: str, fp: Fingerprinter,
                     start_seq: int = 0) -> list[tuple[str, list[dict]]]:
    """One closed connection's plaintext -> [(table, rows)] (http, llm_exchanges, tool_calls, secrets_seen,
    dns). `start_seq`: exchanges of this connection already decoded from bytes since dropped (their
    count numbers the rest, as `collector.llm.pipeline.exchange_id` needs)."""
    ctx = _ctx(cb, host_id, fp)
    exchanges, parser = feed_connection(cb, keep=ctx.parse_cap)
    exchanges += parser.close(truncated=cb.truncated)
    return _rows(exchanges, ctx, cb, start_seq)


def decode_completed(cb: ConnectionBytes, host_id: str, fp: Fingerprinter, *, start_seq: int = 0,
                     skip: int = 0) -> Completed:
    """An open connection's plaintext so far -> rows of its finished exchanges from the `skip`-th on.

    An exchange is finished when the parser returns it before the connection ends: the response's
    body is complete (Content-Length reached, last chunk, HTTP/2 END_STREAM or a reset). A response
    delimited by the connection's end, a stream still arriving and a request still unanswered are not."""
    ctx = _ctx(cb, host_id, fp)
    exchanges, p = feed_connection(cb, keep=ctx.parse_cap)
    done = Completed(exchanges=len(exchanges), protocol=p.protocol)
    if exchanges[skip:]:
        done.tables = _rows(exchanges[skip:], ctx, cb, start_seq + skip)
    q, r = p.h1_req, p.h1_resp
    done.idle = (p.protocol == "h1" and q is not None and r is not None and not p.error and not q.error
                 and not r.error and not p._requests and _at_rest(q) and _at_rest(r)
                 and r.final_responses == len(r.request_methods))
    return done


def _at_rest(h) -> bool:
    """An Http1Parser waiting for the next message's first byte (nothing buffered, no message open)."""
    from collector.protocols.http1 import _HEAD

    return h.state == _HEAD and h.msg is None and not h.buf
