"""Dashboard page latency on a big store: every page's queries, as the page runs them, uncached.

    .venv/bin/python bench/dashboard.py                      # 10M flows, 1M exchanges (seeded once)
    .venv/bin/python bench/dashboard.py --flows 1000000 --exchanges 100000 --store /tmp/rw-bench-small

The store is seeded with tests/support/sample_data.py (numpy/Arrow) unless it already holds the requested
rows. Each page's query functions (dashboard/queries.py, exactly what the page calls) run with a
fresh Reader and no Streamlit cache; the per-minute flow rollup is built once per dashboard process
(reported separately, like a server start) and then refreshed incrementally (reported after a
writer appends). The peer in the same run: the Overview's flow aggregates scanning `flows` directly,
as a dashboard without the rollup would. Target: < 1 s per page.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

# run as `python bench/dashboard.py`, this file's folder comes first on sys.path and its name would
# shadow the `dashboard` package: drop the folder, and put the repo root first (for tests.support)
HERE = Path(__file__).resolve().parent
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

import pyarrow as pa  # noqa: E402

from collector.store import BatchWriter, Store  # noqa: E402
from collector.store.errors import StoreError  # noqa: E402
from dashboard import queries as q  # noqa: E402
from tests.support.sample_data import SCENARIO, seed  # noqa: E402


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _cpu(fn) -> tuple[float, float]:
    """Wall and CPU seconds (CPU covers DuckDB's threads: a figure the shared machine's load moves less)."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def pages(r: q.Reader, w: q.Window) -> dict[str, list]:
    """page -> its query calls, in the order the page makes them (defaults: last 24 h, no filter)."""

    def routers():
        rs = q.routers_summary(r, w)
        top = str(rs.iloc[0]["endpoint"])
        return [rs, q.router_users(r, w, top), q.router_models(r, w, top), q.router_findings(r, w, top)]

    def destinations():
        d = q.destinations(r, w)
        a = q.agent_processes(r, w).iloc[0]
        last = a.last_exchange.to_pydatetime()  # the page shows the agent's last hour of activity
        first = max(a.first_exchange.to_pydatetime(), last - dt.timedelta(hours=1))
        return [d, q.agent_timeline(r, str(a.host_id), int(a.pid), first, last)]

    def exchanges():
        f = q.ExchangeFilter()
        return [q.exchange_facets(r, w), q.exchange_count(r, w), q.exchanges(r, w, f),
                q.exchange_detail(r, SCENARIO.exchange_id)]

    def findings():
        return [q.findings_counts(r, w), q.findings(r, w), q.finding(r, "FSCN-AC1")]

    def flows():
        f = q.FlowFilter()
        return [q.flow_count(r, w, f), q.flows(r, w, f), q.flow_detail(r, SCENARIO.evil_flow)]

    def sql():
        # as the page runs it: a fresh SQL sandbox per query (opening it is part of the cost)
        return [q.table_list(r), q.sandboxed_sql(r.spec, q.EXAMPLE_QUERIES["Exchanges per endpoint and model"])]

    return {
        "sidebar": lambda: q.known_hosts(r),
        "Overview": lambda: [q.collector_health(r, w), q.overview_kpis(r, w), q.overview_hosts(r, w),
                             q.overview_timeseries(r, w), q.top_destinations(r, w)],
        "Routers": routers, "Destinations": destinations, "Exchanges": exchanges, "Findings": findings,
        "Flows": flows, "SQL": sql,
    }


def peer_overview(r: q.Reader, w: q.Window) -> None:
    """The Overview's flow numbers straight from `flows` (what a dashboard without the rollup runs)."""
    fw, fp = w.where("ts_start")
    r.df(f"SELECT count(*) FROM flows WHERE {fw}", fp)
    r.df(f"SELECT host_id, count(*), sum(bytes_out), max(ts_start) FROM flows WHERE {fw} GROUP BY 1", fp)
    r.df(f"SELECT time_bucket(INTERVAL '{w.bucket()}', ts_start), count(*) FROM flows WHERE {fw} GROUP BY 1", fp)
    r.df(f"SELECT coalesce(server_name, dst_ip), count(*), sum(bytes_out), sum(bytes_in), count(DISTINCT host_id) "
         f"FROM flows WHERE {fw} GROUP BY 1 ORDER BY 2 DESC LIMIT 15", fp)


