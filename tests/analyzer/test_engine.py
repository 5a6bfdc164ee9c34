"""analyzer/engine.py: how a run sizes DuckDB's threads. A run over a few new rows is a few dozen small
queries, where worker threads cost more than they give; a big one keeps every thread; the connection
gets its own thread count back after either."""

from __future__ import annotations

import pytest

from analyzer import engine
from analyzer.rules import load_rules
from collector.catalog import load_catalog
from collector.store import Store
from tests.analyzer.test_analyze_cli import seed


def _threads_seen_by_rules(store_dir, monkeypatch) -> tuple[set[int], int]:
    """(the thread counts the rules ran with, the connection's count after the run)."""
    seen: set[int] = set()
    run_rule = engine.run_rule

    def spying(con, rule):
        seen.add(int(con.execute("SELECT current_setting('threads')").fetchone()[0]))
        return run_rule(con, rule)

    monkeypatch.setattr(engine, "run_rule", spying)
    with Store.open(str(store_dir), threads=2) as store:
        res = engine.analyze(store, load_catalog(None), load_rules())
        after = int(store.con.execute("SELECT current_setting('threads')").fetchone()[0])
    assert res is not None and res.new_rows["llm_exchanges"] == 6
    return seen, after


def test_a_small_run_uses_one_thread_and_gives_the_connection_its_threads_back(store_dir, monkeypatch):
    seed(store_dir)
    seen, after = _threads_seen_by_rules(store_dir, monkeypatch)
    assert seen == {1} and after == 2


def test_a_run_over_more_new_rows_than_the_limit_keeps_every_thread(store_dir, monkeypatch):
    seed(store_dir)
    monkeypatch.setattr(engine, "ONE_THREAD_ROWS", 0)
    seen, after = _threads_seen_by_rules(store_dir, monkeypatch)
    assert seen == {2} and after == 2


def test_a_failing_run_gives_the_connection_its_threads_back(store_dir, monkeypatch):
    seed(store_dir)

    def broken(con, rule):
        raise engine.AnalyzeError("rule broke")

    monkeypatch.setattr(engine, "run_rule", broken)
    with Store.open(str(store_dir), threads=2) as store:
        with pytest.raises(engine.AnalyzeError):
            engine.analyze(store, load_catalog(None), load_rules())
        assert int(store.con.execute("SELECT current_setting('threads')").fetchone()[0]) == 2
