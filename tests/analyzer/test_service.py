"""`routerwatch analyze --follow`: runs by itself whenever rows are committed, alerts as it finds,
lets a person's `routerwatch analyze` run beside it, writes nothing when nothing is new, stops on SIGTERM."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from analyzer.ledger import verify
from collector.store import BatchWriter, Store
from tests.analyzer.test_analyze_cli import findings, seed, t
from tests.conftest import BIN, run_cli


def _wait(pred, timeout: float = 60, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def _eve_alerts(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [e for e in map(json.loads, path.read_text().splitlines()) if e["event_type"] == "alert"]


def _runs(store_dir: Path) -> int:
    with Store.open(str(store_dir), read_only=True) as s:
        return s.sql("SELECT count(*) FROM analyzer_runs").fetchone()[0]


def test_follow_analyzes_new_commits_and_a_manual_run_waits_its_turn(store_dir, tmp_path):
    Store.open(str(store_dir)).close()
    eve = tmp_path / "alerts.eve.json"
    log = open(tmp_path / "follow.log", "w")
    proc = subprocess.Popen([str(BIN / "routerwatch"), "analyze", "--follow", "--interval", "0.3", "--store",
                             str(store_dir), "--eve", str(eve)], stdout=log, stderr=subprocess.STDOUT)
    try:
        assert _wait(lambda: _runs(store_dir) >= 1, 90), (tmp_path / "follow.log").read_text()  # the first run
        runs_idle = _runs(store_dir)
        time.sleep(2)
        assert _runs(store_dir) == runs_idle  # nothing new: no run rows, no commits
        t0 = time.monotonic()
        seed(store_dir)  # a commit with an injected download-and-execute tool call, among others
        alerts = _wait(lambda: [a for a in _eve_alerts(eve) if a["routerwatch"]["rule_id"] == "ac1-download-exec"], 60)
        latency = time.monotonic() - t0
        assert alerts, (tmp_path / "follow.log").read_text()
        assert alerts[0]["routerwatch"]["exchange_id"] == "X2"
        assert latency < 30, latency  # seconds from the commit to the alert line (loaded CI machines)
        # a person runs analyze by hand meanwhile: the service does the work, the command reports it
        runs_before = _runs(store_dir)
        manual = [run_cli("analyze", "--store", str(store_dir)) for _ in range(2)]
        assert [m.returncode for m in manual] == [0, 0], [m.stderr for m in manual]
        assert all(m.stdout.startswith("the analyzer service (pid ") for m in manual), [m.stdout for m in manual]
        assert _runs(store_dir) == runs_before  # nothing analysed twice
        # a rule preview runs itself, after the service's current run, and stores nothing
        own = run_cli("analyze", "--store", str(store_dir), "--rule", "model-substitution")
        assert own.returncode == 0 and own.stdout.startswith("preview (model-substitution"), own.stdout + own.stderr
        assert _runs(store_dir) == runs_before
        with Store.open(str(store_dir)) as store, BatchWriter(store) as w:
            w.add("llm_exchanges", [{"ts": t(100), "exchange_id": "X9", "host_id": "agent-1", "api": "openai.chat",
                                     "host": "127.0.0.1:9102", "model_requested": "gpt-4o",
                                     "model_returned": "gpt-3.5-turbo"}])
        assert _wait(lambda: "model-substitution" in {f["rule_id"] for f in findings(store_dir)}, 60)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
        log.close()
    out = (tmp_path / "follow.log").read_text()
    assert rc == 0, out
    assert "Traceback" not in out and "stopped:" in out
    fs = findings(store_dir)
    ids = [f["finding_id"] for f in fs]
    assert len(ids) == len(set(ids))  # service and manual runs never raised one finding twice
    # each alert the service sent is a finding of the store, sent once
    sent = [a["routerwatch"]["finding_id"] for a in _eve_alerts(eve)]
    assert len(sent) == len(set(sent)) and set(sent) <= set(ids)
    with Store.open(str(store_dir), read_only=True) as s:
        # one entry per exchange and per finding, none twice, and the chain verifies
        assert s.sql("SELECT count(*) FILTER (WHERE kind = 'exchange'), count(*) FILTER (WHERE kind = 'finding'), "
                     "count(*) = count(DISTINCT seq) FROM ledger").fetchone() == (7, len(ids), True)
        assert verify(s.con).ok


def test_follow_refuses_a_broken_rule_at_start(store_dir, tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "broken.sql").write_text("-- not a rule header\nSELECT 1")
    Store.open(str(store_dir)).close()
    out = subprocess.run([str(BIN / "routerwatch"), "analyze", "--follow", "--store", str(store_dir), "--rules-dir",
                          str(rules)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "broken.sql" in out.stderr and "Traceback" not in out.stderr


@contextlib.contextmanager
def _following(store_dir: Path, monkeypatch, **options) -> Iterator[tuple[list[float], list]]:
    """The analyzer service on `store_dir` in a thread (checking every 0.1 s); yields (the times each
    `engine.analyze` call started, [the service's stats once it stopped])."""
    import threading

    from analyzer import engine
    from analyzer.service import FollowOptions, follow

    Store.open(str(store_dir)).close()
    calls: list[float] = []
    analyze = engine.analyze

    def counted(*args, **kwargs):
        calls.append(time.monotonic())
        return analyze(*args, **kwargs)

    monkeypatch.setattr(engine, "analyze", counted)
    stop = threading.Event()
    done: list = []
    opts = FollowOptions(store=str(store_dir), interval=0.1, quiet=True, **options)
    thread = threading.Thread(target=lambda: done.append(follow(opts, stop)))
    thread.start()
    try:
        yield calls, done
    finally:
        stop.set()
        thread.join(120)


def test_follow_leaves_commits_no_rule_reads_without_a_run(store_dir, monkeypatch):
    """The collector commits its statistics every few seconds and the service its own runs: neither
    is anything a rule reads, so the service skips them on the catalog's record of the commit (one
    read, ~5 ms) instead of the run's watermark query (~150 ms of CPU each). A commit to a table the
    rules read still gets its run."""
    with _following(store_dir, monkeypatch) as (calls, done):
        assert _wait(lambda: len(calls) >= 1, 60)  # the first run
        time.sleep(1.0)  # its own analyzer_runs commit is skipped
        before = len(calls)
        for i in range(5):
            with Store.open(str(store_dir)) as store, BatchWriter(store) as w:
                w.add("collector_stats", [{"ts": t(i), "host_id": "agent-1", "events": i}])
            time.sleep(0.3)
        assert len(calls) == before, len(calls) - before
        with Store.open(str(store_dir)) as store, BatchWriter(store) as w:
            w.add("processes", [{"ts": t(9), "host_id": "agent-1", "pid": 4242, "exe": "/usr/bin/curl"}])
        assert _wait(lambda: len(calls) > before, 30)
    assert done and done[0].failures == 0 and done[0].skipped >= 5, done


def test_follow_cuts_its_cpu_rest_short_for_new_exchanges_once_in_two(store_dir, monkeypatch):
    """After a run the service rests as long as the run used CPU (here every run seems to use 600 s);
    a commit of rows a person waits on (an agent's exchange) starts a run at once, other commits wait
    the rest out, and the rest after a run that skipped its own is never cut short (the service
    stays under two thirds of a CPU however fast exchanges come)."""
    import itertools

    from analyzer import service

    clock = itertools.count(step=600.0)
    monkeypatch.setattr(service.time, "process_time", lambda: next(clock))

    def commit(table: str, row: dict) -> None:
        with Store.open(str(store_dir)) as store, BatchWriter(store) as w:
            w.add(table, [row])

    def exchange(i: int) -> dict:
        return {"ts": t(i), "exchange_id": f"U{i}", "host_id": "agent-1", "api": "openai.chat", "host": "127.0.0.1:9101"}

    with _following(store_dir, monkeypatch) as (calls, done):
        commit("processes", {"ts": t(1), "host_id": "agent-1", "pid": 4242, "exe": "/usr/bin/curl"})
        assert _wait(lambda: len(calls) >= 1, 60)  # the first run, then 600 s of rest
        time.sleep(1.0)
        n = len(calls)
        commit("processes", {"ts": t(2), "host_id": "agent-1", "pid": 4243, "exe": "/usr/bin/curl"})
        time.sleep(2.0)
        assert len(calls) == n  # a flow or process waits the rest out
        commit("llm_exchanges", exchange(3))
        assert _wait(lambda: len(calls) > n, 30)  # an exchange does not
        n = len(calls)
        commit("llm_exchanges", exchange(4))
        time.sleep(2.0)
        assert len(calls) == n  # but the run that skipped its rest is followed by a whole one
    assert done and done[0].failures == 0, done
    with Store.open(str(store_dir), read_only=True) as s:
        # the last run (as the service stops) covered every commit
        assert s.sql("SELECT count(*) FROM llm_exchanges").fetchone()[0] == 2
        assert json.loads(s.sql("SELECT new_rows FROM analyzer_runs ORDER BY ts DESC LIMIT 1").fetchone()[0])["llm_exchanges"] == 1


def test_follow_compacts_early_when_data_files_pile_up(store_dir, monkeypatch):
    """Every query reads the file list of each table it scans, so the service compacts as soon as
    the files pass `COMPACT_AT_FILES`, not only once its (hourly) period is over.

    The files pile up before the service starts, and the test waits on the flows table's own files:
    the service's runs add files of their own, so the store's total after a compaction depends on
    when the compaction fell between the commits (a CI trial of an earlier form waited in vain for
    the total to drop below the limit after the compaction had run)."""
    from analyzer import service

    monkeypatch.setattr(service, "COMPACT_AT_FILES", 6)
    monkeypatch.setattr(service, "FILE_CHECK_EVERY_S", 0.2)
    for i in range(8):  # more rows than DuckLake inlines into its catalog: a Parquet file each
        with Store.open(str(store_dir)) as store, BatchWriter(store) as w:
            w.add("flows", [{"flow_uid": f"P{i}-{k}", "host_id": "agent-1", "ts_start": t(i), "proto": "tcp"}
                            for k in range(20)])

    def flow_files() -> int:
        with Store.open(str(store_dir), read_only=True) as s:
            return len(s.sql("SELECT * FROM ducklake_list_files('lake', 'flows')").fetchall())

    assert flow_files() == 8
    with _following(store_dir, monkeypatch, compact_every=3600) as (_calls, done):
        assert _wait(lambda: flow_files() == 1, 60), flow_files()
    assert done and done[0].compactions == 1 and done[0].failures == 0, done
    with Store.open(str(store_dir), read_only=True) as s:
        assert s.sql("SELECT count(*) FROM flows").fetchone()[0] == 160


def test_follow_does_not_compact_again_while_the_files_stay(store_dir, monkeypatch):
    """A big store's files may already be as large as DuckLake makes them: the early compaction counts
    the files beyond what the last one left, so a store that stays at many files is not compacted
    at every look."""
    from analyzer import service

    monkeypatch.setattr(service, "COMPACT_AT_FILES", 6)
    monkeypatch.setattr(service, "FILE_CHECK_EVERY_S", 0.1)
    monkeypatch.setattr(Store, "data_file_count", lambda self: 1000)
    with _following(store_dir, monkeypatch, compact_every=3600) as (_calls, done):
        time.sleep(3.0)
    assert done and done[0].compactions == 1 and done[0].failures == 0, done
