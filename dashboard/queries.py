"""Every query the dashboard runs, as plain functions over a read-only `Reader` (no Streamlit here).

Pages call these through `dashboard.ui.cached(...)`; `bench/dashboard.py` calls them directly, so
the bench measures exactly what a page runs. The store is opened read-only (DuckLake lets readers
attach while the collector writes); each query gets its own cursor, so Streamlit's session threads
never share one, and every query sees the latest committed snapshot. Only columns declared in
`collector/store/schema.py` are used; tables other components add later (`routers`, ...) are used
when present and skipped when not.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass

import duckdb
import pandas as pd

from collector.store import Store
from dashboard.rollup import FIRST, ROLLUP, FlowRollup

# Until the analyzer's `routers` table is present, providers are recognised by these domains;
# an LLM-API-shaped host that is neither a provider nor a named router is a suspected router.
PROVIDER_SUFFIXES = (
    "openai.com", "anthropic.com", "googleapis.com", "openai.azure.com", "amazonaws.com",
    "mistral.ai", "deepseek.com", "x.ai", "groq.com", "cohere.com", "cohere.ai", "together.xyz",
)
# A returned model "differs" when it is not the requested one once a vendor prefix ("openai/") and a
# version/date suffix ("-2024-08-06", "-20250219", "-latest") are removed: gpt-4o -> gpt-4o-mini differs.
_MODEL_RE = r"^[a-z0-9_.-]+/|(-\d{4}-\d{2}-\d{2}|-\d{8}|-latest)$"


def model_key(model: str | None) -> str:
    import re

    return re.sub(_MODEL_RE, "", str(model or "").lower())


def _model_sql(col: str) -> str:
    return f"regexp_replace(lower({col}), '{_MODEL_RE}', '', 'g')"


MODEL_DIFFERS = (f"(model_returned <> model_requested AND "  # cheap test first: regexps run on the rest only
                 f"{_model_sql('model_returned')} <> {_model_sql('model_requested')})")
_RETRYABLE = (duckdb.IOException, duckdb.InternalException, duckdb.ConnectionException,
              duckdb.TransactionException)


@dataclass(frozen=True)
class Window:
    """The time range and hosts a page looks at (hashable: it keys the cache)."""

    start: dt.datetime | None = None
    end: dt.datetime | None = None
    hosts: tuple[str, ...] = ()

    @classmethod
    def last(cls, hours: float | None, hosts: tuple[str, ...] = ()) -> Window:
        if hours is None:
            return cls(None, None, hosts)
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        # round to the minute so cached results are shared between reruns
        end = now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        return cls(end - dt.timedelta(hours=hours), end, hosts)

    def where(self, ts: str = "ts", host: str = "host_id") -> tuple[str, list]:
        """A WHERE fragment (always valid after WHERE) and its parameters."""
        parts, params = ["TRUE"], []
        if self.start is not None:
            parts.append(f"{ts} >= ?")
            params.append(self.start)
        if self.end is not None:
            parts.append(f"{ts} < ?")
            params.append(self.end)
        if self.hosts:
            parts.append(f"{host} IN ({', '.join('?' for _ in self.hosts)})")
            params.extend(self.hosts)
        return " AND ".join(parts), params

    def bucket(self) -> str:
        """A time-bucket width that gives a readable number of bars."""
        if self.start is None or self.end is None:
            return "1 day"
        hours = (self.end - self.start).total_seconds() / 3600
        return "5 minutes" if hours <= 6 else "1 hour" if hours <= 72 else "1 day"


class Reader:
    """A read-only store connection shared by threads: a cursor per query, reconnect on failure."""

    def __init__(self, spec: str | None):
        self.spec = spec
        self._store: Store | None = None
        self._lock = threading.Lock()
        self._columns: tuple[float, dict[str, set[str]]] | None = None
        self._rollup: FlowRollup | None = None

    def store(self) -> Store:
        with self._lock:
            if self._store is None:
                store = Store.open(self.spec, read_only=True)
                # The pages' own queries only; what a person types runs in analyzer/sandbox.py on a
                # connection of its own. Still closed here too: no file access beyond the data path.
                if store.location.root is not None:
                    store.con.execute("SET allowed_directories = [?]", [store.location.data_path])
                    store.con.execute("SET enable_external_access = false")
                    store.con.execute("SET lock_configuration = true")
                self._store = store
            return self._store

    def reconnect(self) -> None:
        with self._lock:
            if self._store is not None:
                try:
                    self._store.close()
                except duckdb.Error:
                    pass
            self._store = None
            self._columns = None
            self._rollup = None

    def cursor(self) -> duckdb.DuckDBPyConnection:
        cur = self.store().con.cursor()
        cur.execute("USE lake")
        return cur

    def rollup(self) -> FlowRollup:
        """The per-minute flow aggregates, brought up to the latest snapshot (see rollup.py)."""
        roll = self._rollup
        if roll is None:
            roll = self._rollup = FlowRollup(self.cursor)
        for attempt in range(2):
            try:
                roll.refresh()
                return roll
            except _RETRYABLE:
                if attempt:
                    raise
                self.reconnect()
                roll = self._rollup = FlowRollup(self.cursor)
        return roll

    def df(self, sql: str, params: list | None = None) -> pd.DataFrame:
        """Run one query; a broken connection (catalog swapped, file vanished) is reopened once."""
        for attempt in range(2):
            cur = self.cursor()
            try:
                return cur.execute(sql, params or []).df()
            except _RETRYABLE:
                if attempt:
                    raise
                self.reconnect()
            finally:
                cur.close()
        raise AssertionError("unreachable")

    def scalar(self, sql: str, params: list | None = None):
        frame = self.df(sql, params)
        return None if frame.empty else frame.iat[0, 0]

    def columns(self) -> dict[str, set[str]]:
        """Tables and their columns (refreshed every 30 s: other components add tables)."""
        now = time.monotonic()
        if self._columns is None or now - self._columns[0] > 30:
            rows = self.df("SELECT table_name, column_name FROM information_schema.columns "
                           "WHERE table_catalog = 'lake'")
            cols: dict[str, set[str]] = {}
            for t, c in rows.itertuples(index=False):
                cols.setdefault(t, set()).add(c)
            self._columns = (now, cols)
        return self._columns[1]

    def has(self, table: str, *cols: str) -> bool:
        have = self.columns().get(table)
        return have is not None and all(c in have for c in cols)

    def close(self) -> None:
        self.reconnect()


# -- shared pieces -------------------------------------------------------------------------------------
def _provider_case(col: str) -> str:
    conds = " OR ".join(f"{col} = '{s}' OR {col} LIKE '%.{s}'" for s in PROVIDER_SUFFIXES)
    return f"({conds})"


def dest_classes(r: Reader) -> str:
    """SQL for (name, class, router) of every LLM endpoint: 'provider', 'router' or 'suspected_router'.

    The analyzer's `exchange_classes` win where present; exchanges it has not classified (or a store
    never analyzed) fall back to: a named router, a provider domain, else a suspected router.
    """
    fallback = (
        "SELECT host AS name, CASE WHEN bool_or(router IS NOT NULL) THEN 'router' "
        f"WHEN {_provider_case('host')} THEN 'provider' ELSE 'suspected_router' END AS class, "
        "any_value(router) AS router FROM llm_exchanges WHERE host IS NOT NULL GROUP BY host"
    )
    if not r.has("exchange_classes", "dest", "class", "router", "ts"):
        return fallback
    return (
        "SELECT * FROM (SELECT dest AS name, arg_max(class, ts) AS class, arg_max(router, ts) AS router "
        "FROM exchange_classes WHERE dest IS NOT NULL GROUP BY dest) UNION ALL "
        f"SELECT * FROM ({fallback}) WHERE name NOT IN (SELECT dest FROM exchange_classes WHERE dest IS NOT NULL)"
    )


# -- Overview --------------------------------------------------------------------------------------------
def overview_kpis(r: Reader, w: Window) -> dict[str, int]:
    r.rollup()
    fw, fp = w.where("minute")
    ew, ep = w.where()
    row = r.df(
        f"SELECT (SELECT coalesce(sum(flows), 0) FROM {ROLLUP} WHERE {fw}) AS flows, "
        f"(SELECT count(*) FROM llm_exchanges WHERE {ew}) AS exchanges, "
        f"(SELECT count(*) FROM findings WHERE {ew}) AS findings, "
        f"(SELECT count(*) FROM findings WHERE {ew} AND severity IN ('high', 'critical')) AS serious",
        fp + ep * 3,
    ).iloc[0]
    return {k: int(row[k]) for k in row.index}


def overview_hosts(r: Reader, w: Window) -> pd.DataFrame:
    """Hosts seen in the window with their activity (collector_stats is small, flows is not)."""
    r.rollup()
    fw, fp = w.where("minute")
    ew, ep = w.where()
    return r.df(
        f"WITH f AS (SELECT host_id, sum(flows) AS flows, sum(bytes_out) AS bytes_out, max(last_start) AS last_flow "
        f"FROM {ROLLUP} WHERE {fw} GROUP BY host_id), "
        f"e AS (SELECT host_id, count(*) AS exchanges FROM llm_exchanges WHERE {ew} GROUP BY host_id), "
        f"x AS (SELECT host_id, count(*) AS findings FROM findings WHERE {ew} GROUP BY host_id), "
        f"s AS (SELECT host_id, max(ts) AS last_report, sum(lost) AS lost FROM collector_stats WHERE {ew} GROUP BY host_id) "
        "SELECT coalesce(f.host_id, e.host_id, s.host_id) AS host_id, coalesce(flows, 0) AS flows, "
        "coalesce(exchanges, 0) AS exchanges, coalesce(findings, 0) AS findings, bytes_out, last_flow, "
        "last_report, coalesce(lost, 0) AS lost_events "
        "FROM f FULL JOIN e USING (host_id) FULL JOIN s USING (host_id) LEFT JOIN x USING (host_id) "
        "ORDER BY flows DESC",
        fp + ep * 3,
    )


def overview_timeseries(r: Reader, w: Window) -> pd.DataFrame:
    """Flows, exchanges and findings per time bucket (long format: bucket, series, n)."""
    r.rollup()
    fw, fp = w.where("minute")
    ew, ep = w.where()
    b = w.bucket()
    return r.df(
        f"SELECT time_bucket(INTERVAL '{b}', minute) AS bucket, 'flows' AS series, sum(flows) AS n "
        f"FROM {ROLLUP} WHERE {fw} GROUP BY ALL UNION ALL "
        f"SELECT time_bucket(INTERVAL '{b}', ts), 'exchanges', count(*) FROM llm_exchanges WHERE {ew} GROUP BY ALL "
        f"UNION ALL SELECT time_bucket(INTERVAL '{b}', ts), 'findings', count(*) FROM findings WHERE {ew} GROUP BY ALL "
        "ORDER BY bucket",
        fp + ep + ep,
    )


def top_destinations(r: Reader, w: Window, limit: int = 15) -> pd.DataFrame:
    r.rollup()
    fw, fp = w.where("minute")
    return r.df(
        f"WITH d AS (SELECT destination, sum(flows) AS flows, "
        f"sum(bytes_out) AS bytes_out, sum(bytes_in) AS bytes_in, count(DISTINCT host_id) AS hosts "
        f"FROM {ROLLUP} WHERE {fw} GROUP BY 1 ORDER BY flows DESC LIMIT {int(limit)}) "
        f"SELECT d.*, coalesce(c.class, 'other') AS class FROM d LEFT JOIN ({dest_classes(r)}) c "
        "ON c.name = d.destination ORDER BY flows DESC",
        fp,
    )


def collector_health(r: Reader, w: Window) -> dict[str, pd.DataFrame]:
    """Totals per host and every interval that lost something (a missed event is never silent)."""
    ew, ep = w.where()
    totals = r.df(
        f"SELECT host_id, sum(events) AS events, sum(lost) AS lost, sum(capture_drops) AS capture_drops, "
        f"arg_max(decrypt_backlog, ts) AS decrypt_backlog, max(ts) AS last_report, arg_max(mode, ts) AS mode, "
        f"arg_max(rss_bytes, ts) AS rss_bytes FROM collector_stats WHERE {ew} GROUP BY host_id ORDER BY host_id",
        ep,
    )
    losses = r.df(
        f"SELECT ts, host_id, lost, capture_drops, decrypt_backlog, detail FROM collector_stats "
        f"WHERE {ew} AND (lost > 0 OR capture_drops > 0) ORDER BY ts DESC LIMIT 200",
        ep,
    )
    return {"totals": totals, "losses": losses}


def known_hosts(r: Reader) -> list[str]:
    """Host ids for the sidebar filter (from the small tables; flows can be huge)."""
    frame = r.df("SELECT DISTINCT host_id FROM collector_stats WHERE host_id IS NOT NULL UNION "
                 "SELECT DISTINCT host_id FROM processes WHERE host_id IS NOT NULL UNION "
                 "SELECT DISTINCT host_id FROM llm_exchanges WHERE host_id IS NOT NULL ORDER BY 1")
    return [str(h) for h in frame["host_id"]]


def newest_data(r: Reader, hosts: tuple[str, ...] = ()) -> dt.datetime | None:
    """The newest timestamp of the store's flows, exchanges and findings (for the given hosts): where
    the data is, so a page can open on it (flows from the rollup: never a scan of the flows table)."""
    r.rollup()
    where = f"WHERE host_id IN ({', '.join('?' for _ in hosts)})" if hosts else ""
    frame = r.df(f"SELECT max(t) FROM (SELECT max(last_start) AS t FROM {ROLLUP} {where} UNION ALL "
                 f"SELECT max(ts) FROM llm_exchanges {where} UNION ALL SELECT max(ts) FROM findings {where})",
                 list(hosts) * 3)
    v = frame.iat[0, 0]
    return None if v is None or pd.isna(v) else pd.Timestamp(v).to_pydatetime()


# -- Hosts -----------------------------------------------------------------------------------------------
def hosts_report(r: Reader, w: Window) -> pd.DataFrame:
    """One row per host of the fleet: is its collector reporting, what it runs, what it lost.

    `last_report` and `version` are the newest over all time (a host silent for the whole window still
    shows, with how long it has been silent); counters are the window's. A collector restart shows as a
    new `started_at` in its stats rows, so `collector_starts` counts runs in the window. `silent` means
    no report for three of its own intervals (at least a minute).
    """
    hw, hp = Window(None, None, w.hosts).where()
    ew, ep = w.where()
    e2w, e2p = w.where()
    return r.df(
        "WITH s AS (SELECT host_id, ts, interval_s, mode, events, lost, capture_drops, decrypt_backlog, rss_bytes, "
        "json_extract_string(detail, '$.version') AS version, json_extract_string(detail, '$.started_at') AS started_at, "
        "json_extract_string(detail, '$.scope') AS scope, "
        "try_cast(json_extract(detail, '$.store_buffered_rows') AS BIGINT) AS buffered_rows "
        f"FROM collector_stats WHERE host_id IS NOT NULL AND {hw}), "
        "latest AS (SELECT host_id, max(ts) AS last_report, arg_max(mode, ts) AS mode, arg_max(version, ts) AS version, "
        "arg_max(scope, ts) AS scope, arg_max(interval_s, ts) AS interval_s, arg_max(buffered_rows, ts) AS buffered_rows, "
        "arg_max(rss_bytes, ts) AS rss_bytes, arg_max(decrypt_backlog, ts) AS decrypt_backlog FROM s GROUP BY host_id), "
        "win AS (SELECT host_id, sum(events) AS events, sum(lost) AS lost_events, sum(capture_drops) AS capture_drops, "
        f"count(DISTINCT started_at) AS collector_starts FROM s WHERE {ew} GROUP BY host_id), "
        f"e AS (SELECT host_id, count(*) AS exchanges FROM llm_exchanges WHERE {e2w} GROUP BY host_id), "
        f"x AS (SELECT host_id, count(*) AS findings, count(*) FILTER (WHERE severity IN ('high', 'critical')) AS serious "
        f"FROM findings WHERE {e2w} GROUP BY host_id) "
        "SELECT l.host_id, "
        "CASE WHEN l.last_report >= ?::TIMESTAMP - to_seconds(greatest(3 * coalesce(l.interval_s, 10), 60)) "
        "THEN 'reporting' ELSE 'silent' END AS status, l.last_report, l.version, l.mode, l.scope, "
        "coalesce(win.collector_starts, 0) AS collector_starts, coalesce(win.events, 0) AS events, "
        "coalesce(win.lost_events, 0) AS lost_events, coalesce(win.capture_drops, 0) AS capture_drops, "
        "l.buffered_rows, l.decrypt_backlog, l.rss_bytes, coalesce(e.exchanges, 0) AS exchanges, "
        "coalesce(x.findings, 0) AS findings, coalesce(x.serious, 0) AS serious_findings "
        "FROM latest l LEFT JOIN win USING (host_id) LEFT JOIN e USING (host_id) LEFT JOIN x USING (host_id) "
        "ORDER BY (status = 'silent') DESC, lost_events DESC, l.host_id",
        hp + ep + e2p + e2p + [dt.datetime.now(dt.UTC).replace(tzinfo=None)],
    )


def host_reports(r: Reader, w: Window, host: str, limit: int = 500) -> pd.DataFrame:
    """One host's collector_stats rows in the window, newest first."""
    ew, ep = Window(w.start, w.end, (host,)).where()
    return r.df(
        "SELECT ts, mode, events, lost, capture_drops, decrypt_backlog, flows_written, rss_bytes, "
        "json_extract_string(detail, '$.version') AS version, json_extract_string(detail, '$.started_at') AS started_at, "
        f"detail FROM collector_stats WHERE {ew} ORDER BY ts DESC LIMIT {int(limit)}",
        ep,
    )


