"""The store's tables, declared once; `migrate()` brings any store up to this declaration.

Migrations are additive and automatic: a table that is missing is created, a column that is
missing is added, and every change is recorded in `schema_migrations`. Each component owns its
tables below; add a column by adding it here (never rename or retype: add a new column instead).
Every table carries `host_id` so a fleet can share one catalog. Timestamps are UTC.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

Column = tuple[str, str]

TABLES: dict[str, list[Column]] = {
    # -- ingest / capture ------------------------------------------------------------------
    "flows": [
        ("flow_uid", "VARCHAR"),
        ("community_id", "VARCHAR"),
        ("host_id", "VARCHAR"),
        ("ts_start", "TIMESTAMP"),
        ("ts_end", "TIMESTAMP"),
        ("proto", "VARCHAR"),  # 'tcp' | 'udp'
        ("src_ip", "VARCHAR"),
        ("src_port", "INTEGER"),
        ("dst_ip", "VARCHAR"),
        ("dst_port", "INTEGER"),
        ("bytes_out", "BIGINT"),  # payload bytes originator -> responder
        ("bytes_in", "BIGINT"),
        ("packets_out", "BIGINT"),
        ("packets_in", "BIGINT"),
        ("server_name", "VARCHAR"),  # SNI, else a DNS name that resolved to dst_ip
        ("pid", "INTEGER"),
        ("source", "VARCHAR"),  # 'pcap' | 'ebpf' | 'ebpf+pcap' | 'proxy' | 'procnet'
        ("tcp_state", "VARCHAR"),  # Zeek-style conn_state (S0, SF, REJ, RSTO, OTH, ...)
        ("history", "VARCHAR"),  # Zeek-style history letters
        ("capture_id", "VARCHAR"),  # ingest_runs.run_id or live capture segment
        ("ip_bytes_out", "BIGINT"),
        ("ip_bytes_in", "BIGINT"),
        ("process_start", "DOUBLE"),  # with pid, keys processes(host_id, pid, start_time)
        ("direction", "VARCHAR"),  # live: 'outbound' (this host connected) | 'inbound' (accepted here)
        ("proxy_leg", "VARCHAR"),  # proxy: 'agent' (agent -> proxy) | 'upstream' (proxy -> router)
        ("proxy_scheme", "VARCHAR"),  # proxy: 'https' (intercepted) | 'http' | 'tunnel' (passed through)
    ],
    "processes": [
        ("ts", "TIMESTAMP"),
        ("host_id", "VARCHAR"),
        ("pid", "INTEGER"),
        ("ppid", "INTEGER"),
        ("start_time", "DOUBLE"),  # seconds since the epoch
        ("exe", "VARCHAR"),
        ("cmdline", "VARCHAR"),  # secrets redacted
        ("uid", "INTEGER"),
        ("container_id", "VARCHAR"),
        ("comm", "VARCHAR"),
        ("cgroup", "VARCHAR"),
    ],
    "dns": [
        ("ts", "TIMESTAMP"),
        ("host_id", "VARCHAR"),
        ("flow_uid", "VARCHAR"),
        ("query", "VARCHAR"),
        ("qtype", "VARCHAR"),
        ("rcode", "VARCHAR"),
        ("answers", "VARCHAR[]"),
        ("trans_id", "INTEGER"),
        ("is_response", "BOOLEAN"),
        ("pid", "INTEGER"),
        ("source", "VARCHAR"),
    ],
    "tls": [
        ("ts", "TIMESTAMP"),
        ("host_id", "VARCHAR"),
        ("flow_uid", "VARCHAR"),
        ("version", "VARCHAR"),  # negotiated: 'TLS 1.2', 'TLS 1.3', ...
        ("sni", "VARCHAR"),
        ("alpn", "VARCHAR"),  # offered ALPN list, comma-separated
        ("ja4", "VARCHAR"),
        ("decrypted", "BOOLEAN"),
        ("cipher", "VARCHAR"),
        ("alpn_selected", "VARCHAR"),
    ],
    "ingest_runs": [
        ("ts", "TIMESTAMP"),
        ("host_id", "VARCHAR"),
        ("run_id", "VARCHAR"),
        ("file", "VARCHAR"),
        ("sha256", "VARCHAR"),
        ("file_bytes", "BIGINT"),
        ("packets", "BIGINT"),
        ("truncated", "BOOLEAN"),
        ("errors", "VARCHAR"),
        ("duration_s", "DOUBLE"),
        ("status", "VARCHAR"),  # 'ok' | 'partial' | 'failed' | 'duplicate'
        ("keylog", "BOOLEAN"),
        ("flows", "BIGINT"),
        ("format", "VARCHAR"),  # 'pcap' | 'pcapng'
        ("link_types", "VARCHAR"),  # comma-separated LINKTYPE numbers of the capture's interfaces
        ("header_walk", "VARCHAR"),  # 'numpy' (fast path) | 'tshark' (fallback for other link types)
        ("dissected_packets", "BIGINT"),  # packets handed to tshark (DNS, handshakes)
        ("dns_messages", "BIGINT"),
        ("tls_handshakes", "BIGINT"),
        ("embedded_secrets", "BIGINT"),  # key-log lines in pcapng Decryption Secrets Blocks
        ("decrypted_flows", "BIGINT"),
        ("decrypt_stats", "JSON"),  # the decryption pipeline's counters
    ],
    # -- decryption / LLM ----------------------------------------------------------------------
    "http": [
        ("ts", "TIMESTAMP"),
        ("host_id", "VARCHAR"),
        ("flow_uid", "VARCHAR"),
        ("exchange_id", "VARCHAR"),
        ("method", "VARCHAR"),
        ("host", "VARCHAR"),
        ("path", "VARCHAR"),
        ("status", "INTEGER"),
        ("http_version", "VARCHAR"),
        ("request_headers", "JSON"),  # credentials redacted
        ("response_headers", "JSON"),
        ("request_body_bytes", "BIGINT"),
        ("response_body_bytes", "BIGINT"),
        ("request_digest", "VARCHAR"),  # sha256 of the raw (decoded) body
        ("response_digest", "VARCHAR"),
        ("ts_response", "TIMESTAMP"),
        ("duration_ms", "DOUBLE"),
        ("stream_id", "INTEGER"),
        ("truncated", "BOOLEAN"),
        ("source", "VARCHAR"),  # 'keylog' | 'uprobe' | 'proxy'
    ],
    "llm_exchanges": [
        ("ts", "TIMESTAMP"),
        ("exchange_id", "VARCHAR"),
        ("flow_uid", "VARCHAR"),
        ("host_id", "VARCHAR"),
        ("pid", "INTEGER"),
        ("api", "VARCHAR"),  # 'openai.chat' | 'openai.responses' | 'anthropic.messages' | ...
        ("host", "VARCHAR"),
        ("path", "VARCHAR"),
        ("model_requested", "VARCHAR"),
        ("model_returned", "VARCHAR"),
        ("streamed", "BOOLEAN"),
        ("status", "INTEGER"),
        ("router", "VARCHAR"),
        ("tool_call_count", "INTEGER"),
        ("input_tokens", "BIGINT"),
        ("output_tokens", "BIGINT"),
        ("latency_ms", "DOUBLE"),
        ("router_headers", "JSON"),
        ("request_digest", "VARCHAR"),
        ("response_digest", "VARCHAR"),
        ("request_body", "VARCHAR"),  # redacted, size-capped
        ("response_body", "VARCHAR"),  # redacted, size-capped
        ("truncated", "BOOLEAN"),
        ("stream_events", "JSON"),  # per-event summary for stream-integrity rules
        ("source", "VARCHAR"),
    ],
    "tool_calls": [
        ("ts", "TIMESTAMP"),
        ("host_id", "VARCHAR"),
        ("exchange_id", "VARCHAR"),
        ("idx", "INTEGER"),
        ("call_id", "VARCHAR"),
        ("name", "VARCHAR"),
        ("arguments", "VARCHAR"),  # secrets redacted
        ("direction", "VARCHAR"),  # 'response' (model asks) | 'request' (history the agent resent)
    ],
    "secrets_seen": [
        ("ts", "TIMESTAMP"),
        ("host_id", "VARCHAR"),
        ("flow_uid", "VARCHAR"),
        ("exchange_id", "VARCHAR"),
        ("kind", "VARCHAR"),
        ("fingerprint", "VARCHAR"),  # HMAC-SHA256 with the store's key, hex, truncated
        ("last4", "VARCHAR"),
        ("direction", "VARCHAR"),  # 'request' | 'response' | 'config' | 'cmdline'
        ("destination", "VARCHAR"),
        ("location", "VARCHAR"),  # header name, 'body', ...
        ("pid", "INTEGER"),
    ],
    # -- live collector ------------------------------------------------------------------------
    "store_batches": [  # one row per committed writer batch, in the batch's own transaction (collector.store.spool):
        ("ts", "TIMESTAMP"),  # when the batch was cut (a replay looks it up by ts, host and id: exactly once)
        ("host_id", "VARCHAR"),
        ("batch_id", "VARCHAR"),
        ("rows", "BIGINT"),
    ],
    "collector_stats": [
        ("ts", "TIMESTAMP"),
        ("host_id", "VARCHAR"),
        ("interval_s", "DOUBLE"),
        ("events", "BIGINT"),
        ("lost", "BIGINT"),
        ("capture_drops", "BIGINT"),
        ("decrypt_backlog", "BIGINT"),
        ("rss_bytes", "BIGINT"),
        ("flows_written", "BIGINT"),
        ("mode", "VARCHAR"),  # 'ebpf' | 'capture-only' | ...
        ("detail", "JSON"),
    ],
    # -- agent coverage: router-configuration inventory, proxy mode (collector.inventory, .proxy) -
    "agent_configs": [  # which endpoint each agent is configured to use, and where that came from
        ("ts", "TIMESTAMP"),
        ("host_id", "VARCHAR"),
        ("user", "VARCHAR"),
        ("uid", "INTEGER"),
        ("agent", "VARCHAR"),  # 'claude-code' | 'codex' | 'gemini-cli' | 'goose' | 'crush' | 'opencode' | ...
        ("pid", "INTEGER"),  # live process (NULL for config files)
        ("process_start", "DOUBLE"),  # with pid, keys processes(host_id, pid, start_time)
        ("source", "VARCHAR"),  # 'env' (/proc/PID/environ) | 'file'
        ("path", "VARCHAR"),  # config file, or /proc/PID/environ
        ("scope", "VARCHAR"),  # 'process' | 'user' | 'project' | 'project-local'
        ("variable", "VARCHAR"),  # ANTHROPIC_BASE_URL, model_providers.x.base_url, env.ANTHROPIC_BASE_URL, ...
        ("kind", "VARCHAR"),  # 'endpoint' | 'proxy' | 'credential' | 'credential-ref' | 'provider' | 'model' | 'ca'
        ("endpoint", "VARCHAR"),  # URL as configured (userinfo removed); NULL for credentials
        ("endpoint_host", "VARCHAR"),  # host part, lowercased
        ("endpoint_port", "INTEGER"),
        ("value", "VARCHAR"),  # non-secret values (provider, model, CA path); credentials: the fingerprint placeholder
        ("fingerprint", "VARCHAR"),  # credentials: keyed fingerprint (as in secrets_seen)
        ("effective", "BOOLEAN"),  # False when a higher-precedence source overrides this one
        ("file_mtime", "TIMESTAMP"),
        ("file_sha256", "VARCHAR"),
    ],
    "proxy_events": [  # what the intercepting proxy could not pass or see (upstream/TLS failures, loss)
        ("ts", "TIMESTAMP"),
        ("host_id", "VARCHAR"),
        ("kind", "VARCHAR"),  # 'upstream-failed' | 'client-tls-failed' | 'passthrough' | 'refused' | 'parse-error' | 'sink-loss'
        ("detail", "VARCHAR"),
        ("pid", "INTEGER"),
        ("flow_uid", "VARCHAR"),  # the agent leg
        ("target", "VARCHAR"),  # host:port the agent asked for
    ],
    "gate_decisions": [  # every tool call the policy gate judged (proxy --enforce, agent hooks) and what it did
        ("ts", "TIMESTAMP"),
        ("host_id", "VARCHAR"),
        ("source", "VARCHAR"),  # 'proxy' | 'hook'
        ("action", "VARCHAR"),  # 'block' (never reached the agent / denied) | 'record' (passed, rule matched) | 'allow'
        ("rule_id", "VARCHAR"),  # the rule that decided (analyzer rule ids; gate-unparseable, gate-timeout)
        ("rules", "VARCHAR[]"),  # every rule the call tripped
        ("reason", "VARCHAR"),  # what the agent and its user were told
        ("detail", "VARCHAR"),  # the evidence (matching command fragment), secrets redacted
        ("agent", "VARCHAR"),  # 'claude-code', 'codex', ... when known
        ("router", "VARCHAR"),  # the router the call came from (catalog name or host[:port])
        ("pid", "INTEGER"),
        ("flow_uid", "VARCHAR"),  # proxy: the upstream leg (as llm_exchanges.flow_uid)
        ("exchange_id", "VARCHAR"),  # proxy: the exchange whose response carried the call
        ("api", "VARCHAR"),  # openai.chat | openai.responses | anthropic.messages | hook:claude-code | hook:codex
        ("tool_name", "VARCHAR"),
        ("call_id", "VARCHAR"),
        ("arguments", "VARCHAR"),  # the call's arguments, secrets redacted, capped
        ("streamed", "BOOLEAN"),
        ("held_ms", "DOUBLE"),  # proxy: how long the response waited on the gate
        ("policy", "VARCHAR"),  # digest of the policy that decided
        ("session_id", "VARCHAR"),  # hook: the agent's session
    ],
    # -- analyzer ------------------------------------------------------------------------------
    "findings": [
        ("finding_id", "VARCHAR"),
        ("ts", "TIMESTAMP"),
        ("rule_id", "VARCHAR"),
        ("rule_rev", "INTEGER"),
        ("severity", "VARCHAR"),
        ("attack_class", "VARCHAR"),
        ("title", "VARCHAR"),
        ("host_id", "VARCHAR"),
        ("pid", "INTEGER"),
        ("flow_uid", "VARCHAR"),
        ("exchange_id", "VARCHAR"),
        ("evidence", "JSON"),
        ("dedup_key", "VARCHAR"),
        ("router", "VARCHAR"),
        ("summary", "VARCHAR"),  # one human line: what happened, where
        ("run_id", "VARCHAR"),  # analyzer_runs.run_id that wrote it
    ],
    "finding_coverage": [  # append-only: every exchange and flow a (deduplicated) finding accounts for
        ("ts", "TIMESTAMP"),  # of the evidence row
        ("host_id", "VARCHAR"),
        ("finding_id", "VARCHAR"),
        ("rule_id", "VARCHAR"),
        ("dedup_key", "VARCHAR"),
        ("exchange_id", "VARCHAR"),
        ("flow_uid", "VARCHAR"),
        ("pid", "INTEGER"),
        ("run_id", "VARCHAR"),  # analyzer_runs.run_id that recorded it
        ("raised", "BOOLEAN"),  # the evidence row that raised the finding (else a later or duplicate one)
    ],
    "router_baseline": [  # append-only snapshots of each router's behaviour (all hosts, all runs so far)
        ("ts", "TIMESTAMP"),  # when the snapshot was taken
        ("run_id", "VARCHAR"),
        ("router", "VARCHAR"),
        ("first_seen", "TIMESTAMP"),
        ("last_seen", "TIMESTAMP"),
        ("exchanges", "BIGINT"),
        ("tool_call_exchanges", "BIGINT"),
        ("clean_exchanges", "BIGINT"),  # no execution-strength tool-call signal
        ("execution_exchanges", "BIGINT"),
        ("first_execution_ts", "TIMESTAMP"),
        ("hosts", "VARCHAR[]"),  # host_ids that used it (capped)
        ("indicator_kinds", "VARCHAR[]"),  # tool-call indicator kinds seen in its responses
        ("families", "VARCHAR[]"),  # 'requested->returned' model families seen
        ("fingerprints", "VARCHAR[]"),  # response fingerprints seen (capped)
        ("latency_n", "BIGINT"),
        ("latency_mean_ms", "DOUBLE"),
        ("latency_m2", "DOUBLE"),  # sum of squared deviations (Welford/Chan), for the standard deviation
        ("latency_max_ms", "DOUBLE"),
    ],
    "routers": [  # the catalog as rows (builtin + user overrides) plus routers observed in traffic
        ("ts", "TIMESTAMP"),
        ("host_id", "VARCHAR"),  # NULL for catalog rows; the observing host for 'observed'
        ("name", "VARCHAR"),
        ("kind", "VARCHAR"),  # 'provider' | 'router' | 'declared' | 'suspected' | 'software'
        ("host_pattern", "VARCHAR"),  # 'api.openai.com', '*.openai.azure.com', '127.0.0.1'
        ("port", "INTEGER"),  # NULL: any port
        ("provider", "VARCHAR"),  # provider family a provider endpoint serves ('openai', 'anthropic', ...)
        ("software", "VARCHAR"),  # router software this row fingerprints ('litellm', 'one-api', ...)
        ("match_headers", "VARCHAR[]"),  # response-header name patterns that fingerprint the software
        ("match_paths", "VARCHAR[]"),  # paths that only that software serves
        ("source", "VARCHAR"),  # 'builtin' | 'user' | 'observed'
        ("catalog_digest", "VARCHAR"),
    ],
    "flow_classes": [  # every analyzed flow: provider / router / suspected_router / other
        ("ts", "TIMESTAMP"),
        ("host_id", "VARCHAR"),
        ("flow_uid", "VARCHAR"),
        ("dest", "VARCHAR"),  # server_name, else dst_ip
        ("dst_port", "INTEGER"),
        ("class", "VARCHAR"),  # 'provider' | 'router' | 'suspected_router' | 'other'
        ("router", "VARCHAR"),  # catalog name (or the host for suspected routers)
        ("first_seen", "BOOLEAN"),  # first flow from this host to (dest, dst_port)
    ],
    "exchange_classes": [  # every analyzed LLM exchange, classified and normalised
        ("ts", "TIMESTAMP"),
        ("host_id", "VARCHAR"),
        ("exchange_id", "VARCHAR"),
        ("flow_uid", "VARCHAR"),
        ("dest", "VARCHAR"),
        ("dst_port", "INTEGER"),
        ("class", "VARCHAR"),  # 'provider' | 'router' | 'suspected_router' | 'other'
        ("router", "VARCHAR"),  # catalog name, else host:port
        ("provider", "VARCHAR"),  # provider family when class = 'provider'
        ("software", "VARCHAR[]"),  # router software recognised from headers / paths / port
        ("brand", "VARCHAR"),  # a provider brand the host name imitates ('openai', 'anthropic', ...)
        ("family_requested", "VARCHAR"),  # model family (vendor prefix and date/version suffix removed)
        ("family_returned", "VARCHAR"),
        ("suspicious_tool_calls", "INTEGER"),  # execution-strength signals in its response tool calls
        ("fingerprint", "VARCHAR"),  # response fingerprint: router header names, server, software
    ],
    "tool_call_indicators": [  # shell analysis of tool-call arguments
        ("ts", "TIMESTAMP"),
        ("host_id", "VARCHAR"),
        ("exchange_id", "VARCHAR"),
        ("idx", "INTEGER"),
        ("direction", "VARCHAR"),
        ("kind", "VARCHAR"),  # 'download_exec' | 'base64_exec' | 'reverse_shell' | 'credential_exfil' | 'secret_sent' | 'persistence' | 'install_url' | 'custom_index' | 'credential_read' | 'env_file_read' | 'env_dump' | 'runs_file'
        ("detail", "VARCHAR"),  # the matching command fragment (already redacted)
        ("host", "VARCHAR"),  # the remote host involved, when one is named
        ("context", "VARCHAR"),  # 'command' (would run) | 'written' (in file content written) | 'encoded' (in a blob not run)
        ("execution", "BOOLEAN"),  # execution-strength evidence (collector.toolcalls.is_execution)
        ("path", "VARCHAR"),  # context 'written': the file the text went to
    ],
    "tool_call_hosts": [  # URLs and hosts named in tool-call arguments
        ("ts", "TIMESTAMP"),
        ("host_id", "VARCHAR"),
        ("exchange_id", "VARCHAR"),
        ("idx", "INTEGER"),
        ("direction", "VARCHAR"),
        ("host", "VARCHAR"),
        ("port", "INTEGER"),
        ("url", "VARCHAR"),
        ("allowlisted", "BOOLEAN"),
        ("intent", "VARCHAR"),  # 'fetch' | 'connect' | 'install' | 'index' | 'arg' (egress intents) | 'mention' | 'written'
    ],
    "package_installs": [  # package installs in tool calls, with typosquat distance
        ("ts", "TIMESTAMP"),
        ("host_id", "VARCHAR"),
        ("exchange_id", "VARCHAR"),
        ("idx", "INTEGER"),
        ("direction", "VARCHAR"),
        ("manager", "VARCHAR"),  # 'pip' | 'npm' | 'cargo' | 'go'
        ("package", "VARCHAR"),
        ("popular", "BOOLEAN"),  # on the shipped popular list
        ("nearest", "VARCHAR"),  # nearest popular package name when not popular
        ("distance", "INTEGER"),  # Damerau-Levenshtein distance to `nearest`
    ],
    "stream_anomalies": [  # SSE stream checks per exchange
        ("ts", "TIMESTAMP"),
        ("host_id", "VARCHAR"),
        ("exchange_id", "VARCHAR"),
        ("kind", "VARCHAR"),  # 'tokens_decrease' | 'unknown_event' | 'model_changed' | 'event_order'
        ("detail", "VARCHAR"),
    ],
    "canaries": [  # registered canary credentials: fingerprints only, never the value
        ("ts", "TIMESTAMP"),
        ("host_id", "VARCHAR"),
        ("canary_id", "VARCHAR"),
        ("kind", "VARCHAR"),  # 'aws' | 'openai' | 'anthropic' | 'github' | 'eth'
        ("secret_kind", "VARCHAR"),  # the detector kind its value is seen as
        ("fingerprint", "VARCHAR"),
        ("last4", "VARCHAR"),
        ("label", "VARCHAR"),
    ],
    "ledger": [  # append-only hash chain over exchanges, their tool calls and findings (analyzer/ledger.py)
        ("seq", "BIGINT"),
        ("ts", "TIMESTAMP"),  # when the entry was appended
        ("host_id", "VARCHAR"),
        ("exchange_id", "VARCHAR"),
        ("exchange_ts", "TIMESTAMP"),
        ("router", "VARCHAR"),
        ("request_digest", "VARCHAR"),
        ("response_digest", "VARCHAR"),
        ("prev_hash", "VARCHAR"),
        ("hash", "VARCHAR"),  # sha256(prev_hash | seq | fields)
        ("version", "INTEGER"),  # entry format: NULL = 1 (raw digests only), 2 = stored columns too
        ("kind", "VARCHAR"),  # v2: 'exchange' | 'tool_calls' (after their exchange) | 'finding' | 'finding_coverage'
        ("finding_id", "VARCHAR"),  # v2 'finding' and 'finding_coverage' entries
        ("parts", "JSON"),  # v2: per-column digests of what the entry covers
    ],
    "analyzer_runs": [  # one row per `routerwatch analyze`; the newest holds the watermarks
        ("ts", "TIMESTAMP"),
        ("host_id", "VARCHAR"),
        ("run_id", "VARCHAR"),
        ("watermarks", "JSON"),  # table -> highest rowid analyzed
        ("new_rows", "JSON"),  # table -> rows analyzed this run
        ("findings", "INTEGER"),
        ("suppressed", "INTEGER"),
        ("duration_s", "DOUBLE"),
        ("ledger_seq", "BIGINT"),
        ("ledger_head", "VARCHAR"),
        ("rules", "JSON"),  # rule id -> rev
    ],
}


def arrow_type(sql_type: str) -> pa.DataType:
    """Arrow type for a declared SQL type (used to build write batches)."""
    if sql_type.endswith("[]"):
        return pa.list_(arrow_type(sql_type[:-2]))
    return {
        "VARCHAR": pa.string(),
        "JSON": pa.string(),
        "INTEGER": pa.int32(),
        "BIGINT": pa.int64(),
        "DOUBLE": pa.float64(),
        "BOOLEAN": pa.bool_(),
        "TIMESTAMP": pa.timestamp("us"),
    }[sql_type]


def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of a declared table (built once per declaration: writers ask per batch)."""
    decl = TABLES[table]
    hit = _ARROW_SCHEMAS.get(table)
    if hit is None or hit[0] is not decl:  # keyed on the declaration itself: tests may swap it
        hit = _ARROW_SCHEMAS[table] = (decl, pa.schema([(name, arrow_type(t)) for name, t in decl]))
    return hit[1]


