"""Append-only hash chain over what the store keeps: exchanges, their tool calls and the findings.

Every entry commits to the one before it (`prev_hash`) and to what it covers. Two entry formats:

- **v1** (stores before issue 13; `version` NULL): hash_n = sha256(json([prev_hash, seq, exchange_id,
  host_id, exchange_ts, router, request_digest, response_digest])): the raw bodies' digests only.
  Old entries keep this form and still verify; they cannot tell a rewritten stored body.
- **v2**: hash_n = sha256(json(["rw-ledger-v2", prev_hash, seq, kind, exchange_id, finding_id, host_id,
  ts, router, request_digest, response_digest]) + "\n" + parts) where `parts` (canonical JSON) holds a
  digest per stored column, computed by DuckDB from a typed text of the value (`digest_sql`):
  * `exchange` entries: every column of the exchange's `llm_exchanges` row (the redacted request and
    response bodies, models, status, router, tokens, ...) and of each of its `tool_calls` rows;
  * `tool_calls` entries: tool-call rows committed after their exchange was already in the ledger
    (the live writer may commit an exchange and its tool calls apart);
  * `finding` entries: every column of each finding an analyzer run wrote, and of the
    `finding_coverage` rows (the exchanges and flows it accounts for) that run wrote for it;
  * `finding_coverage` entries: coverage rows a later run wrote for a finding raised earlier (findings
    are append-only: later coverage of a finding is new rows, never an edit).

`verify()` recomputes the chain, then recomputes each part from the store and names what differs: which
entry, which row (exchange, tool call, finding) and which column, or that a row was deleted, added or
duplicated. A chain anyone can recompute is only as good as its anchors: the head printed by
`routerwatch ledger verify` and sent in EVE `ledger` events belongs somewhere outside the store.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from collector.store.schema import TABLES

GENESIS = "0" * 64
V2 = 2
V2_TAG = "rw-ledger-v2"
TS_SQL = "strftime({col}, '%Y-%m-%dT%H:%M:%S.%f')"  # the timestamp as hashed: fixed width, microseconds

# The columns a v2 entry covers, fixed per format version: a column added to the schema later is not
# covered by older entries (and verify compares only the columns an entry names).
EXCHANGE_COLUMNS = (
    "ts", "flow_uid", "host_id", "pid", "api", "host", "path", "model_requested", "model_returned", "streamed",
    "status", "router", "tool_call_count", "input_tokens", "output_tokens", "latency_ms", "router_headers",
    "request_digest", "response_digest", "request_body", "response_body", "truncated", "stream_events", "source",
)
TOOL_CALL_COLUMNS = ("ts", "host_id", "exchange_id", "idx", "call_id", "name", "arguments", "direction")
FINDING_COLUMNS = (
    "finding_id", "ts", "rule_id", "rule_rev", "severity", "attack_class", "title", "host_id", "pid", "flow_uid",
    "exchange_id", "evidence", "dedup_key", "router", "summary", "run_id",
)
COVERAGE_COLUMNS = ("ts", "host_id", "finding_id", "rule_id", "dedup_key", "exchange_id", "flow_uid", "pid", "run_id",
                    "raised")


# -- hashing -------------------------------------------------------------------------------------------
def entry_hash(prev: str, seq: int, exchange_id: str | None, host_id: str | None, exchange_ts: str | None,
               router: str | None, request_digest: str | None, response_digest: str | None) -> str:
    """A v1 entry's hash. `exchange_ts` is the text of TS_SQL (so Python and SQL agree on its form)."""
    payload = json.dumps([prev, int(seq), exchange_id, host_id, exchange_ts, router, request_digest, response_digest],
                         separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def entry_hash_v2(prev: str, seq: int, kind: str | None, exchange_id: str | None, finding_id: str | None,
                  host_id: str | None, ts: str | None, router: str | None, request_digest: str | None,
                  response_digest: str | None, parts: str) -> str:
    """A v2 entry's hash: sha256 of the fields as a JSON array, a newline, and `parts`, the canonical JSON
    text of the digests (`canonical(parts_dict)`; JSON text holds no raw newline, so the split is unique)."""
    fields = json.dumps([V2_TAG, prev, int(seq), kind, exchange_id, finding_id, host_id, ts, router, request_digest,
                         response_digest], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{fields}\n{parts}".encode()).hexdigest()


def canonical(v: Any) -> str:
    """The text of a `parts` dict as hashed (keys sorted: the same at append and at verify)."""
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _value_sql(col: str, sql_type: str) -> str:
    """One text per stored value, by declared type, computed by DuckDB at append and at verify alike
    (a type tag first, so NULL, '' and 0 differ; doubles with 17 significant digits round-trip)."""
    q = f'"{col}"'
    if sql_type.endswith("[]"):
        text = f"'l' || to_json({q})::VARCHAR"
    elif sql_type == "TIMESTAMP":
        text = f"'t' || {TS_SQL.format(col=q)}"
    elif sql_type == "DOUBLE":
        text = f"'f' || printf('%.17g', {q})"
    else:  # VARCHAR, JSON (the stored text), INTEGER, BIGINT, BOOLEAN
        text = f"'{sql_type[0].lower()}' || {q}::VARCHAR"
    return f"coalesce({text}, 'n')"


def digest_sql(table: str, columns: tuple[str, ...], have: set[str] | None = None) -> str:
    """One select-list item, `"d:<col>,<col>,..."`: the first 128 bits of sha256 of each column's value
    text, comma-separated (one Python string per row instead of one per column)."""
    types = dict(TABLES[table])
    cols = [c for c in columns if have is None or c in have]
    items = ", ".join(f"left(sha256({_value_sql(c, types[c])}), 32)" for c in cols)
    return f'concat_ws(\',\', {items}) AS "d:{",".join(cols)}"'


def text_digest(value: str | None) -> str:
    """The digest of a VARCHAR value, in Python (what `digest_sql` computes for it)."""
    return hashlib.sha256(("s" + value).encode() if value is not None else b"n").hexdigest()[:32]


def column_digests(row: dict) -> dict[str, str]:
    return row["d"]


def tool_call_key(row: dict) -> str:
    return f"{row.get('direction')}#{row.get('idx')}"


def coverage_key(row: dict) -> str:
    """What a finding_coverage row accounts for: an exchange, else a flow."""
    if row.get("exchange_id") is not None:
        return f"exchange {row['exchange_id']}"
    return f"flow {row.get('flow_uid')}"


def _keyed_parts(rows: list[dict], key) -> dict[str, list[dict[str, str]]]:
    """Rows by key -> their column digests (a list: a key may repeat), in a canonical order."""
    out: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        out[key(r)].append(column_digests(r))
    return {k: sorted(v, key=canonical) for k, v in out.items()}


def tool_call_parts(rows: list[dict]) -> dict[str, list[dict[str, str]]]:
    """Tool-call rows by key (direction#idx) -> their column digests."""
    return _keyed_parts(rows, tool_call_key)


def coverage_parts(rows: list[dict]) -> dict[str, list[dict[str, str]]]:
    """finding_coverage rows of one finding by what they account for -> their column digests."""
    return _keyed_parts(rows, coverage_key)


def _dicts(cur: duckdb.DuckDBPyConnection) -> list[dict]:
    """Rows as dicts; the `d:<col>` digests of each row gathered under the key "d" (column -> digest)."""
    cols = [d[0] for d in cur.description]
    plain = [(i, c) for i, c in enumerate(cols) if not c.startswith("d:")]
    at = next((i for i, c in enumerate(cols) if c.startswith("d:")), None)
    names = cols[at][2:].split(",") if at is not None else []
    out = []
    for r in cur.fetchall():
        row = {c: r[i] for i, c in plain}
        row["d"] = dict(zip(names, r[at].split(","), strict=True)) if at is not None else {}
        out.append(row)
    return out


# -- append ---------------------------------------------------------------------------------------------
def head(con: duckdb.DuckDBPyConnection) -> tuple[int, str]:
    row = con.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
    return (int(row[0]), row[1]) if row else (0, GENESIS)


def append(con: duckdb.DuckDBPyConnection, now: dt.datetime, routers: dict[str, str | None],
           run_id: str | None = None) -> tuple[pa.Table, int, str]:
    """v2 ledger rows (an Arrow table) for this run: one per exchange in `new_llm_exchanges` (ordered by
    time then id) with its tool calls, one per exchange whose tool calls in `new_tool_calls` came after
    it, one per finding of `run_id` (already inserted in this transaction). `routers` maps exchange ids
    to the router the classifier named."""
    seq, prev = head(con)
    exchanges = _dicts(con.execute(
        f"SELECT exchange_id, host_id, ts, {TS_SQL.format(col='ts')} AS __ts_text, router, host, request_digest, "
        f"response_digest, {digest_sql('llm_exchanges', EXCHANGE_COLUMNS, _columns(con, 'new_llm_exchanges'))} "
        "FROM new_llm_exchanges ORDER BY ts, exchange_id"))
    calls = _dicts(con.execute(
        f"SELECT exchange_id, direction, idx, host_id, {digest_sql('tool_calls', TOOL_CALL_COLUMNS)} "
        "FROM new_tool_calls WHERE exchange_id IS NOT NULL"))
    by_exchange: dict[str, list[dict]] = defaultdict(list)
    for c in calls:
        by_exchange[c.get("exchange_id")].append(c)
    findings = _dicts(con.execute(
        f"SELECT finding_id, host_id, ts, {TS_SQL.format(col='ts')} AS __ts_text, router, "
        f"{digest_sql('findings', FINDING_COLUMNS)} FROM findings WHERE run_id = ? ORDER BY ts, finding_id",
        [run_id])) if run_id else []
    coverage: dict[str, list[dict]] = defaultdict(list)
    if run_id and _has_table(con, "finding_coverage"):
        for c in _dicts(con.execute(
                f"SELECT finding_id, exchange_id, flow_uid, host_id, {digest_sql('finding_coverage', COVERAGE_COLUMNS)} "
                "FROM finding_coverage WHERE run_id = ? AND finding_id IS NOT NULL", [run_id])):
            coverage[c["finding_id"]].append(c)

    cols: dict[str, list] = defaultdict(list)

    def add(kind: str, exchange_id, finding_id, host_id, ts, ts_text, router, rq, rs, parts: dict) -> None:
        nonlocal seq, prev
        seq += 1
        text = canonical(parts)
        h = entry_hash_v2(prev, seq, kind, exchange_id, finding_id, host_id, ts_text, router, rq, rs, text)
        for k, v in (("seq", seq), ("host_id", host_id), ("exchange_id", exchange_id), ("exchange_ts", ts),
                     ("router", router), ("request_digest", rq), ("response_digest", rs), ("prev_hash", prev),
                     ("hash", h), ("version", V2), ("kind", kind), ("finding_id", finding_id), ("parts", text)):
            cols[k].append(v)
        prev = h

    in_run = set()
    for e in exchanges:
        ex = e["exchange_id"]
        in_run.add(ex)
        router = routers.get(ex) or e.get("router") or e.get("host")
        parts = {"llm_exchanges": column_digests(e), "tool_calls": tool_call_parts(by_exchange.get(ex, []))}
        add("exchange", ex, None, e.get("host_id"), e["ts"], e["__ts_text"], router, e.get("request_digest"),
            e.get("response_digest"), parts)
    for ex in sorted(k for k in by_exchange if k not in in_run):
        rows = by_exchange[ex]
        add("tool_calls", ex, None, rows[0].get("host_id"), None, None, None, None, None,
            {"tool_calls": tool_call_parts(rows)})
    for f in findings:  # each with the evidence rows it accounts for in this run
        add("finding", None, f["finding_id"], f.get("host_id"), f["ts"], f["__ts_text"], f.get("router"), None, None,
            {"findings": column_digests(f), "finding_coverage": coverage_parts(coverage.pop(f["finding_id"], []))})
    for fid in sorted(coverage):  # later evidence for findings raised by earlier runs
        rows = coverage[fid]
        add("finding_coverage", None, fid, rows[0].get("host_id"), None, None, None, None, None,
            {"finding_coverage": coverage_parts(rows)})

    n = len(cols["seq"])
    s, ts_type = pa.string(), pa.timestamp("us")
    out = pa.table({
        "seq": pa.array(cols["seq"], pa.int64()),
        "ts": pa.array(np.full(n, np.datetime64(now, "us"))),
        "host_id": pa.array(cols["host_id"], s), "exchange_id": pa.array(cols["exchange_id"], s),
        "exchange_ts": pa.array(cols["exchange_ts"], ts_type), "router": pa.array(cols["router"], s),
        "request_digest": pa.array(cols["request_digest"], s), "response_digest": pa.array(cols["response_digest"], s),
        "prev_hash": pa.array(cols["prev_hash"], s), "hash": pa.array(cols["hash"], s),
        "version": pa.array(cols["version"], pa.int32()), "kind": pa.array(cols["kind"], s),
        "finding_id": pa.array(cols["finding_id"], s), "parts": pa.array(cols["parts"], s),
    })
    return out, seq, prev


# -- verify ---------------------------------------------------------------------------------------------
@dataclass
class Verification:
    entries: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    problems: list[str] = field(default_factory=list)
    truncated: int = 0  # problems beyond max_problems, counted only
    pending: int = 0  # tool-call rows of ledgered exchanges committed since the last analyze

    @property
    def ok(self) -> bool:
        return not self.problems


def _has_table(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    try:
        con.execute(f"SELECT * FROM {table} LIMIT 0")
    except duckdb.CatalogException:
        return False
    return True


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    """The columns `table` has here (a store migrated before a column existed lacks it)."""
    return {r[0] for r in con.execute(f"SELECT * FROM {table} LIMIT 0").description}


def _changed(expected: dict[str, str], actual: dict[str, str], order: tuple[str, ...]) -> list[str]:
    known = {c: i for i, c in enumerate(order)}
    return sorted((c for c in expected if expected[c] != actual.get(c)), key=lambda c: (known.get(c, len(known)), c))


def verify(con: duckdb.DuckDBPyConnection, expected_head: str | None = None, max_problems: int = 50) -> Verification:
    """Recompute the chain; compare what each entry covers with the store; check the run heads and
    `expected_head`. Problems name the entry, the row and the column.

    Every read sees one snapshot of the store (one read transaction, rolled back): read statement by
    statement, an analyze run that committed between the ledger read and the coverage read made its
    new coverage rows look "added outside analyze" (seen beside the analyzer service)."""
    try:
        con.execute("BEGIN TRANSACTION")
    except duckdb.TransactionException:  # the caller's own transaction already pins one snapshot
        return _verify(con, expected_head, max_problems)
    try:
        return _verify(con, expected_head, max_problems)
    finally:
        con.execute("ROLLBACK")


def _verify(con: duckdb.DuckDBPyConnection, expected_head: str | None, max_problems: int) -> Verification:
    v = Verification()

    def problem(msg: str) -> None:
        if len(v.problems) < max_problems:
            v.problems.append(msg)
        else:
            v.truncated += 1

    have = _columns(con, "ledger")
    extra = ", ".join(c if c in have else f"NULL AS {c}" for c in ("version", "kind", "finding_id", "parts"))
    rows = con.execute(
        f"SELECT seq, exchange_id, host_id, {TS_SQL.format(col='exchange_ts')}, router, request_digest, response_digest, "
        f"prev_hash, hash, {extra} FROM ledger ORDER BY rowid"
    ).fetchall()
    prev = GENESIS
    expected_seq = 1
    hashes: dict[int, str] = {}
    v2: list[tuple[int, str, str | None, str | None, dict]] = []  # (seq, kind, exchange_id, finding_id, parts)
    for seq, ex, host_id, ts, router, rq, rs, prev_hash, h, version, kind, finding_id, parts in rows:
        v.entries += 1
        if seq != expected_seq:
            if seq is not None and seq > expected_seq:
                problem(f"ledger entries {expected_seq}..{seq - 1} are missing (deleted)")
            else:
                problem(f"ledger entry {seq} is out of order (expected {expected_seq}): reordered or duplicated")
        if prev_hash != prev:
            problem(f"ledger entry {seq}: prev_hash does not match the previous entry (deleted or reordered entries)")
        what = f"finding {finding_id}" if kind == "finding" else f"exchange {ex}"
        if version == V2:
            try:
                parsed = json.loads(parts) if parts else None
            except ValueError:
                parsed = None
            calc = entry_hash_v2(prev_hash or "", seq or 0, kind, ex, finding_id, host_id, ts, router, rq, rs,
                                 canonical(parsed)) if isinstance(parsed, dict) else None
            if isinstance(parsed, dict):
                v2.append((seq, kind, ex, finding_id, parsed))
        elif version is None:
            calc = entry_hash(prev_hash or "", seq or 0, ex, host_id, ts, router, rq, rs)
        else:
            calc = None
        if calc != h:
            problem(f"ledger entry {seq} ({what}): the entry itself was modified (hash mismatch)")
        hashes[seq] = h
        prev = h
        expected_seq = (seq or expected_seq) + 1
    if rows:
        v.head_seq, v.head_hash = int(rows[-1][0] or 0), rows[-1][8]
    _check_v1_exchanges(con, problem, "version" in have)
    v.pending = _check_v2(con, v2, problem)
    # the heads every analyze run recorded
    for run_id, seq, h in con.execute(
        "SELECT run_id, ledger_seq, ledger_head FROM analyzer_runs WHERE ledger_seq > 0 ORDER BY ts"
    ).fetchall():
        if seq > v.head_seq:
            problem(f"run {run_id} recorded ledger entry {seq}, but the ledger ends at {v.head_seq} (tail deleted)")
        elif hashes.get(seq) != h:
            problem(f"run {run_id} recorded head {h[:16]}… at entry {seq}; the chain now has {str(hashes.get(seq))[:16]}…")
    if expected_head and expected_head not in (v.head_hash, *hashes.values()):
        problem(f"the anchored head {expected_head[:16]}… is not in the chain")
    if v.truncated:
        v.problems.append(f"... and {v.truncated} more problem(s)")
    return v


def _check_v1_exchanges(con: duckdb.DuckDBPyConnection, problem, versioned: bool) -> None:
    """v1 entries: the exchange still exists with the same raw digests and time."""
    only_v1 = "WHERE l.version IS NULL" if versioned else ""
    for ex, seq, why in con.execute(
        f"""
        SELECT l.exchange_id, l.seq,
               CASE WHEN e.exchange_id IS NULL THEN 'missing' ELSE 'changed' END AS why
        FROM (SELECT * FROM ledger l {only_v1}) l
        LEFT JOIN (SELECT exchange_id, any_value(request_digest) AS request_digest,
                          any_value(response_digest) AS response_digest, any_value(ts) AS ts
                   FROM llm_exchanges GROUP BY exchange_id) e USING (exchange_id)
        WHERE e.exchange_id IS NULL OR e.request_digest IS DISTINCT FROM l.request_digest
           OR e.response_digest IS DISTINCT FROM l.response_digest OR e.ts IS DISTINCT FROM l.exchange_ts
        ORDER BY l.seq LIMIT 1000
        """
    ).fetchall():
        problem(f"ledger entry {seq}: exchange {ex} was "
                f"{'deleted from llm_exchanges' if why == 'missing' else 'modified in llm_exchanges (request_digest, response_digest or ts)'}")


def _check_v2(con: duckdb.DuckDBPyConnection, entries: list, problem) -> int:
    """Recompute every part a v2 entry covers from the store and name the differences; returns the
    number of tool-call rows committed since the last analyze (not covered yet, not a problem)."""
    ex_entries = {ex: (seq, p) for seq, kind, ex, _f, p in entries if kind == "exchange"}
    calls_expected, calls_seq = _expected_tool_calls(entries)
    current, calls_now, pending = _current_exchanges(con, sorted(set(ex_entries) | set(calls_expected)))
    for ex, (seq, p) in sorted(ex_entries.items(), key=lambda kv: kv[1][0]):
        _check_row(problem, f"ledger entry {seq}: ", f"exchange {ex}", "llm_exchanges", current.get(ex, []),
                   p.get("llm_exchanges") or {}, EXCHANGE_COLUMNS)
    # tool calls: everything the entries for an exchange cover, against the rows now
    for ex, expected in sorted(calls_expected.items(), key=lambda kv: calls_seq[kv[0]]):
        where = f"ledger entry {calls_seq[ex]}: "
        for key, how, changed in _part_changes(expected, tool_call_parts(calls_now.get(ex, [])), TOOL_CALL_COLUMNS):
            problem(where + {
                "modified": f"tool call {key} of exchange {ex} was modified in tool_calls: {changed}",
                "deleted": f"tool call {key} of exchange {ex} was deleted from tool_calls",
                "added": f"tool call {key} of exchange {ex} was added to tool_calls after its ledger entry",
                "several": f"tool calls {key} of exchange {ex} were modified in tool_calls",
            }[how])
    _check_findings(con, entries, problem)
    _check_coverage(con, entries, problem)
    return pending


def _expected_tool_calls(entries: list) -> tuple[dict[str, dict[str, list]], dict[str, int]]:
    """What the `exchange` and `tool_calls` entries cover, per exchange and tool-call key, and the
    first entry of each exchange (where a difference is reported)."""
    expected: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    first_seq: dict[str, int] = {}
    for seq, kind, ex, _f, p in entries:
        if kind in ("exchange", "tool_calls"):
            expected[ex]  # noqa: B018 - an exchange without tool calls must stay without
            for key, lst in (p.get("tool_calls") or {}).items():
                expected[ex][key].extend(lst)
            first_seq.setdefault(ex, seq)
    return expected, first_seq


def _current_exchanges(con: duckdb.DuckDBPyConnection,
                       ids: list[str]) -> tuple[dict[str, list[dict]], dict[str, list[dict]], int]:
    """The column digests of the exchanges `ids` and of their tool calls as the store has them now,
    and the number of tool-call rows past the last analyze's watermark (left out: not covered yet)."""
    current: dict[str, list[dict]] = defaultdict(list)
    calls_now: dict[str, list[dict]] = defaultdict(list)
    pending = 0
    if not ids:
        return current, calls_now, pending
    con.register("__rw_ledger_ids", pa.table({"exchange_id": pa.array(ids, pa.string())}))
    try:
        digests = digest_sql("llm_exchanges", EXCHANGE_COLUMNS, _columns(con, "llm_exchanges"))
        for r in _dicts(con.execute(f"SELECT exchange_id, {digests} FROM llm_exchanges "
                                    "JOIN __rw_ledger_ids USING (exchange_id)")):
            current[r["exchange_id"]].append(r)
        # rows past the last analyze's watermark are not covered yet (the next run covers them)
        mark = int(_watermarks(con).get("tool_calls", -1))
        for r in _dicts(con.execute(f"SELECT rowid > ? AS __pending, exchange_id, direction, idx, "
                                    f"{digest_sql('tool_calls', TOOL_CALL_COLUMNS)} FROM tool_calls "
                                    "JOIN __rw_ledger_ids USING (exchange_id)", [mark])):
            if r.pop("__pending"):
                pending += 1
            else:
                calls_now[r["exchange_id"]].append(r)
    finally:
        con.unregister("__rw_ledger_ids")
    return current, calls_now, pending


def _check_findings(con: duckdb.DuckDBPyConnection, entries: list, problem) -> None:
    """Each `finding` entry against its row in findings now, then the findings no entry covers."""
    fin_entries = [(seq, f, p) for seq, kind, _ex, f, p in entries if kind == "finding"]
    rows = _dicts(con.execute(f"SELECT finding_id, rule_id, run_id, {digest_sql('findings', FINDING_COLUMNS)} "
                              "FROM findings"))
    by_id: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_id[r["finding_id"]].append(r)
    for seq, fid, p in fin_entries:
        now = by_id.get(fid, [])
        _check_row(problem, f"ledger entry {seq}: ", f"finding {fid}", "findings", now, p.get("findings") or {},
                   FINDING_COLUMNS, modified_as=f"finding {fid} ({now[0].get('rule_id')})" if len(now) == 1 else None)
    _check_uncovered_findings(con, rows, {f for _s, f, _p in fin_entries}, bool(entries), problem)


def _check_row(problem, where: str, subject: str, table: str, now: list[dict], expected: dict[str, str],
               columns: tuple[str, ...], modified_as: str | None = None) -> None:
    """One row an entry covers (an exchange, a finding) against the rows with its id now: deleted,
    duplicated (rows added) or modified (naming the columns)."""
    if not now:
        problem(f"{where}{subject} was deleted from {table}")
    elif len(now) > 1:
        problem(f"{where}{subject} now has {len(now)} rows in {table} (rows added)")
    else:
        changed = _changed(expected, column_digests(now[0]), columns)
        if changed:
            problem(f"{where}{modified_as or subject} was modified in {table}: {', '.join(changed)}")


def _part_changes(expected: dict[str, list], actual: dict[str, list],
                  columns: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """The keyed parts (tool calls, coverage rows) whose rows differ: (key, how, changed columns), how
    being 'modified' (one row each side), 'deleted' (fewer rows now), 'added' (more rows now) or
    'several' (as many rows, not the same)."""
    out = []
    for key in sorted(set(expected) | set(actual)):
        e, a = sorted(expected.get(key, []), key=canonical), actual.get(key, [])
        if e == a:
            continue
        if len(e) == len(a) == 1:
            out.append((key, "modified", ", ".join(_changed(e[0], a[0], columns)) or "columns"))
        else:
            out.append((key, "deleted" if len(a) < len(e) else "added" if len(a) > len(e) else "several", ""))
    return out


def _check_coverage(con: duckdb.DuckDBPyConnection, entries: list, problem) -> None:
    """finding_coverage: what the entries of each finding cover against the rows now; rows of runs that
    wrote v2 entries that no entry covers were added outside analyze."""
    if not _has_table(con, "finding_coverage"):
        return
    expected: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    first_seq: dict[str, int] = {}
    for seq, kind, _ex, fid, p in entries:
        if kind in ("finding", "finding_coverage") and "finding_coverage" in p:
            for key, lst in p["finding_coverage"].items():
                expected[fid][key].extend(lst)
            first_seq.setdefault(fid, seq)
    first_v2 = con.execute("SELECT min(ts) FROM ledger WHERE version = 2").fetchone()[0] if entries else None
    now: dict[str, list[dict]] = defaultdict(list)
    for r in _dicts(con.execute(
            f"SELECT finding_id, exchange_id, flow_uid, (SELECT min(r.ts) FROM analyzer_runs r WHERE r.run_id = c.run_id) "
            f"AS __run_ts, {digest_sql('finding_coverage', COVERAGE_COLUMNS)} FROM finding_coverage c")):
        if r["finding_id"] in expected or first_v2 is None or r["__run_ts"] is None or r["__run_ts"] >= first_v2:
            now[r["finding_id"]].append(r)
    for fid in sorted(set(expected) | set(now), key=lambda f: (first_seq.get(f, 1 << 62), str(f))):
        exp, act = expected.get(fid, {}), coverage_parts(now.get(fid, []))
        where = f"ledger entry {first_seq[fid]}: " if fid in first_seq else ""
        for key, how, changed in _part_changes(exp, act, COVERAGE_COLUMNS):
            what = {"modified": f"was modified in finding_coverage: {changed}",
                    "deleted": "was deleted from finding_coverage"}.get(how, "is not in the ledger: added outside analyze")
            problem(f"{where}coverage of {key} by finding {fid} {what}")


def _watermarks(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    row = con.execute("SELECT watermarks FROM analyzer_runs ORDER BY ts DESC, rowid DESC LIMIT 1").fetchone()
    try:
        return json.loads(row[0]) if row and row[0] else {}
    except ValueError:
        return {}


def _check_uncovered_findings(con: duckdb.DuckDBPyConnection, rows: list[dict], covered: set[str], any_v2: bool,
                              problem) -> None:
    """Findings no entry covers: from a run that wrote v2 entries (or from no recorded run at all) they were
    added outside `analyze`; for older runs, the count each run recorded is the check."""
    runs = {r: (ts, n) for r, ts, n in con.execute("SELECT run_id, ts, findings FROM analyzer_runs").fetchall()}
    first_v2 = con.execute("SELECT min(ts) FROM ledger WHERE version = 2").fetchone()[0] if any_v2 else None
    per_run: dict[str | None, int] = defaultdict(int)
    for r in rows:
        per_run[r.get("run_id")] += 1
        if r["finding_id"] in covered:
            continue
        run = runs.get(r.get("run_id"))
        if run is None or (first_v2 is not None and run[0] >= first_v2):
            problem(f"finding {r['finding_id']} ({r.get('rule_id')}) is not in the ledger: added outside analyze")
    for run_id, (ts, n) in runs.items():
        if (first_v2 is None or ts < first_v2) and n is not None and per_run.get(run_id, 0) != n:
            problem(f"run {run_id} recorded {n} finding(s); findings now holds {per_run.get(run_id, 0)} of that run")