# -- Routers ---------------------------------------------------------------------------------------------
def routers_summary(r: Reader, w: Window) -> pd.DataFrame:
    """One row per LLM endpoint: class, who uses it, volume, models, fingerprints, findings."""
    r.rollup()
    ew, ep = w.where()
    fw, fp = w.where("minute")
    return r.df(
        # two levels: first collapse exchanges to distinct (endpoint, process, models, headers) groups,
        # then aggregate those few rows (3x less CPU than distinct aggregates over every exchange)
        "WITH g AS (SELECT host, host_id, pid, model_requested, model_returned, router_headers, count(*) AS n, "
        "sum(input_tokens) AS i, sum(output_tokens) AS o, sum(tool_call_count) AS tc "
        f"FROM llm_exchanges WHERE {ew} GROUP BY ALL), "
        "agg AS (SELECT host AS endpoint, sum(n) AS exchanges, count(DISTINCT host_id) AS hosts, "
        "count(DISTINCT (host_id, pid)) AS processes, sum(i) AS input_tokens, sum(o) AS output_tokens, "
        "list_sort(list(DISTINCT model_requested) FILTER (WHERE model_requested IS NOT NULL)) AS models_requested, "
        "list_sort(list(DISTINCT model_returned) FILTER (WHERE model_returned IS NOT NULL)) AS models_returned, "
        f"coalesce(sum(n) FILTER (WHERE {MODEL_DIFFERS}), 0) AS model_mismatches, sum(tc) AS tool_calls, "
        "list_sort(list(DISTINCT router_headers) FILTER (WHERE router_headers IS NOT NULL AND router_headers <> '{}')) "
        "AS fingerprint_headers FROM g GROUP BY host), "
        f"vol AS (SELECT destination AS endpoint, sum(bytes_out) AS bytes_out, sum(bytes_in) AS bytes_in "
        f"FROM {ROLLUP} WHERE {fw} AND destination IN (SELECT endpoint FROM agg) GROUP BY 1), "
        f"fx AS (SELECT coalesce(f.router, e2.host) AS endpoint, count(*) AS findings, "
        "count(*) FILTER (WHERE f.severity IN ('high', 'critical')) AS serious FROM findings f "
        "LEFT JOIN (SELECT exchange_id, host FROM llm_exchanges WHERE exchange_id IN "
        "(SELECT exchange_id FROM findings WHERE router IS NULL)) e2 USING (exchange_id) "
        f"WHERE {w.where('f.ts', 'f.host_id')[0]} GROUP BY 1) "
        f"SELECT c.class, coalesce(c.router, agg.endpoint) AS name, agg.*, vol.bytes_out, vol.bytes_in, "
        "coalesce(fx.findings, 0) AS findings, coalesce(fx.serious, 0) AS serious_findings "
        f"FROM agg LEFT JOIN ({dest_classes(r)}) c ON c.name = agg.endpoint "
        "LEFT JOIN vol USING (endpoint) LEFT JOIN fx USING (endpoint) "
        "ORDER BY (c.class = 'suspected_router') DESC, serious_findings DESC, exchanges DESC",
        ep + fp + w.where("f.ts", "f.host_id")[1],
    )


