"""The Hosts view and the host filter: every page's queries answer for the chosen hosts only."""

from __future__ import annotations

import inspect

import pandas as pd

from dashboard import queries as q
from tests.dashboard.test_pages import frames, metrics, open_page
from tests.support.sample_data import HOSTS


def test_hosts_view_shows_reports_versions_restarts_and_losses(dash_env):
    at = open_page("views/hosts.py")
    m = metrics(at)
    assert m["Hosts"] == "3"
    assert m["Collector versions"] == "0.0.9, 0.1.0"
    assert "different versions" in " ".join(w.value for w in at.warning)
    table = frames(at)[0]
    assert set(table["host_id"]) == set(dash_env.seeded.hosts)
    by_host = table.set_index("host_id")
    assert by_host.loc[HOSTS[2], "version"] == "0.0.9" and by_host.loc[HOSTS[0], "version"] == "0.1.0"
    assert by_host.loc[HOSTS[1], "collector_starts"] == 2 and by_host.loc[HOSTS[0], "collector_starts"] == 1
    lost = dash_env.scalar("SELECT sum(lost) FROM collector_stats")
    assert int(table["lost_events"].sum()) == lost > 0
    assert int(m["Lost events"].replace(",", "")) == lost
    # the seeded collectors' last reports are half an hour old: every host is shown as silent
    assert set(table["status"]) == {"silent"}
    assert all(h in " ".join(e.value for e in at.error) for h in dash_env.seeded.hosts)


def test_silent_and_reporting_hosts(tmp_path):
    import datetime as dt

    from collector.store import Store
    from collector.store.writer import BatchWriter

    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = [{"ts": now - dt.timedelta(seconds=5), "host_id": "fresh", "interval_s": 10.0, "lost": 0, "events": 3,
             "detail": '{"version": "0.1.0", "started_at": "a"}'},
            {"ts": now - dt.timedelta(seconds=100), "host_id": "stale", "interval_s": 10.0, "lost": 2, "events": 3,
             "detail": '{"version": "0.1.0", "started_at": "b", "store_buffered_rows": 42}'}]
    with Store.open(str(tmp_path / "s")) as s, BatchWriter(s) as w:
        w.add("collector_stats", rows)
    r = q.Reader(str(tmp_path / "s"))
    try:
        rep = q.hosts_report(r, q.Window.last(1)).set_index("host_id")
    finally:
        r.close()
    assert rep.loc["fresh", "status"] == "reporting" and rep.loc["stale", "status"] == "silent"
    assert rep.loc["stale", "buffered_rows"] == 42 and rep.loc["stale", "lost_events"] == 2


def test_hosts_view_one_host_in_detail(dash_env):
    at = open_page("views/hosts.py", params={"host": HOSTS[1]})
    assert any(s.value == f"Host {HOSTS[1]}" for s in at.subheader)
    reports = frames(at)[1]
    n = dash_env.scalar("SELECT count(*) FROM collector_stats WHERE host_id = ?", [HOSTS[1]])
    assert len(reports) == min(n, 500) and reports["started_at"].iloc[0] == "run-1-1"  # newest first
    # the button narrows every page to this host
    at.button[0].click().run()
    assert at.session_state["rw_hosts"] == [HOSTS[1]]
    at.switch_page("views/overview.py").run()
    assert metrics(at)["Hosts"] == "1"


def test_every_windowed_query_honours_the_host_filter(dash_env):
    """Each query a page runs with a Window returns rows of the chosen host only (or none)."""
    r = q.Reader(str(dash_env.path))
    host = HOSTS[0]
    w = q.Window(None, None, (host,))
    checked = []
    try:
        for name, fn in inspect.getmembers(q, inspect.isfunction):
            params = list(inspect.signature(fn).parameters)
            if params[:2] != ["r", "w"] or fn.__module__ != q.__name__:
                continue
            extra = {"f": q.ExchangeFilter()} if name == "exchanges" else {}
            if name in ("flows", "flow_count", "flows_export"):
                extra = {"f": q.FlowFilter()}
            if name == "flows_export":
                extra["fmt"] = "csv"
            if name in ("router_users", "router_models", "router_findings"):
                extra = {"endpoint": dash_env.scalar("SELECT any_value(host) FROM llm_exchanges")}
            if name == "host_reports":
                extra = {"host": host}
            out = fn(r, w, **extra)
            frames_out = out.values() if isinstance(out, dict) else [out]
            for f in frames_out:
                if isinstance(f, pd.DataFrame) and "host_id" in f.columns and len(f):
                    assert set(f["host_id"].dropna()) <= {host}, (name, set(f["host_id"]))
            checked.append(name)
    finally:
        r.close()
    assert {"hosts_report", "overview_hosts", "findings", "flows", "exchanges", "destinations",
            "collector_health", "agent_processes"} <= set(checked), checked
