"""The analyzer run: new rows since the watermark -> enrichment -> rules -> findings, ledger, run row.

Incremental by watermark: every source table's DuckLake row ids grow with each commit, so a run
analyses `rowid > last watermark` (exposed to rules as `new_<table>` temp views) and records the
new watermarks in `analyzer_runs` in the same transaction as its output. Running twice therefore
adds nothing; a crash leaves the previous watermark in place. Findings carry a dedup key: a key
already present (within the rule's suppression window) is not raised again.

A run has two phases so that it holds the store's write lock briefly (every other writer, the live
collector included, waits while it does): a read phase without the lock (watermarks, the new rows
copied into temp tables, the Python enrichment of tool calls and exchanges computed), then one short
write transaction under the lock (enrichment rows inserted, flows classified, rules, findings,
ledger, the run row). The write phase checks that the watermark it started from is still the last
one (one analyzer at a time per store: `routerwatch analyze` waits for the analyzer service) and is
started over by `Store.write` after a transient conflict; the rows it reads are bounded by the read
phase's watermarks, so a retry writes exactly the same rows.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from analyzer import ledger
from analyzer.coverage import coverage_rows
from analyzer.enrich.baseline import update_baselines
from analyzer.enrich.exchanges import Classifier
from analyzer.enrich.pipeline import classify_flows, enrich_exchanges, enrich_tool_calls
from analyzer.rules import Rule
from collector.catalog import Catalog
from collector.store.connection import Store
from collector.store.schema import TABLES, conform
from collector.store.writer import insert_arrow

# Tables the analyzer writes; every other declared table is a source with a watermark.
ANALYZER_TABLES = frozenset({
    "findings", "routers", "flow_classes", "exchange_classes", "tool_call_indicators", "tool_call_hosts",
    "package_installs", "stream_anomalies", "ledger", "analyzer_runs", "finding_coverage", "router_baseline",
})
SOURCES = tuple(t for t in TABLES if t not in ANALYZER_TABLES)
# new_<table> copies the engine's own enrichment reads; rules may read any other source's new rows too
ALWAYS_COPIED = frozenset({"flows", "llm_exchanges", "tool_calls", "secrets_seen", "canaries"})
# A run with at most this many new source rows is a few dozen small queries, and DuckDB's worker
# threads then cost more than they give: each query hands its pipelines to the pool and waits for
# them, and on a busy 2-core host that wait is a scheduling delay (measured: one thread cuts a
# one-exchange run's rules by a third and its read phase by half). Bigger runs use every thread.
ONE_THREAD_ROWS = 50_000
SEVERITY_RANK = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
_STD = ("ts", "host_id", "dedup", "pid", "flow_uid", "exchange_id", "router", "evidence", "summary", "severity",
        "attack_class")


class AnalyzeError(Exception):
    """A rule failed or the store could not be analysed; the message names the rule."""


@dataclass
class RunResult:
    run_id: str
    new_rows: dict[str, int]
    findings: list[dict] = field(default_factory=list)
    suppressed: int = 0
    duration_s: float = 0.0
    ledger_seq: int = 0
    ledger_head: str = ledger.GENESIS
    timings: dict[str, float] = field(default_factory=dict)
    locked_s: float = 0.0  # how long the write phase held the store's write lock (other writers waited)
    preview: bool = False  # computed, then rolled back: nothing of this run is in the store


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def insert(con: duckdb.DuckDBPyConnection, table: str, rows: Iterable[dict] | pa.Table) -> int:
    """Append rows to one of the store's tables (inside the caller's transaction)."""
    t = conform(table, rows)
    if t.num_rows:
        insert_arrow(con, table, t)
    return t.num_rows


def last_watermarks(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    row = con.execute("SELECT watermarks FROM analyzer_runs ORDER BY ts DESC, rowid DESC LIMIT 1").fetchone()
    return json.loads(row[0]) if row and row[0] else {}


def current_watermarks(con: duckdb.DuckDBPyConnection, tables: set[str] | None = None,
                       previous: dict[str, int] | None = None) -> dict[str, int]:
    """The highest row id of each source table in `tables` (default: all), in one statement; the other
    sources keep their previous watermark (nothing reads them, so nothing of theirs is analysed)."""
    names = [t for t in SOURCES if tables is None or t in tables]
    out = {t: int((previous or {}).get(t, -1)) for t in SOURCES}
    if names:
        # `rowid > previous` lets DuckLake skip the files a previous run already covered
        row = con.execute("SELECT " + ", ".join(f"(SELECT max(rowid) FROM {t} WHERE rowid > {out[t]})" for t in names)).fetchone()
        out.update({t: int(v) for t, v in zip(names, row, strict=True) if v is not None})
    return out


def relevant_sources(rules: list[Rule]) -> set[str]:
    """Source tables the enrichment or any rule reads."""
    out = set(ALWAYS_COPIED) | {"processes", "dns"}
    for r in rules:
        words = set(re.findall(r"\b[a-z0-9_]+\b", rule_text(r)))
        out |= {t for t in SOURCES if t in words or f"new_{t}" in words}
    return out


def prepare_context(con: duckdb.DuckDBPyConnection, catalog: Catalog, lo: dict[str, int], hi: dict[str, int],
                    wanted: set[str] | None = None) -> dict[str, int]:
    """The temp tables rules may use (`new_<table>`: rows since the watermark; the catalog as
    `cat_*`) and macros (`rw_allowed`, ...). Returns the number of new rows per table (for tables no
    rule reads as `new_<table>`, the row-id span: enough to know whether anything changed)."""
    counts: dict[str, int] = {}
    copy = ALWAYS_COPIED | (wanted or set())
    # a previous run in this connection may have made the other kind of object (duckdb_views() is
    # cheap; information_schema would enumerate the lake)
    views = {r[0] for r in con.execute(
        "SELECT view_name FROM duckdb_views() WHERE database_name = 'temp' AND view_name LIKE 'new\\_%' ESCAPE '\\'"
    ).fetchall()}
    for t in SOURCES:
        if f"new_{t}" in views:
            con.execute(f"DROP VIEW temp.new_{t}")
        a, b = lo.get(t, -1), hi[t]
        if b > a and t in copy:  # one scan of the lake per table; rules then read the copy
            con.execute(f"CREATE OR REPLACE TEMP TABLE new_{t} AS SELECT * FROM {t} WHERE rowid > {int(a)} AND rowid <= {int(b)}")
            counts[t] = con.execute(f"SELECT count(*) FROM new_{t}").fetchone()[0]
        elif b > a:
            con.execute(f"DROP TABLE IF EXISTS temp.new_{t}")
            con.execute(f"CREATE TEMP VIEW new_{t} AS SELECT * FROM {t} WHERE rowid > {int(a)} AND rowid <= {int(b)}")
            counts[t] = b - a
        else:
            body = ", ".join(f'"{c}" {ty}' for c, ty in TABLES[t])
            con.execute(f"CREATE OR REPLACE TEMP TABLE new_{t} ({body})")
            counts[t] = 0
    host_rows = catalog.host_rows()

    def table(name: str, cols: dict[str, pa.DataType], rows: list[dict]) -> None:
        t = pa.Table.from_pylist(rows, schema=pa.schema(list(cols.items())))
        con.register(f"__rw_{name}", t)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM __rw_{name}")
        con.unregister(f"__rw_{name}")

    s, i = pa.string(), pa.int32()
    table("cat_hosts", {"name": s, "kind": s, "host_pattern": s, "port": i, "provider": s, "priority": i},
          [r for r in host_rows if r["host_pattern"]])
    table("cat_allowlist", {"pattern": s, "port": i}, [{"pattern": h, "port": p} for h, p in catalog.allowlist_entries()])
    table("cat_credential_hosts", {"kind": s, "pattern": s}, catalog.credential_rows())
    table("cat_router_key_kinds", {"kind": s}, [{"kind": k} for k in catalog.data.get("router_key_kinds") or []])
    table("cat_agents", {"name": s}, [{"name": a} for a in catalog.data.get("agents") or []])
    table("cat_settings", {"name": s, "value": pa.float64()},
          [{"name": k, "value": float(v)} for k, v in (catalog.data.get("settings") or {}).items()
           if isinstance(v, (int, float))])
    loop = "TRUE" if catalog.allow_loopback() else "FALSE"
    con.execute("CREATE OR REPLACE TEMP MACRO rw_setting(n) AS (SELECT any_value(value) FROM cat_settings WHERE name = n)")
    con.execute(
        "CREATE OR REPLACE TEMP MACRO rw_is_loopback(h) AS "
        "(lower(h) = 'localhost' OR lower(h) LIKE '%.localhost' OR h LIKE '127.%' OR h = '::1' OR h = '[::1]')"
    )
    # allowlisted: loopback (unless switched off), the allowlist, and every provider/router endpoint;
    # an entry with a port matches only that port
    con.execute(
        "CREATE OR REPLACE TEMP MACRO rw_allowed(h, p) AS ("
        f"({loop} AND rw_is_loopback(h)) "
        "OR EXISTS (SELECT 1 FROM cat_allowlist a WHERE lower(h) GLOB a.pattern AND (a.port IS NULL OR a.port = p)) "
        "OR EXISTS (SELECT 1 FROM cat_hosts c WHERE lower(h) GLOB c.host_pattern AND (c.port IS NULL OR c.port = p)))"
    )
    con.execute("CREATE OR REPLACE TEMP MACRO rw_allowlisted(h) AS rw_allowed(h, NULL)")
    con.execute(
        "CREATE OR REPLACE TEMP MACRO rw_credential_ok(k, h) AS "
        "EXISTS (SELECT 1 FROM cat_credential_hosts c WHERE c.kind = k AND lower(h) GLOB c.pattern)"
    )
    con.execute(
        "CREATE OR REPLACE TEMP MACRO rw_provider_kind(k) AS EXISTS (SELECT 1 FROM cat_credential_hosts c WHERE c.kind = k)"
    )
    return counts


def rule_new_tables(rule: Rule) -> set[str]:
    """The source tables a rule reads as `new_<table>`."""
    return {m for m in re.findall(r"\bnew_([a-z0-9_]+)\b", rule_text(rule)) if m in SOURCES}


def rule_sources(rule: Rule) -> set[str]:
    """The tables whose new rows can make a rule find something: the `new_<table>` it reads, or, for
    a rule that reads no `new_*`, every source table it names. None of them new: the rule is skipped."""
    new = rule_new_tables(rule)
    if new:  # the author named the new rows that drive the rule
        return new
    words = set(re.findall(r"\b[a-z0-9_]+\b", rule_text(rule)))
    return {t for t in SOURCES if t in words}


def exchange_context(con: duckdb.DuckDBPyConnection, new_rows: dict[str, int]) -> None:
    """`run_llm_exchanges` / `run_exchange_classes`: the rows of the exchanges this run's new rows refer
    to, read from the lake once instead of once per rule."""
    ids = ["SELECT exchange_id FROM new_llm_exchanges", "SELECT exchange_id FROM new_tool_calls",
           "SELECT exchange_id FROM new_secrets_seen"]
    if new_rows.get("canaries"):
        ids.append("SELECT exchange_id FROM secrets_seen WHERE fingerprint IN (SELECT fingerprint FROM new_canaries)")
    if not any(new_rows.get(t) for t in ("llm_exchanges", "tool_calls", "secrets_seen", "canaries")):
        for t in ("llm_exchanges", "exchange_classes"):
            body = ", ".join(f'"{c}" {ty}' for c, ty in TABLES[t])
            con.execute(f"CREATE OR REPLACE TEMP TABLE run_{t} ({body})")
        return
    con.execute("CREATE OR REPLACE TEMP TABLE _rw_ids AS SELECT DISTINCT exchange_id FROM (" + " UNION ALL ".join(ids) + ")")
    for t in ("llm_exchanges", "exchange_classes"):
        con.execute(f"CREATE OR REPLACE TEMP TABLE run_{t} AS SELECT * FROM {t} "
                    "WHERE exchange_id IN (SELECT exchange_id FROM _rw_ids)")


# Views the engine defines for every rule, once per run after the `run_*` tables they read; a join
# several rules share has one home here instead of a copy in each rule file. Their SQL counts as
# part of a rule that names them when the engine decides which new rows the rule reads.
RULE_VIEWS: dict[str, str] = {
    # One row per indicator of a new tool call in a response, beside its exchange and class: the
    # AC-1 tool-call rules group it per tool call. `ts`/`host_id` come from the call, else its
    # exchange. The rules group on the raw `call_*`/`exchange_*` columns (a duplicated exchange row
    # stays a row of its own, as before the view) and take `ts`, `host_id` and `dedup`, functions of
    # those, with any_value().
    "rw_response_indicators": """
        SELECT coalesce(t.ts, e.ts) AS ts, coalesce(t.host_id, e.host_id) AS host_id, e.pid, e.flow_uid,
               t.exchange_id, ec.router, t.exchange_id || ':' || t.idx AS dedup,
               t.idx, t.name AS tool, ec.class, e.host AS exchange_host,
               t.ts AS call_ts, e.ts AS exchange_ts, t.host_id AS call_host_id, e.host_id AS exchange_host_id,
               i.kind, i.detail, i.host, i.context, i.execution
        FROM new_tool_calls t
        JOIN tool_call_indicators i
          ON i.exchange_id = t.exchange_id AND i.idx = t.idx AND i.direction = coalesce(t.direction, 'response')
        LEFT JOIN run_llm_exchanges e ON e.exchange_id = t.exchange_id
        LEFT JOIN run_exchange_classes ec ON ec.exchange_id = t.exchange_id
        WHERE coalesce(t.direction, 'response') = 'response'""",
    # The agent processes of the whole store: a process that made an LLM exchange, or whose name
    # (comm, else the executable's base name) is a catalog agent.
    "rw_agent_processes": """
        SELECT DISTINCT host_id, pid FROM llm_exchanges WHERE pid IS NOT NULL
        UNION
        SELECT DISTINCT host_id, pid FROM processes
        WHERE lower(coalesce(comm, regexp_extract(exe, '[^/]+$'))) IN (SELECT name FROM cat_agents)""",
}


def define_rule_views(con: duckdb.DuckDBPyConnection) -> None:
    """The `RULE_VIEWS` as temp views (after `prepare_context` and `exchange_context`: they read both)."""
    for name, sql in RULE_VIEWS.items():
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql}")


def rule_text(rule: Rule) -> str:
    """A rule's SQL with the SQL of every engine view it names: what it really reads."""
    words = set(re.findall(r"\b[a-z0-9_]+\b", rule.sql))
    return "\n".join([rule.sql, *(sql for name, sql in RULE_VIEWS.items() if name in words)])