# one row per (host, pid): pid reuse over a long store keeps the latest exe/cmdline
_PROCS = ("(SELECT host_id, pid, arg_max(exe, start_time) AS exe, arg_max(cmdline, start_time) AS cmdline "
          "FROM processes GROUP BY host_id, pid)")


def router_users(r: Reader, w: Window, endpoint: str) -> pd.DataFrame:
    """Hosts and processes that talk to `endpoint`, with their executables."""
    ew, ep = w.where()
    return r.df(  # aggregate first, then join the few (host, pid) groups to their processes
        "WITH e AS (SELECT host_id, pid, count(*) AS exchanges, min(ts) AS first_seen, max(ts) AS last_seen "
        f"FROM llm_exchanges WHERE host = ? AND {ew} GROUP BY ALL ORDER BY exchanges DESC LIMIT 200) "
        f"SELECT e.host_id, e.pid, p.exe, p.cmdline, e.exchanges, e.first_seen, e.last_seen FROM e LEFT JOIN {_PROCS} p "
        "ON p.host_id = e.host_id AND p.pid = e.pid ORDER BY e.exchanges DESC",
        [endpoint] + ep,
    )


def router_models(r: Reader, w: Window, endpoint: str) -> pd.DataFrame:
    ew, ep = w.where()
    return r.df(
        "SELECT model_requested, model_returned, count(*) AS exchanges FROM llm_exchanges "
        f"WHERE host = ? AND {ew} GROUP BY ALL ORDER BY exchanges DESC",
        [endpoint] + ep,
    )


