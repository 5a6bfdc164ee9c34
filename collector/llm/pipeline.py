"""HTTP exchanges -> store rows (`http`, `llm_exchanges`, `tool_calls`, `secrets_seen`, and `dns` for
DNS-over-HTTPS lookups), redacted.

Sans-IO and shared by every plaintext source: the key-log pipeline (collector.tls.pipeline), the
live collector (uprobe plaintext per closed connection) and the TLS proxy (already-parsed
messages). Every header, path, body and tool-call argument passes through collector.secrets before
it becomes a row: a row holds placeholders and fingerprints, never a raw credential. Digests are
of the raw decoded bodies; stored bodies are redacted, then capped at `body_cap` characters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from collector import secrets
from collector.llm import anthropic, gemini, openai
from collector.llm.result import LlmResult, dumps, loads
from collector.llm.router_headers import router_headers, router_software
from collector.protocols.connection import parse_connection
from collector.protocols.dns import doh_messages
from collector.protocols.encoding import DEFAULT_KEEP
from collector.protocols.messages import Connection, ConnectionBytes, HttpRequest, HttpResponse
from collector.protocols.sse import parse_sse

TABLE_NAMES = ("http", "llm_exchanges", "tool_calls", "secrets_seen", "dns")
CACHE_ENTRIES = 4096  # redacted header values and paths remembered per DecodeContext


@dataclass
class DecodeContext:
    host_id: str
    fingerprinter: secrets.Fingerprinter
    source: str  # 'keylog' | 'uprobe' | 'proxy'
    body_cap: int = 256 * 1024  # characters of redacted body stored per direction
    pid: int | None = None
    parse_cap: int = DEFAULT_KEEP  # decoded bytes kept per body for parsing (digests cover everything)
    canaries: tuple[str, ...] = ()  # raw canary values, when the caller holds them (kind 'canary')
    # (lower-case header name | None for a path, value) -> redaction result: agents repeat the same
    # headers and paths on every request; memory only, never pickled to the decode worker
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "cache": {}}

    def redact_cached(self, name: str | None, value: str) -> tuple[str, list[tuple[secrets.SecretMatch, str]]]:
        """secrets.redact_header (name) or secrets.redact (a path, name None) of a value, remembered."""
        key = (name, value)
        hit = self.cache.get(key)
        if hit is None:
            if len(self.cache) >= CACHE_ENTRIES:
                self.cache.clear()
            if name is None:
                hit = secrets.redact(value, self.fingerprinter, self.canaries)
            else:
                hit = secrets.redact_header(name, value, self.fingerprinter, self.canaries)
            self.cache[key] = hit
        return hit


@dataclass
class DecodedRows:
    tables: dict[str, list[dict]] = field(default_factory=lambda: {t: [] for t in TABLE_NAMES})
    errors: list[str] = field(default_factory=list)  # parse problems (never secret content)
    exchanges: int = 0

    def extend(self, other: DecodedRows) -> None:
        for t, rows in other.tables.items():
            self.tables.setdefault(t, []).extend(rows)
        self.errors.extend(other.errors)
        self.exchanges += other.exchanges


def _dt(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None) if ts is not None else None


def _hdr(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def classify(method: str, path: str, req_headers: list[tuple[str, str]], req_json: Any) -> str | None:
    """The LLM API an exchange speaks, from its path (and body shape for unusual paths)."""
    p = path.split("?", 1)[0].rstrip("/")
    if gemini.PATH.search(p):
        return "gemini.generate"
    if method != "POST":
        return None
    if p.endswith("/chat/completions"):
        return "openai.chat"
    if p.endswith("/responses"):
        return "openai.responses"
    if p.endswith("/messages") and (
        _hdr(req_headers, "anthropic-version") or (isinstance(req_json, dict) and "max_tokens" in req_json)
        or p.endswith("/v1/messages")
    ):
        return "anthropic.messages"
    if p.endswith("/completions"):
        return "openai.completions"
    if p.endswith("/embeddings"):
        return "openai.embeddings"
    if isinstance(req_json, dict) and "model" in req_json and "messages" in req_json:
        return "anthropic.messages" if _hdr(req_headers, "anthropic-version") else "openai.chat"
    return None


def decode_llm(api: str, req: HttpRequest, resp: HttpResponse | None, req_json: Any) -> LlmResult:
    """Provider decoding of one exchange (raw values: the caller redacts)."""
    events = None
    body = None
    t0 = req.ts_end if req.ts_end is not None else req.ts
    if resp is not None:
        ctype = (_hdr(resp.headers, "content-type") or "").lower()
        if "text/event-stream" in ctype:
            events = parse_sse(resp.body, resp.chunks)
        else:
            body = resp.body
    if api == "openai.chat" or api in ("openai.completions", "openai.embeddings"):
        res = openai.decode_chat(req_json, body, events, t0)
        res.api = api
    elif api == "openai.responses":
        res = openai.decode_responses(req_json, body, events, t0)
    elif api == "anthropic.messages":
        res = anthropic.decode_messages(req_json, body, events, t0)
    else:
        res = gemini.decode_generate(req.path, req_json, body, events, t0)
    if req_json is None and req.body:
        res.errors.append("invalid_json_request")
    if resp is None or resp.truncated or req.truncated:
        res.truncated = True
    return res


class _Scanner:
    """Redacts and collects secrets_seen rows for one exchange (dedup per kind+fingerprint+location)."""

    def __init__(self, ctx: DecodeContext, base: dict[str, Any]):
        self.ctx = ctx
        self.base = base
        self.rows: list[dict] = []
        self.seen: set[tuple[str, str, str, str]] = set()
        self.header_secrets = 0  # secrets found by the last headers() call

    def add(self, m: secrets.SecretMatch, f: str, direction: str, location: str) -> None:
        key = (m.kind, f, direction, location)
        if key in self.seen:
            return
        self.seen.add(key)
        self.rows.append(secrets.secret_row(m, f, direction=direction, location=location, **self.base))

    def text(self, text: str, direction: str, location: str, *, mnemonics: bool = True) -> str:
        red, pairs = secrets.redact(text, self.ctx.fingerprinter, self.ctx.canaries, mnemonics=mnemonics)
        for m, f in pairs:
            self.add(m, f, direction, location)
        return red

    def headers(self, headers: list[tuple[str, str]], direction: str) -> list[list[str]]:
        """secrets.redact_headers, value by value through the context's cache (same result: a set of
        values with no secret is unchanged either way; otherwise it redacts each value alone)."""
        out = []
        n = 0
        for name, value in headers:
            lname = name.lower()
            red, pairs = self.ctx.redact_cached(lname, value)
            out.append([name, red])
            for m, f in pairs:
                n += 1
                self.add(m, f, direction, f"header:{lname}")
        self.header_secrets = n
        return out


def _body_text(b: bytes) -> str:
    return b.decode("utf-8", "replace")


def _cap(s: str, n: int) -> tuple[str, bool]:
    return (s, False) if len(s) <= n else (s[:n], True)


_NO_CONNECTION = Connection()


def exchange_id(host_id: str, flow_key: str | None, seq: int, req: HttpRequest) -> str:
    raw = f"{host_id}|{flow_key}|{req.stream_id if req.stream_id is not None else -1}|{seq}|{req.ts:.6f}"
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


@dataclass(slots=True)
class _Exchange:
    """What the steps of decode_http share about one exchange."""

    req: HttpRequest
    resp: HttpResponse | None
    ctx: DecodeContext
    xid: str
    flow_uid: str | None
    pid: int | None
    host: str | None
    ts: datetime | None
    ts_resp: datetime | None
    sc: _Scanner
    path: str = ""  # redacted
    req_red: str = ""  # redacted request body text
    req_sha: str = ""
    resp_sha: str | None = None
    resp_headers_clean: bool = False  # the response headers held no secret (their values need no second scan)
    truncated: bool = False


def decode_http(
    req: HttpRequest,
    resp: HttpResponse | None,
    ctx: DecodeContext,
    conn: Connection | None = None,
    *,
    seq: int = 0,
    out: DecodedRows | None = None,
) -> DecodedRows:
    """Rows for one request/response pair on `conn` (None: no connection known); `seq` numbers
    exchanges within a connection; rows are appended to `out` when given (and it is returned).

    Every exchange gives an `http` row; a DoH lookup `dns` rows; an LLM API call an `llm_exchanges`
    row and its `tool_calls`; whatever secret any of it held, `secrets_seen` rows."""
    if out is None:
        out = DecodedRows()
    out.exchanges += 1
    conn = conn or _NO_CONNECTION
    ts = _dt(req.ts)
    xid = exchange_id(ctx.host_id, conn.flow_uid or conn.community_id, seq, req)
    host = req.authority or conn.server_name or None
    pid = conn.pid or ctx.pid
    base = {"ts": ts, "host_id": ctx.host_id, "flow_uid": conn.flow_uid, "exchange_id": xid, "pid": pid,
            "destination": host}
    ex = _Exchange(req, resp, ctx, xid, conn.flow_uid, pid, host, ts, _dt(resp.ts) if resp is not None else None,
                   _Scanner(ctx, base))
    _http_row(ex, out)
    if not _dns_rows(ex, out):
        _llm_rows(ex, out)
    out.tables["secrets_seen"].extend(ex.sc.rows)
    return out


def _http_row(ex: _Exchange, out: DecodedRows) -> None:
    """The `http` row: path, headers and bodies redacted (the secrets go to the scanner), digests of
    the raw bodies."""
    req, resp, ctx, sc = ex.req, ex.resp, ex.ctx, ex.sc
    ex.path, found = ctx.redact_cached(None, req.path)
    for m, f in found:
        sc.add(m, f, "request", "path")
    req_headers = sc.headers(req.headers, "request")
    req_text = _body_text(req.body) if req.body else ""
    ex.req_red = sc.text(req_text, "request", "body") if req_text else ""
    resp_headers = sc.headers(resp.headers, "response") if resp is not None else None
    ex.resp_headers_clean = resp is not None and sc.header_secrets == 0 and not ctx.canaries
    ex.req_sha = req.body_sha256 or hashlib.sha256(req.body).hexdigest()
    if resp is not None:
        ex.resp_sha = resp.body_sha256 or hashlib.sha256(resp.body).hexdigest()
    ex.truncated = req.truncated or resp is None or resp.truncated
    for e in (req.error, resp.error if resp is not None else None):
        if e:
            out.errors.append(e)
    t_resp = resp.ts if resp is not None else None
    t_end = (resp.ts_end if resp is not None and resp.ts_end is not None else t_resp)
    out.tables["http"].append({
        "ts": ex.ts, "host_id": ctx.host_id, "flow_uid": ex.flow_uid, "exchange_id": ex.xid, "method": req.method,
        "host": ex.host, "path": ex.path, "status": resp.status if resp is not None else None,
        "http_version": req.http_version, "request_headers": dumps(req_headers),
        "response_headers": dumps(resp_headers) if resp_headers is not None else None,
        "request_body_bytes": req.body_size if req.body_size is not None else len(req.body),
        "response_body_bytes": (resp.body_size if resp.body_size is not None else len(resp.body)) if resp else None,
        "request_digest": ex.req_sha, "response_digest": ex.resp_sha, "ts_response": ex.ts_resp,
        "duration_ms": round((t_end - req.ts) * 1000, 3) if t_end is not None else None,
        "stream_id": req.stream_id, "truncated": ex.truncated, "source": ctx.source,
    })  # fmt: skip


def _dns_rows(ex: _Exchange, out: DecodedRows) -> bool:
    """`dns` rows when the exchange is a DoH lookup (the agent, or a child, resolving a name past the
    system resolver); whether it was one."""
    req, resp = ex.req, ex.resp
    doh = doh_messages(req.method, req.path, req.headers, req.body, resp.headers if resp is not None else None,
                       resp.body if resp is not None else None)
    if doh is None:
        return False
    out.tables["dns"].extend(
        {"ts": _dt(req.ts if not m.is_response or resp is None else resp.ts), "host_id": ex.ctx.host_id,
         "flow_uid": ex.flow_uid, "query": m.query, "qtype": m.qtype, "rcode": m.rcode, "answers": m.answers,
         "trans_id": m.trans_id, "is_response": m.is_response, "pid": ex.pid, "source": "doh"}
        for m in doh)
    return True


def _llm_rows(ex: _Exchange, out: DecodedRows) -> None:
    """The `llm_exchanges` row and its `tool_calls` when the exchange speaks an LLM API."""
    req, resp = ex.req, ex.resp
    req_json = loads(req.body) if req.body and not req.body_capped else None
    api = classify(req.method, req.path, req.headers, req_json)
    if api is None:
        return
    res = decode_llm(api, req, resp, req_json)
    if req.body_capped:
        res.errors.append("request_body_over_parse_cap")
    tool_rows, resp_args = _tool_rows(ex, res)
    resp_red = _response_body(ex, res, resp_args)
    ctx = ex.ctx
    kept = router_headers(resp.headers) if resp is not None else {}
    # values already found clean in the response-header scan are not scanned again
    kept_red = {k: v if ex.resp_headers_clean and k not in secrets.CREDENTIAL_HEADERS
                else secrets.redact_header(k, v, ctx.fingerprinter)[0] for k, v in kept.items()}
    req_body_store, req_cut = _cap(ex.req_red, ctx.body_cap)
    resp_body_store, resp_cut = _cap(resp_red, ctx.body_cap) if resp_red is not None else (None, False)
    stream = res.stream
    if stream is not None or res.errors:
        stream = dict(stream or {})
        if res.errors:
            stream["errors"] = res.errors
        if req_cut or resp_cut:
            stream["stored_body_capped"] = True
    latency = None
    if resp is not None:
        latency = round((resp.ts - (req.ts_end if req.ts_end is not None else req.ts)) * 1000, 3)
    out.tables["llm_exchanges"].append({
        "ts": ex.ts, "exchange_id": ex.xid, "flow_uid": ex.flow_uid, "host_id": ctx.host_id, "pid": ex.pid,
        "api": res.api, "host": ex.host, "path": ex.path, "model_requested": res.model_requested,
        "model_returned": res.model_returned, "streamed": res.streamed,
        "status": resp.status if resp is not None else None, "router": router_software(kept),
        "tool_call_count": sum(1 for t in res.tool_calls if t.direction == "response"),
        "input_tokens": res.input_tokens, "output_tokens": res.output_tokens, "latency_ms": latency,
        "router_headers": dumps(kept_red), "request_digest": ex.req_sha,
        "response_digest": ex.resp_sha, "request_body": req_body_store, "response_body": resp_body_store,
        "truncated": bool(res.truncated or ex.truncated),
        "stream_events": dumps(stream) if stream is not None else None,
        "source": ctx.source,
    })  # fmt: skip
    out.tables["tool_calls"].extend(tool_rows)


def _tool_rows(ex: _Exchange, res: LlmResult) -> tuple[list[dict], list[dict]]:
    """`tool_calls` rows (arguments redacted), and the response's calls for the stored stream body."""
    tool_rows, resp_args = [], []
    for t in res.tool_calls:
        args = ex.sc.text(t.arguments, t.direction, "tool_call")
        tool_rows.append({
            "ts": ex.ts_resp if t.direction == "response" else ex.ts, "host_id": ex.ctx.host_id,
            "exchange_id": ex.xid, "idx": t.idx, "call_id": t.call_id, "name": t.name, "arguments": args,
            "direction": t.direction,
        })  # fmt: skip
        if t.direction == "response":
            resp_args.append({"name": t.name, "call_id": t.call_id, "arguments": args})
    return tool_rows, resp_args


