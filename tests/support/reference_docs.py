"""Generate docs/cli.md from `routerwatch --help` and docs/sql.md from the store's schema.

    .venv/bin/python -m tests.support.reference_docs          # rewrite both files
    .venv/bin/python -m tests.support.reference_docs --check  # exit 1 if either is out of date

Both references are generated, never edited by hand, so they cannot drift from the code:
tests/docs/test_reference_docs.py fails when the committed files differ from what this writes.
After adding a subcommand, a flag or a column, run the first command and commit the result.

The command-line reference walks the real parser (`collector.cli.build_parser`, including the
subcommands the analyzer and the dashboard register through the `routerwatch.commands` entry
points) and formats every parser's help at a fixed width, so the output does not depend on the
terminal. The SQL reference opens a new store in a temporary directory and lists what
`information_schema` reports after migration (exactly what `routerwatch sql` sees), in the order
`collector.store.schema.TABLES` declares them; column descriptions come from `COLUMNS` below.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLI_MD = REPO / "docs" / "cli.md"
SQL_MD = REPO / "docs" / "sql.md"
WIDTH = 100
REGENERATE = "`.venv/bin/python -m tests.support.reference_docs`"

# -- command line ----------------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each direct subcommand, in registration order."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            out += [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return out


def _walk(parser: argparse.ArgumentParser, summary: str = "") -> list[tuple[str, str, str]]:
    """(prog, summary, help text) of this parser and every parser below it."""
    parser.formatter_class = functools.partial(parser.formatter_class, width=WIDTH)
    rows = [(parser.prog, summary, parser.format_help().rstrip())]
    for _, text, sub in _subcommands(parser):
        rows += _walk(sub, text)
    return rows


def anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading (lower case, punctuation dropped, spaces to '-')."""
    keep = "".join(c for c in heading.strip().lower() if c.isalnum() or c in " -_")
    return keep.replace(" ", "-")