def router_findings(r: Reader, w: Window, endpoint: str) -> pd.DataFrame:
    fw, fp = w.where("f.ts", "f.host_id")
    return r.df(
        "SELECT f.ts, f.severity, f.attack_class, f.title, f.host_id, f.finding_id, f.exchange_id FROM findings f "
        "LEFT JOIN (SELECT exchange_id, host FROM llm_exchanges WHERE exchange_id IN (SELECT exchange_id FROM findings)) e "
        f"USING (exchange_id) WHERE (f.router = ? OR e.host = ?) AND {fw} "
        "ORDER BY f.ts DESC LIMIT 200",
        [endpoint, endpoint] + fp,
    )


# -- Destinations ----------------------------------------------------------------------------------------
def destinations(r: Reader, w: Window, limit: int = 300) -> pd.DataFrame:
    """Destinations first seen inside the window, with the process (and its parent) that reached them.

    'unexpected' means neither a provider nor a router, and first seen in the window.
    """
    r.rollup()
    hw, hp = Window(None, None, w.hosts).where("first_seen")
    return r.df(
        f"WITH first AS (SELECT * FROM {FIRST} WHERE {hw}), "
        f"cls AS ({dest_classes(r)}) "
        "SELECT f.first_seen, f.host_id, f.destination, f.dst_port, coalesce(c.class, 'other') AS class, "
        "f.flows, f.pid, p.exe, p.cmdline, f2.parent_pid, f2.parent_exe "
        "FROM first f LEFT JOIN cls c ON c.name = f.destination "
        "LEFT JOIN (SELECT host_id, pid, any_value(exe) AS exe, any_value(cmdline) AS cmdline, any_value(ppid) AS ppid "
        "FROM processes GROUP BY ALL) p ON p.host_id = f.host_id AND p.pid = f.pid "
        "LEFT JOIN (SELECT host_id, pid AS parent_pid, any_value(exe) AS parent_exe FROM processes GROUP BY ALL) f2 "
        "ON f2.host_id = f.host_id AND f2.parent_pid = p.ppid "
        + ("WHERE f.first_seen >= ? " if w.start is not None else "")
        + f"ORDER BY (coalesce(c.class, 'other') = 'other') DESC, f.first_seen DESC LIMIT {int(limit)}",
        hp + ([w.start] if w.start is not None else []),
    )