def sync_routers(con: duckdb.DuckDBPyConnection, catalog: Catalog, now: dt.datetime) -> None:
    """Keep the catalog rows of `routers` equal to the loaded catalog (replaced when it changes)."""
    have = con.execute(
        "SELECT any_value(catalog_digest) FROM routers WHERE source IN ('builtin', 'user')"
    ).fetchone()[0]
    if have == catalog.digest:
        return
    con.execute("DELETE FROM routers WHERE source IN ('builtin', 'user')")
    rows = [{**{k: v for k, v in r.items() if k != "priority"}, "ts": now, "catalog_digest": catalog.digest}
            for r in catalog.host_rows()]
    insert(con, "routers", rows)


def observe_routers(con: duckdb.DuckDBPyConnection) -> None:
    """Suspected routers seen for the first time become `routers` rows (source 'observed')."""
    con.execute(
        """
        INSERT INTO routers BY NAME
        SELECT min(ec.ts) AS ts, arg_min(ec.host_id, ec.ts) AS host_id, ec.router AS name, 'suspected' AS kind,
               any_value(ec.dest) AS host_pattern, any_value(ec.dst_port) AS port,
               any_value(ec.software)[1] AS software, 'observed' AS source
        FROM exchange_classes ec
        WHERE ec.class = 'suspected_router' AND ec.exchange_id IN (SELECT exchange_id FROM new_llm_exchanges)
          AND ec.router NOT IN (SELECT name FROM routers WHERE source = 'observed')
        GROUP BY ec.router
        """
    )