def _response_body(ex: _Exchange, res: LlmResult, resp_args: list[dict]) -> str | None:
    """The response body as stored, redacted: the raw body (non-streamed), or the message the client
    assembled from a stream (text + tool calls, built from redacted pieces: a secret split across
    events is whole, and redacted, only there; the raw event stream itself is never stored)."""
    resp, sc = ex.resp, ex.sc
    if resp is None:
        return None
    if res.stream is not None:
        text = sc.text(res.text, "response", "body") if res.text else ""
        # secrets whole in the raw stream, too (its prose was scanned for seed phrases as assembled text)
        sc.text(_body_text(resp.body), "response", "body", mnemonics=False)
        return dumps({"text": text, "tool_calls": resp_args})
    if resp.body:
        return sc.text(_body_text(resp.body), "response", "body")
    return None


def decode_exchanges(
    exchanges: Iterable[tuple[HttpRequest, HttpResponse | None]], ctx: DecodeContext,
    conn: Connection | None = None, start_seq: int = 0,
) -> DecodedRows:
    out = DecodedRows()
    for i, (req, resp) in enumerate(exchanges):
        decode_http(req, resp, ctx, conn, seq=start_seq + i, out=out)
    return out


def decode_connection(conn: ConnectionBytes, ctx: DecodeContext) -> DecodedRows:
    """All rows of one connection's plaintext (uprobe / per-connection path)."""
    exchanges, parser = parse_connection(conn, keep=ctx.parse_cap)
    out = decode_exchanges(exchanges, ctx, conn)
    if parser.error:
        out.errors.append(parser.error)
    return out