_ARROW_SCHEMAS: dict[str, tuple[list[Column], pa.Schema]] = {}

# Data rewrites that go with a column's arrival, run once by the migration that adds the column
# (collector.store.migrate), so rows written before it read like rows written after it.
BACKFILLS: dict[tuple[str, str], str] = {
    # the proxy wrote its leg (and a non-https scheme) into history as 'proxy-agent', 'proxy-upstream:tunnel'
    ("flows", "proxy_leg"): """
        UPDATE flows SET proxy_leg = regexp_extract(history, '^proxy-([a-z]+)', 1),
               proxy_scheme = coalesce(nullif(regexp_extract(history, ':([a-z]+)$', 1), ''), 'https'),
               history = NULL
        WHERE source = 'proxy' AND history LIKE 'proxy-%'""",
}


# -- row contracts --------------------------------------------------------------------------------
# Every writer's rows pass conform() against the declaration above: a column the table does not
# declare, or values of a kind its column does not hold, are refused loudly instead of becoming a
# NULL or a wrong value (pyarrow alone drops unknown keys, truncates 1.5 to 1 in an INTEGER
# column, reads a number as microseconds in a TIMESTAMP column and a string as a list of letters).


class RowContractError(ValueError):
    """Rows that do not fit their table's declaration; nothing of the batch is stored. The message
    names the table and column, never a value (rows may carry fingerprints of secrets)."""