def run_rule(con: duckdb.DuckDBPyConnection, rule: Rule) -> list[dict]:
    try:
        cur = con.execute(rule.sql)
    except duckdb.Error as exc:
        raise AnalyzeError(f"rule {rule.id} ({rule.path}): {str(exc).strip().splitlines()[0]}") from None
    cols = [d[0] for d in cur.description]
    missing = {"ts", "host_id", "dedup"} - set(cols)
    if missing:
        raise AnalyzeError(f"rule {rule.id} ({rule.path}): output lacks column(s) {', '.join(sorted(missing))}")
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _json(v: Any) -> Any:
    if v is None:
        return {}
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return {"value": v}
    return v


def to_findings(rule: Rule, rows: list[dict], existing: dict[str, dt.datetime], run_id: str) -> tuple[list[dict], int]:
    """Candidate rows -> findings, dropping dedup keys already raised (within the suppression window)."""
    out: list[dict] = []
    suppressed = 0
    last = dict(existing)
    for r in sorted(rows, key=lambda r: (r["ts"] or dt.datetime.min, str(r["dedup"]))):
        key = f"{rule.id}:{r['dedup']}"
        prev = last.get(key)
        ts = r["ts"]
        if prev is not None and (rule.suppress_s is None or ts is None or prev is None
                                 or abs((ts - prev).total_seconds()) < rule.suppress_s):
            suppressed += 1
            continue
        last[key] = ts
        evidence = _json(r.get("evidence"))
        if isinstance(evidence, dict):
            for k in ("exchange_id", "flow_uid", "pid"):
                if r.get(k) is not None:
                    evidence.setdefault(k, r[k])
            extra = {k: v for k, v in r.items() if k not in _STD}
            for k, v in extra.items():
                evidence.setdefault(k, v)
        fid = hashlib.sha256(f"{key}|{ts}".encode()).hexdigest()[:20]
        out.append(
            {
                "finding_id": fid, "ts": ts, "rule_id": rule.id, "rule_rev": rule.rev,
                "severity": r.get("severity") or rule.severity, "attack_class": r.get("attack_class") or rule.attack_class,
                "title": rule.title, "host_id": r.get("host_id"), "pid": r.get("pid"), "flow_uid": r.get("flow_uid"),
                "exchange_id": r.get("exchange_id"), "evidence": json.dumps(evidence, default=str, sort_keys=True),
                "dedup_key": key, "router": r.get("router"), "summary": r.get("summary"), "run_id": run_id,
            }
        )
    return out, suppressed