def ensure_store(path: Path, flows: int, exchanges: int) -> float | None:
    try:
        with Store.open(str(path), read_only=True) as s:
            have = s.sql("SELECT (SELECT count(*) FROM flows), (SELECT count(*) FROM llm_exchanges)").fetchone()
        if have[0] >= flows and have[1] >= exchanges:
            return None
        raise SystemExit(f"{path} holds {have[0]:,} flows / {have[1]:,} exchanges; use another --store")
    except StoreError:
        pass
    t0 = time.perf_counter()
    with Store.open(str(path)) as s:
        seed(s, flows=flows, exchanges=exchanges, hours=24)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flows", type=int, default=10_000_000)
    ap.add_argument("--exchanges", type=int, default=1_000_000)
    ap.add_argument("--store", type=Path, default=Path("/tmp/rw-bench-dashboard"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    a = ap.parse_args()

    seeded = ensure_store(a.store, a.flows, a.exchanges)
    if seeded is not None:
        print(f"seeded {a.flows:,} flows + {a.exchanges:,} exchanges (and the other tables) in {seeded:.1f} s")
    r = q.Reader(str(a.store))
    w = q.Window.last(24)
    build, _ = _timed(r.rollup)
    roll = r.rollup()
    print(f"store {a.store}: rollup built in {build:.2f} s ({roll.rows:,} flows -> per-minute aggregates), "
          "once per dashboard process")

    results: dict[str, dict] = {}
    calls = pages(r, w)
    for name, fn in calls.items():
        times, cpus = [], []
        for _ in range(a.repeat):
            roll._checked = 0  # each run also pays the snapshot check a refresh makes
            wall, cpu = _cpu(fn)
            times.append(wall)
            cpus.append(cpu)
        results[name] = {"median_s": statistics.median(times), "max_s": max(times), "cpu_s": statistics.median(cpus)}
    peer = []
    for _ in range(a.repeat):
        dt_, _ = _timed(lambda: peer_overview(r, w))
        peer.append(dt_)
    ours = results["Overview"]["median_s"]

    # a writer appends; the next refresh reads only the new rows
    with Store.open(str(a.store)) as s, BatchWriter(s) as bw:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        n = 50_000
        bw.add("flows", pa.table({"flow_uid": [f"BENCH{now.timestamp():.0f}-{i}" for i in range(n)],
                                  "host_id": ["bench"] * n, "ts_start": [now] * n, "server_name": ["bench.example"] * n,
                                  "bytes_out": [1] * n, "bytes_in": [1] * n}))
    roll._checked = 0
    inc, _ = _timed(roll.refresh)
    after = q.overview_kpis(r, w)["flows"]

    load = os.getloadavg()[0]
    print(f"\n{'page':<14}{'median':>10}{'max':>10}{'cpu':>10}   target < 1 s   (load average {load:.1f} on "
          f"{os.cpu_count()} cores)")
    for name, res in results.items():
        ok = "ok" if res["median_s"] < 1 else "SLOW"
        print(f"{name:<14}{res['median_s'] * 1000:>8.0f}ms{res['max_s'] * 1000:>8.0f}ms{res['cpu_s'] * 1000:>8.0f}ms   {ok}")
    print(f"\npeer: Overview flow aggregates scanning flows directly: {statistics.median(peer) * 1000:.0f} ms "
          f"vs {ours * 1000:.0f} ms for the whole Overview page with the rollup "
          f"({statistics.median(peer) / ours:.1f}x)")
    print(f"incremental rollup refresh after a writer added {n:,} flows: {inc * 1000:.0f} ms "
          f"(overview now counts {after:,} flows in the window)")
    if a.json:
        print(json.dumps({"pages": results, "rollup_build_s": build, "peer_overview_s": statistics.median(peer),
                          "incremental_refresh_s": inc, "flows": a.flows, "exchanges": a.exchanges}))
    return 0 if all(res["median_s"] < 1 for res in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