def cli_markdown() -> str:
    from collector.cli import build_parser

    rows = _walk(build_parser())
    top, commands = rows[0], rows[1:]
    lines = [
        "# Command-line reference",
        "",
        f"Generated from `routerwatch --help` by {REGENERATE}: do not edit by",
        "hand (a test fails when this file differs from the generator's output). Every command reads its store from `--store`,",
        "else `$ROUTERWATCH_STORE`, else `/var/lib/routerwatch` as root and `~/.local/share/routerwatch`",
        "otherwise; bad input is a one-line error with exit status 2.",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    for prog, summary, _ in commands:
        lines.append(f"| [`{prog}`](#{anchor(prog)}) | {summary.replace('|', chr(92) + '|')} |")
    lines += ["", "## routerwatch", "", "```text", top[2], "```"]
    for prog, summary, text in commands:
        lines += ["", f"## {prog}", ""]
        if summary:
            lines += [summary[0].upper() + summary[1:] + ".", ""]
        lines += ["```text", text, "```"]
    return "\n".join(lines) + "\n"


# -- SQL -------------------------------------------------------------------------------------------

# table -> (section, what one row is). Tables not listed here still appear (section "Other").
TABLES: dict[str, tuple[str, str]] = {
    "flows": ("Capture and live collection", "One connection instance (like Zeek's conn.log): from a capture (`pcap`), the eBPF probes (`ebpf`), both at once (`ebpf+pcap`), the proxy (`proxy`, two rows: agent leg and upstream leg) or /proc polling (`procnet`)."),
    "processes": ("Capture and live collection", "A process, keyed by (host_id, pid, start_time), with its parent so trees can be rebuilt."),
    "dns": ("Capture and live collection", "One DNS response (repeating its question) or unanswered query; live: one libc `getaddrinfo` result or one query sent to port 53."),
    "tls": ("Capture and live collection", "One TLS (or QUIC Initial) handshake."),
    "ingest_runs": ("Capture and live collection", "One `routerwatch ingest` of a capture file."),
    "collector_stats": ("Capture and live collection", "One interval of the live collector's health counters: a missed event is counted here, never silent."),
    "http": ("Decryption and LLM decoding", "One decrypted (or cleartext) HTTP request/response pair; an HTTP/2 stream is one row."),
    "llm_exchanges": ("Decryption and LLM decoding", "One LLM API call: the HTTP exchange decoded by its API's decoder."),
    "tool_calls": ("Decryption and LLM decoding", "One tool call in an exchange: asked for by the model (`response`) or resent by the agent in its history (`request`)."),
    "secrets_seen": ("Decryption and LLM decoding", "One credential seen in traffic, a command line or an agent's configuration: fingerprint and last 4 characters, never the value."),
    "agent_configs": ("Agents", "One setting read by `routerwatch inventory`: which endpoint an agent is configured to use, and where that came from."),
    "proxy_events": ("Agents", "What the intercepting proxy could not pass or see (upstream or TLS failures, refusals, recording loss)."),
    "gate_decisions": ("Agents", "Every tool call the policy gate judged (`wrap --proxy --enforce`, `routerwatch gate` hooks) and what it did."),
    "findings": ("Analyzer", "One finding of a rule (like a Zeek notice or a Suricata alert)."),
    "routers": ("Analyzer", "The router catalog as rows (builtin and user entries) plus routers observed in traffic."),
    "flow_classes": ("Analyzer", "Every analyzed flow's destination class."),
    "exchange_classes": ("Analyzer", "Every analyzed LLM exchange, classified and normalised."),
    "tool_call_indicators": ("Analyzer", "A suspicious pattern in a tool call's arguments, parsed as shell."),
    "tool_call_hosts": ("Analyzer", "A URL or host named in a tool call's arguments."),
    "package_installs": ("Analyzer", "A package install in a tool call, with its distance to the nearest popular package."),
    "stream_anomalies": ("Analyzer", "A check an SSE stream failed."),
    "canaries": ("Analyzer", "A registered canary credential (`routerwatch canary new`): fingerprint only, never the value."),
    "ledger": ("Analyzer", "One entry of the append-only hash chain over exchanges, their tool calls and findings (`routerwatch ledger verify`)."),
    "analyzer_runs": ("Analyzer", "One `routerwatch analyze` run; the newest holds the watermarks the next run starts from."),
    "schema_migrations": ("Store", "One schema migration applied to this store (migrations are additive and automatic)."),
    "store_batches": ("Store", "One writer batch committed by a fleet collector, recorded in the batch's own transaction "
                               "(a replay after an outage skips a batch already here: exactly once)."),
}

_CLASS = "'provider' | 'router' | 'suspected_router' | 'other'"

# table -> column -> description. Columns without one are listed with their type only.
COLUMNS: dict[str, dict[str, str]] = {
    "flows": {
        "flow_uid": "connection id: links dns, tls, http, llm_exchanges and findings to this flow",
        "community_id": "Community ID v1 of the 5-tuple: joins the same connection across sources (within a time bound: ports are reused)",
        "ts_start": "first packet or connect", "ts_end": "last packet or socket destruction",
        "proto": "'tcp' | 'udp'",
        "src_ip": "originator", "src_port": "originator's port", "dst_ip": "responder", "dst_port": "responder's port",
        "bytes_out": "payload bytes originator -> responder (live: exactly what the process wrote)",
        "bytes_in": "payload bytes responder -> originator",
        "packets_out": "packets (live: the kernel's segment count)", "packets_in": "packets (live: the kernel's segment count)",
        "server_name": "SNI, else a DNS name that resolved to dst_ip",
        "pid": "process that connected (live and proxy; NULL from captures)",
        "source": "'pcap' | 'ebpf' | 'ebpf+pcap' | 'proxy' | 'procnet'",
        "tcp_state": "Zeek-style conn_state (S0, SF, REJ, RSTO, RSTR, RSTOS0, OTH, ...)",
        "history": "Zeek-style history letters (live: only those the kernel events support: S, h, D/d, R/r)",
        "capture_id": "ingest_runs.run_id, or the live capture-ring segment",
        "ip_bytes_out": "IP bytes originator -> responder, headers included", "ip_bytes_in": "IP bytes responder -> originator",
        "process_start": "with pid, keys processes(host_id, pid, start_time)",
        "direction": "live: 'outbound' (this host connected) | 'inbound' (accepted here)",
        "proxy_leg": "proxy: 'agent' (agent -> proxy) | 'upstream' (proxy -> router)",
        "proxy_scheme": "proxy: 'https' (intercepted) | 'http' | 'tunnel' (passed through undecrypted)",
    },
    "processes": {
        "ts": "when the process was recorded", "pid": "process id", "ppid": "parent process id",
        "start_time": "seconds since the epoch", "exe": "executable path",
        "cmdline": "command line, secrets redacted", "uid": "user id",
        "container_id": "from the cgroup, when in a container", "comm": "kernel task name", "cgroup": "cgroup path",
    },
    "dns": {
        "flow_uid": "the DNS flow (captures)", "query": "name asked for", "qtype": "record type (A, AAAA, ...)",
        "rcode": "response code", "answers": "answers from the Answers section only",
        "trans_id": "DNS transaction id", "is_response": "false for a query without a response",
        "pid": "process (live)", "source": "'pcap' | 'ebpf-getaddrinfo' | 'ebpf-udp53' | 'doh' (DNS over HTTPS decoded from an HTTP exchange; flow_uid is its HTTP flow)",
    },
    "tls": {
        "version": "negotiated: 'TLS 1.2', 'TLS 1.3', ...", "sni": "server name the client asked for",
        "alpn": "offered ALPN list, comma-separated", "ja4": "JA4 client fingerprint",
        "decrypted": "whether the connection was decrypted", "cipher": "negotiated cipher suite",
        "alpn_selected": "ALPN the server picked",
    },
    "ingest_runs": {
        "run_id": "flows.capture_id of the flows this run wrote", "file": "capture path as given",
        "sha256": "content hash: the same bytes are never ingested twice", "file_bytes": "file size",
        "packets": "packets read", "truncated": "the capture ends inside a record",
        "errors": "what went wrong, one line", "duration_s": "wall time",
        "status": "'ok' | 'partial' (ingested up to damage, see errors) | 'duplicate' (same bytes already ingested)",
        "keylog": "a key log (or embedded secrets) was used", "flows": "flows written",
        "format": "'pcap' | 'pcapng'",
        "link_types": "comma-separated LINKTYPE numbers of the capture's interfaces",
        "header_walk": "'numpy' (fast path) | 'tshark' (fallback for other link types)",
        "dissected_packets": "packets handed to tshark (DNS, handshakes)",
        "dns_messages": "DNS messages read", "tls_handshakes": "TLS handshakes read",
        "embedded_secrets": "key-log lines in pcapng Decryption Secrets Blocks",
        "decrypted_flows": "flows decrypted", "decrypt_stats": "the decryption pipeline's counters (decryptor used, fallback reason, gaps, ...)",
    },
    "http": {
        "exchange_id": "links llm_exchanges, tool_calls and secrets_seen", "method": "request method",
        "host": "Host / :authority", "path": "request path, secrets redacted", "status": "response status",
        "http_version": "'HTTP/1.1' | 'HTTP/2'",
        "request_headers": "credentials redacted", "response_headers": "credentials redacted",
        "request_body_bytes": "decoded body size", "response_body_bytes": "decoded body size",
        "request_digest": "sha256 of the raw (decoded) body", "response_digest": "sha256 of the raw (decoded) body",
        "ts_response": "first response byte", "duration_ms": "request to end of response",
        "stream_id": "HTTP/2 stream id", "truncated": "the body was cut (capture gap, size cap, connection end)",
        "source": "'keylog' | 'uprobe' | 'proxy' | 'cleartext'",
    },
    "llm_exchanges": {
        "exchange_id": "links http, tool_calls, secrets_seen, findings, ledger",
        "pid": "agent process (live and proxy)",
        "api": "'openai.chat' | 'openai.responses' | 'openai.completions' | 'openai.embeddings' | 'anthropic.messages' | 'gemini.generate'",
        "host": "endpoint host[:port]", "path": "request path",
        "model_requested": "model in the request", "model_returned": "model the response names",
        "streamed": "server-sent events", "status": "HTTP status",
        "router": "router software named by the response headers",
        "tool_call_count": "tool calls the model asked for",
        "input_tokens": "usage reported", "output_tokens": "usage reported",
        "latency_ms": "request to end of response",
        "router_headers": "fingerprint headers (x-oneapi-*, x-litellm-*, server, via, ...)",
        "request_digest": "sha256 of the raw body", "response_digest": "sha256 of the raw body",
        "request_body": "redacted, size-capped",
        "response_body": "redacted, size-capped; a stream as the assembled {text, tool_calls}",
        "truncated": "a body was cut", "stream_events": "per-stream summary for stream-integrity rules",
        "source": "'keylog' | 'uprobe' | 'proxy' | 'cleartext'",
    },
    "tool_calls": {
        "idx": "position in the exchange", "call_id": "the API's tool-call id", "name": "tool name",
        "arguments": "JSON arguments as the client assembles them, secrets redacted",
        "direction": "'response' (the model asks) | 'request' (history the agent resent)",
    },
    "secrets_seen": {
        "kind": "detector: aws_access_key_id, openai_key, anthropic_key, github_token, pem_private_key, bip39_mnemonic, bearer_token, ...",
        "fingerprint": "HMAC-SHA256 with the store's key, hex, truncated",
        "last4": "last 4 characters", "direction": "'request' | 'response' | 'config' | 'cmdline'",
        "destination": "host the secret was sent to (or the configured endpoint)",
        "location": "header name, 'body', ...", "pid": "process, when known",
    },
    "collector_stats": {
        "interval_s": "length of the interval", "events": "records drained from the kernel",
        "lost": "ring-buffer reservations that failed (records lost), all kinds",
        "capture_drops": "kernel drops on the capture socket",
        "decrypt_backlog": "connections waiting for decryption", "rss_bytes": "collector memory",
        "flows_written": "flows committed", "mode": "'ebpf' | 'procnet' (degraded), '+capture' when the ring runs",
        "detail": "cumulative counters (kernel_conn_seen, conn_recorded, kernel_conn_lost, go_tls_refused, ...)",
    },
    "agent_configs": {
        "user": "user name", "uid": "user id",
        "agent": "'claude-code' | 'codex' | 'gemini-cli' | 'goose' | 'crush' | 'opencode' | ...",
        "pid": "live process (NULL for config files)",
        "process_start": "with pid, keys processes(host_id, pid, start_time)",
        "source": "'env' (/proc/PID/environ) | 'file'", "path": "config file, or /proc/PID/environ",
        "scope": "'process' | 'user' | 'project' | 'project-local'",
        "variable": "ANTHROPIC_BASE_URL, model_providers.x.base_url, env.ANTHROPIC_BASE_URL, ...",
        "kind": "'endpoint' | 'proxy' | 'credential' | 'credential-ref' | 'provider' | 'model' | 'ca'",
        "endpoint": "URL as configured (userinfo removed); NULL for credentials",
        "endpoint_host": "host part, lowercased", "endpoint_port": "port",
        "value": "non-secret values (provider, model, CA path); credentials: the fingerprint placeholder",
        "fingerprint": "credentials: keyed fingerprint (as in secrets_seen)",
        "effective": "false when a higher-precedence source overrides this one",
        "file_mtime": "config file's modification time", "file_sha256": "config file's hash",
    },
    "proxy_events": {
        "kind": "'upstream-failed' | 'client-tls-failed' | 'passthrough' | 'refused' | 'parse-error' | 'sink-loss'",
        "detail": "what happened", "pid": "agent process", "flow_uid": "the agent leg",
        "target": "host:port the agent asked for",
    },
    "gate_decisions": {
        "source": "'proxy' | 'hook'",
        "action": "'block' (never reached the agent, or the hook denied it) | 'record' (passed; a rule matched) | 'allow'",
        "rule_id": "the rule that decided (analyzer rule ids; 'gate-unparseable', 'gate-timeout')",
        "rules": "every rule the call tripped", "reason": "what the agent and its user were told",
        "detail": "the evidence (matching command fragment), secrets redacted", "agent": "agent name, when known",
        "router": "catalog name or host[:port] of the router the call came from", "pid": "agent process",
        "flow_uid": "proxy: the upstream leg", "exchange_id": "proxy: the exchange whose response carried the call",
        "api": "openai.chat | openai.responses | anthropic.messages | hook:claude-code | hook:codex",
        "tool_name": "the tool", "call_id": "the call's id", "arguments": "the call's arguments, secrets redacted, capped",
        "streamed": "the response was streamed", "held_ms": "proxy: how long the response waited on the gate",
        "policy": "digest of the policy that decided", "session_id": "hook: the agent's session",
    },
    "findings": {
        "finding_id": "unique id", "ts": "when the evidence happened", "rule_id": "rule that fired",
        "rule_rev": "rule revision", "severity": "'info' | 'low' | 'medium' | 'high' | 'critical'",
        "attack_class": "'AC-1' | 'AC-1.a' | 'AC-1.b' | 'AC-2' | 'egress' | 'model-substitution' | 'stream-integrity' | 'fingerprint-mismatch' | 'canary' | 'dns' | 'config'",
        "title": "rule title", "pid": "evidence: process", "flow_uid": "evidence: flow",
        "exchange_id": "evidence: exchange", "evidence": "the rule's evidence object",
        "dedup_key": "what makes two rows one finding (within the rule's suppression window)",
        "router": "router or endpoint involved", "summary": "one human line: what happened, where",
        "run_id": "analyzer_runs.run_id that wrote it",
    },
    "finding_coverage": {
        "ts": "time of the evidence row", "finding_id": "findings.finding_id it belongs to", "rule_id": "rule",
        "dedup_key": "the finding's dedup key", "exchange_id": "an exchange the finding accounts for",
        "flow_uid": "a flow the finding accounts for", "pid": "process of the evidence",
        "run_id": "analyzer_runs.run_id that recorded it",
        "raised": "this evidence row raised the finding (else a duplicate or later one)",
    },
    "router_baseline": {
        "ts": "when the snapshot was taken", "run_id": "analyzer_runs.run_id", "router": "router (catalog name or host:port)",
        "first_seen": "first exchange", "last_seen": "last exchange", "exchanges": "exchanges so far (all hosts, all runs)",
        "tool_call_exchanges": "exchanges whose response carried tool calls",
        "clean_exchanges": "exchanges without an execution-strength tool-call signal",
        "execution_exchanges": "exchanges with one", "first_execution_ts": "the first of those",
        "hosts": "host_ids that used the router (capped)", "indicator_kinds": "tool-call indicator kinds seen",
        "families": "'requested->returned' model families seen", "fingerprints": "response fingerprints seen (capped)",
        "latency_n": "exchanges with a latency", "latency_mean_ms": "mean latency",
        "latency_m2": "sum of squared deviations (standard deviation = sqrt(m2 / n))", "latency_max_ms": "largest latency",
    },
    "routers": {
        "host_id": "NULL for catalog rows; the observing host for 'observed'", "name": "catalog name",
        "kind": "'provider' | 'router' | 'declared' | 'suspected' | 'software'",
        "host_pattern": "'api.openai.com', '*.openai.azure.com', '127.0.0.1'", "port": "NULL: any port",
        "provider": "provider family a provider endpoint serves ('openai', 'anthropic', ...)",
        "software": "router software this row fingerprints ('litellm', 'one-api', ...)",
        "match_headers": "response-header name patterns that fingerprint the software",
        "match_paths": "paths that only that software serves", "source": "'builtin' | 'user' | 'observed'",
        "catalog_digest": "digest of the catalog that produced the row",
    },
    "flow_classes": {
        "dest": "server_name, else dst_ip", "class": _CLASS,
        "router": "catalog name (or the host for suspected routers)",
        "first_seen": "first flow from this host to (dest, dst_port)",
    },
    "exchange_classes": {
        "dest": "endpoint host", "class": _CLASS, "router": "catalog name, else host:port",
        "provider": "provider family when class = 'provider'",
        "software": "router software recognised from headers / paths / port",
        "brand": "a provider brand the host name imitates ('openai', 'anthropic', ...)",
        "family_requested": "model family (vendor prefix and date/version suffix removed)",
        "family_returned": "model family of the response",
        "suspicious_tool_calls": "execution-strength signals in its response tool calls (execution indicators, typosquats)",
        "fingerprint": "response fingerprint: router header names, server product, recognised software",
    },
    "tool_call_indicators": {
        "idx": "tool_calls.idx", "direction": "tool_calls.direction",
        "kind": "'download_exec' | 'base64_exec' | 'reverse_shell' | 'credential_exfil' | 'secret_sent' | 'persistence' | "
                "'install_url' | 'custom_index' | 'credential_read' | 'env_file_read' | 'env_dump' | 'runs_file'",
        "detail": "the matching command fragment (already redacted)",
        "host": "the remote host involved, when one is named",
        "context": "'command' (would run) | 'written' (in file content the call writes) | 'encoded' (in a blob nothing runs)",
        "execution": "execution-strength evidence (collector.toolcalls.is_execution)",
        "path": "context 'written': the file the text was written to",
    },
    "tool_call_hosts": {
        "idx": "tool_calls.idx", "direction": "tool_calls.direction", "host": "host named",
        "port": "port named", "url": "URL named", "allowlisted": "on the catalog's allowlist",
        "intent": "'fetch' | 'connect' | 'install' | 'index' | 'arg' (egress intents) | 'mention' | 'written'",
    },
    "package_installs": {
        "idx": "tool_calls.idx", "direction": "tool_calls.direction",
        "manager": "'pip' | 'npm' | 'cargo' | 'go' (uv, poetry, yarn, pnpm, bun, npx map to these)",
        "package": "package name", "popular": "on the shipped popular list",
        "nearest": "nearest popular package name when not popular",
        "distance": "Damerau-Levenshtein distance to `nearest`",
    },
    "stream_anomalies": {
        "kind": "'tokens_decrease' | 'unknown_event' | 'model_changed' | 'after_done' | an anomaly the decoder reported",
        "detail": "what was seen",
    },
    "canaries": {
        "canary_id": "id", "kind": "'aws' | 'openai' | 'anthropic' | 'github' | 'eth'",
        "secret_kind": "the detector kind its value is seen as",
        "fingerprint": "keyed fingerprint (as in secrets_seen)", "last4": "last 4 characters",
        "label": "your note: where it was planted",
    },
    "ledger": {
        "seq": "position in the chain", "ts": "when the entry was appended",
        "exchange_ts": "llm_exchanges.ts", "router": "router of the exchange",
        "request_digest": "llm_exchanges.request_digest", "response_digest": "llm_exchanges.response_digest",
        "prev_hash": "hash of the previous entry", "hash": "sha256 of the entry's fields, parts and prev_hash",
        "version": "entry format: NULL = v1 (raw digests only), 2 = stored columns too",
        "kind": "v2: 'exchange' | 'tool_calls' (committed after their exchange) | 'finding' | 'finding_coverage' (later evidence of an earlier finding)",
        "finding_id": "findings.finding_id of a 'finding' or 'finding_coverage' entry",
        "parts": "v2: a digest per stored column of the rows the entry covers",
    },
    "analyzer_runs": {
        "run_id": "findings.run_id", "watermarks": "table -> highest rowid analyzed",
        "new_rows": "table -> rows analyzed this run", "findings": "findings written",
        "suppressed": "findings suppressed by their dedup window", "duration_s": "wall time",
        "ledger_seq": "ledger length after the run", "ledger_head": "ledger head hash after the run",
        "rules": "rule id -> rev",
    },
    "schema_migrations": {
        "version": "migration number", "ts": "when it was applied",
        "schema_hash": "hash of the declared schema", "description": "the DDL applied",
    },
}

# Columns that mean the same everywhere unless a table says otherwise.
COMMON: dict[str, str] = {
    "host_id": "host that observed it ($ROUTERWATCH_HOST_ID, else the hostname)",
    "ts": "time of the event (UTC)",
}


def store_columns() -> dict[str, list[tuple[str, str]]]:
    """Every table of a freshly migrated store: table -> [(column, type)], as `routerwatch sql` sees them."""
    from collector.store import schema
    from collector.store.connection import LAKE, Store

    with tempfile.TemporaryDirectory() as tmp, Store.open(str(Path(tmp) / "store")) as store:
        rows = store.con.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_catalog = ? ORDER BY table_name, ordinal_position",
            [LAKE],
        ).fetchall()
    found: dict[str, list[tuple[str, str]]] = {}
    for table, column, sql_type in rows:
        found.setdefault(table, []).append((column, sql_type))
    order = [t for t in schema.TABLES if t in found] + sorted(t for t in found if t not in schema.TABLES)
    return {t: found[t] for t in order}