class WatermarkMoved(Exception):
    """Another analyzer committed a run between this run's read and write phases."""


class _Preview(Exception):  # noqa: N818 - not an error: carries a preview run's results out of its rolled-back transaction
    def __init__(self, results: tuple[list[dict], int, int, str]):
        super().__init__("preview")
        self.results = results


@dataclass
class _Read:
    """What the read phase produced for the write phase."""

    lo: dict[str, int]
    hi: dict[str, int]
    new_rows: dict[str, int]
    staged: dict[str, list] = field(default_factory=dict)  # enrichment rows to insert: table -> row batches
    suspected: set = field(default_factory=set)
    ex_routers: dict[str, str | None] = field(default_factory=dict)
    suspicious: dict[tuple[str, int], int] = field(default_factory=dict)  # tool call -> execution signals
    kinds: dict[str, set[str]] = field(default_factory=dict)  # exchange -> indicator kinds (the baseline's)

    def stage(self, table: str, rows: Any) -> int:
        t = conform(table, rows)
        if t.num_rows:
            self.staged.setdefault(table, []).append(t)
        return t.num_rows


@contextlib.contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN, the body, COMMIT on a bare connection (a read phase, or a rule fixture's in-memory
    DuckDB: no store lock, unlike `Store.transaction`); ROLLBACK on any error."""
    con.execute("BEGIN")
    try:
        yield con
        con.execute("COMMIT")
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass  # a failed COMMIT has already ended the transaction
        raise


def _read_phase(con: duckdb.DuckDBPyConnection, catalog: Catalog, rules: list[Rule], full: bool,
                classifier: Classifier, skip_if_nothing_new: bool, threads: int) -> _Read | None:
    """Watermarks, `new_<table>` copies and the Python enrichment, in one read transaction (no lock).
    None when `skip_if_nothing_new` and no table a rule or the enrichment reads has new rows. Sizes
    DuckDB's threads for the run (`ONE_THREAD_ROWS`; `threads` is the connection's own count)."""
    con.execute("SET threads = 1")  # the watermark queries are small
    with _transaction(con):  # a read transaction: nothing of the lake changes (the temp tables stay)
        lo = {} if full else last_watermarks(con)
        relevant = relevant_sources(rules)
        hi = current_watermarks(con, relevant, lo)
        if skip_if_nothing_new and lo and all(hi[t] <= int(lo.get(t, -1)) for t in relevant):
            read = None
        else:
            if sum(max(0, hi[t] - int(lo.get(t, -1))) for t in relevant) > ONE_THREAD_ROWS:
                con.execute(f"SET threads = {int(threads)}")
            wanted = set().union(*(rule_new_tables(r) for r in rules)) if rules else set()
            read = _Read(lo, hi, prepare_context(con, catalog, lo, hi, wanted))
            if read.new_rows["tool_calls"]:
                read.suspicious = enrich_tool_calls(con, catalog, read.stage, read.kinds)
            if read.new_rows["llm_exchanges"]:
                read.suspected, read.ex_routers = enrich_exchanges(con, catalog, classifier, read.stage,
                                                                   read.suspicious)
    return read


def _write_phase(con: duckdb.DuckDBPyConnection, read: _Read, catalog: Catalog, rules: list[Rule],
                 classifier: Classifier, run_id: str, now: dt.datetime, full: bool,
                 mark: Any) -> tuple[list[dict], int, int, str]:
    """Everything that writes, inside the caller's transaction. Returns (findings, suppressed, seq, head)."""
    t = mark("lock_wait", None)
    if not full and last_watermarks(con) != read.lo:
        raise WatermarkMoved
    new_rows, lo = read.new_rows, read.lo
    sync_routers(con, catalog, now)
    for table, batches in read.staged.items():
        insert(con, table, pa.concat_tables(batches))
    if new_rows["llm_exchanges"]:
        observe_routers(con)
    t = mark("insert_enrichment", t)
    if new_rows["flows"] or read.suspected:
        classify_flows(con, classifier, read.suspected, first_run=lo.get("flows", -1) < 0)
    t = mark("classify_flows", t)
    exchange_context(con, new_rows)
    define_rule_views(con)
    t = mark("exchange_context", t)
    if new_rows["llm_exchanges"] or new_rows["tool_calls"]:
        update_baselines(con, run_id, now, lambda table, rows: insert(con, table, rows), read.suspicious, read.kinds)
    t = mark("baseline", t)
    findings: list[dict] = []
    suppressed = 0
    candidates: list[tuple[Rule, list[dict]]] = []
    for rule in rules:
        srcs = rule_sources(rule)
        if srcs and not any(new_rows[s] for s in srcs):
            continue
        rows = run_rule(con, rule)
        if rows:
            candidates.append((rule, rows))
        t = mark(f"rule:{rule.id}", t)
    # one look-up of the dedup keys already raised, for every rule's candidates at once
    keys = sorted({f"{rule.id}:{r['dedup']}" for rule, rows in candidates for r in rows})
    existing: dict[str, dt.datetime] = {}
    if keys:
        con.register("__rw_keys", pa.table({"dedup_key": pa.array(keys, pa.string())}))
        try:
            existing = dict(con.execute(
                "SELECT f.dedup_key, max(f.ts) FROM findings f JOIN __rw_keys k USING (dedup_key) GROUP BY 1"
            ).fetchall())
        finally:
            con.unregister("__rw_keys")
    for rule, rows in candidates:
        f, s = to_findings(rule, rows, existing, run_id)
        findings += f
        suppressed += s
    t = mark("dedup", t)
    insert(con, "findings", findings)
    insert(con, "finding_coverage", coverage_rows(con, candidates, findings, run_id))
    if new_rows["llm_exchanges"] or new_rows["tool_calls"] or findings:  # exchanges, late tool calls, findings
        entries, seq, head = ledger.append(con, now, read.ex_routers, run_id)
        insert(con, "ledger", entries)
    else:
        seq, head = ledger.head(con)
    mark("ledger", t)
    return findings, suppressed, seq, head