def agent_processes(r: Reader, w: Window) -> pd.DataFrame:
    """Processes that made LLM exchanges in the window (the agents)."""
    ew, ep = w.where()
    return r.df(
        "WITH e AS (SELECT host_id, pid, count(*) AS exchanges, min(ts) AS first_exchange, max(ts) AS last_exchange, "
        f"sum(tool_call_count) AS tool_calls FROM llm_exchanges WHERE {ew} AND pid IS NOT NULL GROUP BY ALL "
        "ORDER BY tool_calls DESC, exchanges DESC LIMIT 500) "
        "SELECT e.host_id, e.pid, p.exe, p.cmdline, e.exchanges, e.first_exchange, e.last_exchange, e.tool_calls "
        f"FROM e LEFT JOIN {_PROCS} p ON p.host_id = e.host_id AND p.pid = e.pid "
        "ORDER BY e.tool_calls DESC, e.exchanges DESC",
        ep,
    )


def process_tree(r: Reader, host: str, pid: int) -> pd.DataFrame:
    """`pid` and its descendants on `host` (depth-limited: pid reuse can make cycles)."""
    return r.df(
        "WITH RECURSIVE p AS (SELECT DISTINCT host_id, pid, ppid, exe, cmdline FROM processes WHERE host_id = ?), "
        "t(pid, ppid, exe, cmdline, depth) AS (SELECT pid, ppid, exe, cmdline, 0 FROM p WHERE pid = ? "
        "UNION SELECT p.pid, p.ppid, p.exe, p.cmdline, t.depth + 1 FROM p JOIN t ON p.ppid = t.pid "
        "WHERE t.depth < 12 AND p.pid <> t.pid) "
        "SELECT pid, ppid, any_value(exe) AS exe, any_value(cmdline) AS cmdline, min(depth) AS depth "
        "FROM t GROUP BY pid, ppid ORDER BY depth, pid",
        [host, pid],
    )


def agent_timeline(r: Reader, host: str, pid: int, start: dt.datetime, end: dt.datetime,
                   limit: int = 5000) -> dict[str, pd.DataFrame]:
    """Egress of an agent and its descendants around its exchanges (±5 min), and the exchanges."""
    tree = process_tree(r, host, pid)
    pids = [int(p) for p in tree["pid"]] or [pid]
    lo, hi = start - dt.timedelta(minutes=5), end + dt.timedelta(minutes=5)
    marks = ", ".join("?" for _ in pids)
    flows = r.df(
        "SELECT ts_start, ts_end, pid, coalesce(server_name, dst_ip) AS destination, dst_port, bytes_out, bytes_in, "
        f"flow_uid FROM flows WHERE host_id = ? AND pid IN ({marks}) AND ts_start >= ? AND ts_start < ? "
        f"ORDER BY ts_start LIMIT {int(limit)}",
        [host, *pids, lo, hi],
    )
    exchanges = r.df(
        "SELECT ts, exchange_id, host AS endpoint, model_requested, model_returned, tool_call_count FROM llm_exchanges "
        f"WHERE host_id = ? AND pid = ? AND ts >= ? AND ts < ? ORDER BY ts LIMIT {int(limit)}",
        [host, pid, lo, hi],
    )
    return {"tree": tree, "flows": flows, "exchanges": exchanges}


