"""Compaction in a child process: a native crash inside DuckDB costs one attempt, never the command,
the analyzer service or the maintainer (collector/store/maintenance.py `compact_isolated`)."""

from __future__ import annotations

import datetime as dt

import pytest

from collector import cli
from collector.store import BatchWriter, Store, StoreError, maintenance

NOW = dt.datetime(2026, 1, 1, 12, 0, 0)


def _store_with_small_files(store_dir, batches: int = 4) -> None:
    with Store.open(str(store_dir)) as store:
        for b in range(batches):
            with BatchWriter(store) as w:
                w.add("flows", [{"flow_uid": f"F{b}-{i}", "host_id": "h1", "ts_start": NOW, "proto": "tcp"}
                                for i in range(500)])


def _crashes(monkeypatch, tmp_path, n: int) -> None:
    counter = tmp_path / "crashes"
    counter.write_text(str(n))
    monkeypatch.setenv("RW_TEST_CRASHES", str(counter))
    monkeypatch.setattr(maintenance, "CHILD_MODULE", "tests.collector.store.crashing_compactor")


def _flows(store_dir) -> int:
    with Store.open(str(store_dir), read_only=True) as ro:
        return ro.sql("SELECT count(*) FROM flows").fetchone()[0]


def test_compacts_in_a_child(store_dir):
    _store_with_small_files(store_dir)
    res = maintenance.compact_isolated(str(store_dir), expire_older_than_hours=0)
    assert res["files_after"] < res["files_before"]
    assert _flows(store_dir) == 2000


def test_one_native_crash_costs_one_attempt(store_dir, tmp_path, monkeypatch):
    _store_with_small_files(store_dir)
    _crashes(monkeypatch, tmp_path, 1)
    said: list[str] = []
    res = maintenance.compact_isolated(str(store_dir), expire_older_than_hours=0, warn=said.append)
    assert res["files_after"] < res["files_before"]
    assert len(said) == 1 and "crashed inside DuckDB (SIGABRT)" in said[0] and "starting over" in said[0]
    assert _flows(store_dir) == 2000


def test_repeated_crashes_end_in_one_line_and_leave_the_store_whole(store_dir, tmp_path, monkeypatch):
    _store_with_small_files(store_dir)
    _crashes(monkeypatch, tmp_path, 2)
    with pytest.raises(StoreError, match=r"crashed inside DuckDB \(SIGABRT\), 2 times; the store is consistent"):
        maintenance.compact_isolated(str(store_dir), warn=lambda _line: None)
    assert _flows(store_dir) == 2000


def test_an_ordinary_error_is_one_line_and_not_retried(tmp_path, monkeypatch):
    monkeypatch.delenv("ROUTERWATCH_DATA_PATH", raising=False)
    said: list[str] = []
    with pytest.raises(StoreError, match="is a catalog URI: set ROUTERWATCH_DATA_PATH"):
        maintenance.compact_isolated("ducklake:postgres:dbname=nothing", warn=said.append)
    assert said == []


def test_cli_survives_a_crash(store_dir, tmp_path, monkeypatch, capsys):
    """`routerwatch store compact` (in-process, so the child can be swapped): one crash, one warning
    line on stderr, the compaction done, exit status 0."""
    _store_with_small_files(store_dir)
    _crashes(monkeypatch, tmp_path, 1)
    assert cli.main(["store", "compact", "--store", str(store_dir)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("compacted: ") and "routerwatch: compaction crashed inside DuckDB (SIGABRT)" in err
    assert "Traceback" not in err