def sql_markdown() -> str:
    tables = store_columns()
    sections: dict[str, list[str]] = {}
    for table in tables:
        sections.setdefault(TABLES.get(table, ("Other", ""))[0], []).append(table)
    lines = [
        "# SQL reference",
        "",
        "Generated from the store's schema (`collector/store/schema.py`) by",
        f"{REGENERATE}: do not edit by hand (a test fails when this file differs",
        "from the generator's output); column descriptions live in that generator (`tests/support/reference_docs.py`).",
        "Query with `routerwatch sql \"SELECT ...\"` or the",
        "dashboard's SQL page. Every table carries `host_id`; timestamps are UTC; ids link tables",
        "(`flow_uid`, `exchange_id`, `(host_id, pid, start_time)` for processes). Secrets appear only",
        "as `[REDACTED:kind:fingerprint]` placeholders and fingerprints.",
        "",
    ]
    for section, names in sections.items():
        lines.append(f"- {section}: " + ", ".join(f"[`{t}`](#{anchor(t)})" for t in names))
    for section, names in sections.items():
        lines += ["", f"## {section}"]
        for table in names:
            lines += ["", f"### {table}", ""]
            about = TABLES.get(table, ("", ""))[1]
            if about:
                lines += [about, ""]
            lines += ["| column | type | description |", "|---|---|---|"]
            described = COLUMNS.get(table, {})
            for column, sql_type in tables[table]:
                text = described.get(column) or COMMON.get(column, "")
                lines.append(f"| `{column}` | {sql_type} | {text.replace('|', chr(92) + '|')} |")
    return "\n".join(lines) + "\n"


# -- entry point -----------------------------------------------------------------------------------


def generated() -> dict[Path, str]:
    return {CLI_MD: cli_markdown(), SQL_MD: sql_markdown()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.support.reference_docs", description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is out of date")
    args = p.parse_args(argv)
    stale = []
    for path, text in generated().items():
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
    for path in stale:
        print(f"{'out of date' if args.check else 'wrote'}: {path.relative_to(REPO)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