# -- Exchanges -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExchangeFilter:
    endpoint: str = ""
    model: str = ""
    api: str = ""
    only_tool_calls: bool = False
    only_mismatch: bool = False
    status: int | None = None


def exchange_facets(r: Reader, w: Window) -> dict[str, list[str]]:
    ew, ep = w.where()
    frame = r.df(
        f"SELECT list_sort(list(DISTINCT host)) AS endpoints, list_sort(list(DISTINCT model_requested)) AS models, "
        f"list_sort(list(DISTINCT api)) AS apis FROM llm_exchanges WHERE {ew}",
        ep,
    )
    row = frame.iloc[0]
    out: dict[str, list[str]] = {}
    for k in frame.columns:
        v = row[k]
        out[k] = [x for x in v if x is not None] if hasattr(v, "__iter__") and not isinstance(v, str) else []
    return out


def exchanges(r: Reader, w: Window, f: ExchangeFilter, limit: int = 500) -> pd.DataFrame:
    ew, ep = w.where()
    conds, params = [ew], list(ep)
    for col, val in (("host", f.endpoint), ("model_requested", f.model), ("api", f.api)):
        if val:
            conds.append(f"{col} = ?")
            params.append(val)
    if f.only_tool_calls:
        conds.append("tool_call_count > 0")
    if f.only_mismatch:
        conds.append(MODEL_DIFFERS)
    if f.status is not None:
        conds.append("status = ?")
        params.append(f.status)
    where = " AND ".join(conds)
    return r.df(
        "SELECT ts, exchange_id, host_id, pid, api, host AS endpoint, router, model_requested, model_returned, "
        "streamed, status, tool_call_count, input_tokens, output_tokens, latency_ms, flow_uid "
        f"FROM llm_exchanges WHERE {where} ORDER BY ts DESC LIMIT {int(limit)}",
        params,
    )


def exchange_count(r: Reader, w: Window) -> int:
    ew, ep = w.where()
    return int(r.scalar(f"SELECT count(*) FROM llm_exchanges WHERE {ew}", ep) or 0)


def exchange_detail(r: Reader, exchange_id: str) -> dict[str, pd.DataFrame]:
    """Everything about one exchange: the row, tool calls, secrets (fingerprints), HTTP, findings, process."""
    ex = r.df("SELECT * FROM llm_exchanges WHERE exchange_id = ? LIMIT 1", [exchange_id])
    out = {"exchange": ex}
    out["tool_calls"] = r.df(
        "SELECT idx, name, arguments, direction, call_id FROM tool_calls WHERE exchange_id = ? ORDER BY direction, idx",
        [exchange_id])
    out["secrets"] = r.df(
        "SELECT ts, kind, fingerprint, last4, direction, destination, location FROM secrets_seen "
        "WHERE exchange_id = ? ORDER BY ts", [exchange_id])
    out["http"] = r.df(
        "SELECT method, host, path, status, http_version, request_headers, response_headers, duration_ms "
        "FROM http WHERE exchange_id = ? LIMIT 5", [exchange_id])
    if r.has("finding_coverage"):  # every finding that accounts for this exchange, not only the one it raised
        out["findings"] = r.df(
            "SELECT finding_id, severity, attack_class, title, rule_id, (exchange_id = ?) AS raised_here FROM findings "
            "WHERE exchange_id = ? OR finding_id IN (SELECT finding_id FROM finding_coverage WHERE exchange_id = ?) "
            "ORDER BY ts", [exchange_id, exchange_id, exchange_id])
    else:
        out["findings"] = r.df(
            "SELECT finding_id, severity, attack_class, title, rule_id, true AS raised_here FROM findings "
            "WHERE exchange_id = ? ORDER BY ts", [exchange_id])
    out["gate"] = (r.df("SELECT ts, action, rule_id, reason, tool_name, call_id, held_ms FROM gate_decisions "
                        "WHERE exchange_id = ? ORDER BY ts", [exchange_id])
                   if r.has("gate_decisions") else pd.DataFrame())
    if not ex.empty and pd.notna(ex.at[0, "pid"]):
        out["process"] = r.df(
            "SELECT pid, ppid, exe, cmdline, start_time FROM processes WHERE host_id = ? AND pid = ? LIMIT 1",
            [ex.at[0, "host_id"], int(ex.at[0, "pid"])])
    else:
        out["process"] = pd.DataFrame()
    return out


# -- Findings --------------------------------------------------------------------------------------------
def findings(r: Reader, w: Window, severities: tuple[str, ...] = (), classes: tuple[str, ...] = (),
             limit: int = 2000) -> pd.DataFrame:
    fw, fp = w.where()
    conds, params = [fw], list(fp)
    if severities:
        conds.append(f"severity IN ({', '.join('?' for _ in severities)})")
        params += list(severities)
    if classes:
        conds.append(f"attack_class IN ({', '.join('?' for _ in classes)})")
        params += list(classes)
    cov = ("(SELECT count(DISTINCT c.exchange_id) FROM finding_coverage c WHERE c.finding_id = f.finding_id) AS exchanges, "
           "(SELECT count(DISTINCT c.flow_uid) FROM finding_coverage c WHERE c.finding_id = f.finding_id) AS flows, "
           if r.has("finding_coverage") else "")
    return r.df(
        f"SELECT ts, severity, attack_class, title, host_id, pid, router, rule_id, rule_rev, finding_id, {cov}"
        f"exchange_id, flow_uid, evidence FROM findings f WHERE {' AND '.join(conds)} "
        "ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 "
        f"WHEN 'low' THEN 3 ELSE 4 END, ts DESC LIMIT {int(limit)}",
        params,
    )