def _fits(sql_type: str, t: pa.DataType) -> bool:
    """Whether values of Arrow type `t` (as given, or as pyarrow infers them from Python values)
    convert to column type `sql_type` without changing their meaning."""
    if pa.types.is_null(t):
        return True
    if pa.types.is_dictionary(t):
        return _fits(sql_type, t.value_type)
    if sql_type.endswith("[]"):
        return (pa.types.is_list(t) or pa.types.is_large_list(t)) and _fits(sql_type[:-2], t.value_type)
    if sql_type in ("VARCHAR", "JSON"):
        return pa.types.is_string(t) or pa.types.is_large_string(t)
    if sql_type in ("INTEGER", "BIGINT"):
        return pa.types.is_integer(t)
    if sql_type == "DOUBLE":
        return pa.types.is_integer(t) or pa.types.is_floating(t)
    if sql_type == "BOOLEAN":
        return pa.types.is_boolean(t)
    if sql_type == "TIMESTAMP":
        return pa.types.is_timestamp(t)
    return False


def _column(table: str, name: str, sql_type: str, values: pa.Array | pa.ChunkedArray,
            field: pa.Field) -> pa.Array | pa.ChunkedArray:
    if not _fits(sql_type, values.type):
        raise RowContractError(f"{table}.{name}: {values.type} values do not fit its {sql_type} column")
    # no cast where none is needed: pyarrow's casts import pyarrow.compute (~0.04 s of an ingest)
    if values.type == field.type:
        return values
    if pa.types.is_null(values.type):  # every value null (a column a row builder left None)
        return pa.nulls(len(values), field.type)
    try:
        return values.cast(field.type)  # safe: an integer too large for the column raises
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise RowContractError(f"{table}.{name}: values do not fit its {sql_type} column "
                               f"({str(exc).split(':')[0][:80]})") from None