@contextlib.contextmanager
def _own_threads(con: duckdb.DuckDBPyConnection) -> Iterator[int]:
    """The connection's DuckDB thread count, set again after a run that sized it (`ONE_THREAD_ROWS`)."""
    threads = int(con.execute("SELECT current_setting('threads')").fetchone()[0])
    try:
        yield threads
    finally:
        con.execute(f"SET threads = {threads}")


def analyze(target: Store | duckdb.DuckDBPyConnection, catalog: Catalog, rules: list[Rule], *, full: bool = False,
            skip_if_nothing_new: bool = False, preview: bool = False) -> RunResult | None:
    """One analyze run (see module docstring). `target` is the store (its write lock and retries are
    used), or a bare DuckDB connection with the store's tables (rule fixtures: no lock, no retry).
    `full` ignores the watermark (enrichment and ledger still skip nothing twice because they key on
    the new rows only: use it on a fresh store or after deleting the analyzer's tables). With
    `skip_if_nothing_new` (the continuous analyzer) a run that would find no new rows writes nothing
    and returns None. A `preview` run (a subset of the rules: `analyze --rule`) computes everything as
    a run would and rolls it back: had it committed, its watermarks would hide the rows it read from
    every rule it did not run."""
    store = target if isinstance(target, Store) else None
    con = store.con if store is not None else target
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    clock = {"t": t0}

    def mark(name: str, start: float | None) -> float:
        now_ = time.perf_counter()
        timings[name] = round(now_ - (clock["t"] if start is None else start), 4)
        clock["t"] = now_
        return now_

    classifier = Classifier(catalog)
    with _own_threads(con) as threads:
        for _attempt in range(5):
            run_id = uuid.uuid4().hex[:16]
            now = _now()
            if store is not None:  # a busy catalog while reading: read again
                read = store.retry(lambda _t: _read_phase(con, catalog, rules, full, classifier, skip_if_nothing_new,
                                                          threads), what="an analyze run's read")
            else:
                read = _read_phase(con, catalog, rules, full, classifier, skip_if_nothing_new, threads)
            mark("read", t0)
            if read is None:
                return None

            def body(c: duckdb.DuckDBPyConnection, read: _Read = read, run_id: str = run_id,
                     now: dt.datetime = now) -> tuple[list[dict], int, int, str]:
                clock["locked"] = time.perf_counter()
                findings, suppressed, seq, head = _write_phase(c, read, catalog, rules, classifier, run_id, now, full, mark)
                insert(c, "analyzer_runs", [{
                    "ts": now, "host_id": None, "run_id": run_id, "watermarks": json.dumps(read.hi),
                    "new_rows": json.dumps(read.new_rows), "findings": len(findings), "suppressed": suppressed,
                    "duration_s": time.perf_counter() - t0, "ledger_seq": seq, "ledger_head": head,
                    "rules": json.dumps({r.id: r.rev for r in rules}),
                }])
                clock["t"] = time.perf_counter()
                if preview:
                    raise _Preview((findings, suppressed, seq, head))
                return findings, suppressed, seq, head

            clock["t"] = time.perf_counter()
            try:
                if store is not None:
                    findings, suppressed, seq, head = store.write(body, what="an analyze run")
                else:
                    with _transaction(con):
                        findings, suppressed, seq, head = body(con)
            except WatermarkMoved:
                continue  # another analyzer's run came first: read again from its watermark
            except _Preview as p:
                findings, suppressed, seq, head = p.results
            mark("commit", None)
            return RunResult(run_id, read.new_rows, findings, suppressed, time.perf_counter() - t0, seq, head, timings,
                             locked_s=time.perf_counter() - clock["locked"], preview=preview)
        raise AnalyzeError("other analyzer runs kept committing first; try again")


def memory_connection() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the store's declared tables (rule fixtures, `routerwatch rules test`)."""
    con = duckdb.connect(":memory:")
    for table, cols in TABLES.items():
        body = ", ".join(f'"{c}" {t}' for c, t in cols)
        con.execute(f"CREATE TABLE {table} ({body})")
    return con