def finding_coverage(r: Reader, finding_id: str, limit: int = 500) -> pd.DataFrame:
    """Every exchange and flow a finding accounts for (append-only rows, newest last), with each
    exchange's endpoint and models."""
    if not r.has("finding_coverage"):
        return pd.DataFrame(columns=["ts", "exchange_id", "flow_uid", "pid", "raised", "host", "model_returned"])
    return r.df(
        "SELECT c.ts, c.exchange_id, c.flow_uid, c.pid, c.raised, e.host, e.model_requested, e.model_returned "
        "FROM finding_coverage c LEFT JOIN (SELECT exchange_id, host, model_requested, model_returned FROM llm_exchanges "
        "WHERE exchange_id IN (SELECT exchange_id FROM finding_coverage WHERE finding_id = ?)) e USING (exchange_id) "
        f"WHERE c.finding_id = ? ORDER BY c.ts, c.exchange_id LIMIT {int(limit)}",
        [finding_id, finding_id],
    )


def router_baseline(r: Reader, router: str) -> pd.DataFrame:
    """The latest behaviour snapshot of a router (all hosts, all runs): what AC-1.b compares a turn with.
    Matched by catalog name or endpoint (`host[:port]` for uncatalogued routers)."""
    if not r.has("router_baseline"):
        return pd.DataFrame()
    return r.df(
        "SELECT * FROM router_baseline WHERE router = ? OR router = (SELECT any_value(router) FROM exchange_classes "
        "WHERE exchange_id IN (SELECT exchange_id FROM llm_exchanges WHERE host = ? LIMIT 1)) "
        "ORDER BY ts DESC, exchanges DESC LIMIT 1",
        [router, router],
    )


def finding(r: Reader, finding_id: str) -> pd.DataFrame:
    return r.df("SELECT * FROM findings WHERE finding_id = ? ORDER BY ts DESC LIMIT 1", [finding_id])


def findings_counts(r: Reader, w: Window) -> pd.DataFrame:
    fw, fp = w.where()
    return r.df(f"SELECT severity, attack_class, host_id, count(*) AS n FROM findings WHERE {fw} GROUP BY ALL", fp)


# -- the policy gate -------------------------------------------------------------------------------------
def gate_counts(r: Reader, w: Window) -> dict[str, int]:
    """Gate decisions in the window by action (block / record / allow); {} for a store without any."""
    if not r.has("gate_decisions"):
        return {}
    fw, fp = w.where()
    df = r.df(f"SELECT action, count(*) AS n FROM gate_decisions WHERE {fw} GROUP BY 1", fp)
    return {str(a): int(n) for a, n in zip(df["action"], df["n"], strict=True)}


def gate_decisions(r: Reader, w: Window, actions: tuple[str, ...] = ("block", "record"), limit: int = 500) -> pd.DataFrame:
    if not r.has("gate_decisions"):
        return pd.DataFrame()
    fw, fp = w.where()
    marks = ", ".join("?" for _ in actions)
    return r.df(
        "SELECT ts, action, source, rule_id, router, agent, tool_name, reason, host_id, pid, exchange_id, session_id "
        f"FROM gate_decisions WHERE {fw} AND action IN ({marks}) ORDER BY ts DESC LIMIT {int(limit)}",
        [*fp, *actions])


# -- Flows -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FlowFilter:
    destination: str = ""
    dst_port: int | None = None
    pid: int | None = None
    proto: str = ""
    min_bytes: int = 0


def _flow_where(w: Window, f: FlowFilter) -> tuple[str, list]:
    fw, fp = w.where("ts_start")
    conds, params = [fw], list(fp)
    if f.destination:
        conds.append("(coalesce(server_name, dst_ip) ILIKE ? OR dst_ip = ?)")  # as the rollup's destination
        params += [f"%{f.destination}%", f.destination]
    if f.dst_port is not None:
        conds.append("dst_port = ?")
        params.append(f.dst_port)
    if f.pid is not None:
        conds.append("pid = ?")
        params.append(f.pid)
    if f.proto:
        conds.append("proto = ?")
        params.append(f.proto)
    if f.min_bytes:
        conds.append("bytes_out + bytes_in >= ?")
        params.append(f.min_bytes)
    return " AND ".join(conds), params


FLOW_COLUMNS = ("ts_start, ts_end, host_id, pid, proto, src_ip, src_port, dst_ip, dst_port, server_name, "
                "bytes_out, bytes_in, packets_out, packets_in, tcp_state, source, flow_uid, community_id")


def _rollup_where(w: Window, f: FlowFilter) -> tuple[str, list] | None:
    """The same filter over the per-minute rollup, when the rollup can answer it exactly."""
    if f.pid is not None or f.proto or f.min_bytes:
        return None
    where, params = w.where("minute")
    if f.destination:
        where += " AND (destination ILIKE ? OR dst_ip = ?)"
        params += [f"%{f.destination}%", f.destination]
    if f.dst_port is not None:
        where += " AND dst_port = ?"
        params.append(f.dst_port)
    return where, params