def conform(table: str, rows: Iterable[Mapping[str, Any]] | pa.Table) -> pa.Table:
    """Rows (dicts built one by one, or an Arrow table from a bulk path) -> an Arrow table of exactly
    `table`'s declared columns and types; columns the rows leave out are NULL. RowContractError for
    an unknown table or column, or values of the wrong kind."""
    decl = TABLES.get(table)
    if decl is None:
        raise RowContractError(f"unknown table {table!r}")
    schema = arrow_schema(table)
    if isinstance(rows, pa.Table):
        n, given = rows.num_rows, set(rows.column_names)
    else:
        rows = rows if isinstance(rows, list) else list(rows)
        n = len(rows)
        given = set().union(*rows) if rows else set()
    unknown = given - set(schema.names)
    if unknown:
        raise RowContractError(f"{table}: no column(s) {', '.join(sorted(map(str, unknown))[:5])} "
                               f"(declared in collector/store/schema.py)")
    if not isinstance(rows, pa.Table):
        rows = _infer(table, rows, given)
    cols = []
    for (name, sql_type), field in zip(decl, schema, strict=True):
        if name in given:
            cols.append(_column(table, name, sql_type, rows.column(name), field))
        else:
            cols.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(cols, schema=schema)


def _infer(table: str, rows: list[Mapping[str, Any]], given: set[str]) -> pa.Table:
    """Dict rows as Arrow with the types pyarrow infers from the values (checked by the caller).
    Rows with one key set (what a row builder makes) convert in one call; others column by column."""
    try:
        if set(map(len, rows)) == {len(given)}:  # every row has every key
            return pa.Table.from_pylist(rows)
        return pa.table({name: pa.array([r.get(name) for r in rows]) for name in given})
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    for name in sorted(given):  # which column: looked for only on this error path
        try:
            pa.array([r.get(name) for r in rows])
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            sql_type = dict(TABLES[table])[name]
            raise RowContractError(f"{table}.{name}: values of mixed or unsupported kinds for its "
                                   f"{sql_type} column") from None
    raise RowContractError(f"{table}: rows that do not convert")


def schema_hash() -> str:
    text = ";".join(f"{t}:" + ",".join(f"{c} {ty}" for c, ty in cols) for t, cols in sorted(TABLES.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