def flows(r: Reader, w: Window, f: FlowFilter, limit: int = 1000) -> pd.DataFrame:
    where, params = _flow_where(w, f)
    # top-N in two steps: find the cut-off time (from the rollup when it can answer the filter, else on
    # the ts_start column), then read whole rows past it only
    rw = _rollup_where(w, f)
    if rw is not None:
        r.rollup()
        cut = r.scalar(f"SELECT minute FROM (SELECT minute, sum(sum(flows)) OVER (ORDER BY minute DESC) AS n "
                       f"FROM {ROLLUP} WHERE {rw[0]} GROUP BY minute) WHERE n >= ? ORDER BY minute DESC LIMIT 1",
                       rw[1] + [int(limit)])
    else:
        cut = r.scalar(f"SELECT ts_start FROM flows WHERE {where} ORDER BY ts_start DESC LIMIT 1 "
                       f"OFFSET {int(limit) - 1}", params)
    if cut is not None and pd.notna(cut):
        where, params = where + " AND ts_start >= ?", params + [cut.to_pydatetime()]
    return r.df(f"SELECT {FLOW_COLUMNS} FROM flows WHERE {where} ORDER BY ts_start DESC LIMIT {int(limit)}", params)


def flow_count(r: Reader, w: Window, f: FlowFilter) -> int:
    rw = _rollup_where(w, f)
    if rw is not None:
        r.rollup()
        return int(r.scalar(f"SELECT coalesce(sum(flows), 0) FROM {ROLLUP} WHERE {rw[0]}", rw[1]) or 0)
    where, params = _flow_where(w, f)
    return int(r.scalar(f"SELECT count(*) FROM flows WHERE {where}", params) or 0)


def flows_export(r: Reader, w: Window, f: FlowFilter, fmt: str, limit: int = 1_000_000) -> bytes:
    """The filtered flows as CSV or Parquet bytes (capped at `limit` rows), built in memory from Arrow."""
    import io

    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    where, params = _flow_where(w, f)
    cur = r.cursor()
    try:
        table = cur.execute(f"SELECT * FROM flows WHERE {where} ORDER BY ts_start LIMIT {int(limit)}", params).arrow()
    finally:
        cur.close()
    if hasattr(table, "read_all"):  # a RecordBatchReader in newer duckdb
        table = table.read_all()
    buf = io.BytesIO()
    if fmt == "csv":
        pa_csv.write_csv(table, buf)
    else:
        pq.write_table(table, buf)
    return buf.getvalue()


def flow_detail(r: Reader, flow_uid: str) -> dict[str, pd.DataFrame]:
    fl = r.df("SELECT * FROM flows WHERE flow_uid = ? LIMIT 1", [flow_uid])
    out = {"flow": fl}
    out["tls"] = r.df("SELECT version, sni, alpn, alpn_selected, ja4, cipher, decrypted FROM tls WHERE flow_uid = ?",
                      [flow_uid])
    out["exchanges"] = r.df(
        "SELECT ts, exchange_id, api, host, model_requested, model_returned, status, tool_call_count "
        "FROM llm_exchanges WHERE flow_uid = ? ORDER BY ts LIMIT 200", [flow_uid])
    if not fl.empty and pd.notna(fl.at[0, "pid"]):
        out["process"] = r.df(
            "SELECT pid, ppid, exe, cmdline, uid, container_id FROM processes WHERE host_id = ? AND pid = ? LIMIT 1",
            [fl.at[0, "host_id"], int(fl.at[0, "pid"])])
        if fl.at[0, "server_name"] is not None:
            out["dns"] = r.df(
                "SELECT ts, query, qtype, rcode, answers FROM dns WHERE host_id = ? AND query = ? AND ts <= ? "
                "ORDER BY ts DESC LIMIT 5", [fl.at[0, "host_id"], fl.at[0, "server_name"], fl.at[0, "ts_start"]])
    out.setdefault("process", pd.DataFrame())
    out.setdefault("dns", pd.DataFrame())
    return out


# -- SQL console -----------------------------------------------------------------------------------------
EXAMPLE_QUERIES = {  # the SQL console's built-in saved queries
    "Exchanges per endpoint and model": "SELECT host, model_requested, model_returned, count(*) AS n\n"
    "FROM llm_exchanges GROUP BY ALL ORDER BY n DESC LIMIT 50",
    "Secrets by destination (fingerprints)": "SELECT destination, kind, fingerprint, last4, count(*) AS seen\n"
    "FROM secrets_seen GROUP BY ALL ORDER BY seen DESC LIMIT 50",
    "Findings by class and severity": "SELECT attack_class, severity, count(*) AS n FROM findings GROUP BY ALL ORDER BY n DESC",
    "Flows per hour": "SELECT date_trunc('hour', ts_start) AS hour, count(*) AS flows\nFROM flows GROUP BY 1 ORDER BY 1",
    "Collector losses": "SELECT ts, host_id, lost, capture_drops FROM collector_stats\n"
    "WHERE lost > 0 OR capture_drops > 0 ORDER BY ts DESC",
}


def table_list(r: Reader) -> list[str]:
    return sorted(r.columns())


SQL_PAGE_ROWS = 10_000  # the SQL page's row cap (ROUTERWATCH_SQL_MAX_ROWS changes it)


def sandboxed_sql(spec: str | None, sql: str):
    """What a person types on the SQL page: one query in a fresh SQL sandbox (analyzer/sandbox.py),
    closed afterwards, so sessions share nothing writable. Raises QueryError (one line) or StoreError."""
    from analyzer.sandbox import Limits, QueryError, Sandbox

    try:
        limits = Limits.from_env(default_rows=SQL_PAGE_ROWS)
    except ValueError as exc:
        raise QueryError(str(exc)) from None
    with Sandbox.open(spec, limits) as sb:
        return sb.run_one(sql)
