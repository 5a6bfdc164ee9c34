"""The store: DuckLake on a SQLite catalog, offline extensions, migrations, batching, concurrency."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
import time

import duckdb
import pytest

from collector.store import BatchWriter, Store, StoreError
from collector.store import schema as schema_mod
from collector.store.maintenance import compact_isolated, export_duckdb, export_parquet
from collector.store.migrate import pending_changes

NOW = dt.datetime(2026, 1, 1, 12, 0, 0)


def _flows(n: int, start: int = 0) -> list[dict]:
    return [
        {"flow_uid": f"F{i}", "host_id": "h1", "ts_start": NOW, "proto": "tcp", "src_ip": "127.0.0.1",
         "src_port": 40000 + i, "dst_ip": "127.0.0.2", "dst_port": 443, "bytes_out": i, "bytes_in": 2 * i}
        for i in range(start, start + n)
    ]


def test_create_layout_permissions_and_schema(store_dir):
    with Store.open(str(store_dir)) as store:
        assert set(schema_mod.TABLES) <= set(store.tables())
        assert "schema_migrations" in store.tables()
        assert pending_changes(store) == []
        key = store.secret_key()
        assert len(key) == 32
    assert stat.S_IMODE(store_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((store_dir / "secret.key").stat().st_mode) == 0o600
    assert (store_dir / "catalog.sqlite").exists()


def test_open_sets_duckdbs_worker_threads_when_asked(store_dir):
    """`threads` sizes this connection's DuckDB pool (the ingest asks for one); the default is DuckDB's."""
    with Store.open(str(store_dir), threads=1) as st:
        assert st.sql("SELECT current_setting('threads')").fetchone()[0] == 1
    with Store.open(str(store_dir)) as st:
        assert st.sql("SELECT current_setting('threads')").fetchone()[0] == duckdb.connect().execute(
            "SELECT current_setting('threads')").fetchone()[0]


def test_migration_adds_columns_and_records_it(store_dir, monkeypatch):
    Store.open(str(store_dir)).close()
    monkeypatch.setitem(schema_mod.TABLES, "flows", schema_mod.TABLES["flows"] + [("extra_col", "VARCHAR")])
    monkeypatch.setitem(schema_mod.TABLES, "new_table", [("ts", "TIMESTAMP"), ("host_id", "VARCHAR")])
    with Store.open(str(store_dir)) as store:
        cols = [r[0] for r in store.sql("SELECT column_name FROM information_schema.columns WHERE table_name='flows'").fetchall()]
        assert "extra_col" in cols
        assert "new_table" in store.tables()
        versions = store.sql("SELECT version, description FROM schema_migrations ORDER BY version").fetchall()
        assert [v for v, _ in versions] == [1, 2]
        assert "extra_col" not in versions[0][1] and "new_table" in versions[1][1]


def test_batch_writer_commits_all_tables_together(store_dir):
    with Store.open(str(store_dir)) as store:
        with BatchWriter(store) as w:
            w.add("flows", _flows(1000))
            w.add("dns", [{"ts": NOW, "host_id": "h1", "query": "example.com", "answers": ["1.2.3.4"]}])
            assert store.sql("SELECT count(*) FROM flows").fetchone()[0] == 0
        assert store.sql("SELECT count(*), sum(bytes_in) FROM flows").fetchone() == (1000, 999000)
        assert store.sql("SELECT answers FROM dns").fetchone()[0] == ["1.2.3.4"]


class _HeldCommit(BatchWriter):
    """A real BatchWriter whose commits wait for `release` first (a commit that takes as long as the test wants)."""

    def __init__(self, *a, **kw):
        self.in_commit = threading.Event()
        self.release = threading.Event()
        self.fail_next = False
        super().__init__(*a, **kw)

    def _commit(self, pending, lock_timeout=None):
        self.in_commit.set()
        assert self.release.wait(30)
        if self.fail_next:
            self.fail_next = False
            raise StoreError("simulated commit failure")
        super()._commit(pending, lock_timeout)


def test_batch_writer_add_never_waits_for_a_commit(store_dir):
    """add() goes on while a commit is in progress (max_rows reached included); order and one transaction per flush kept."""
    with Store.open(str(store_dir)) as store:
        w = _HeldCommit(store, max_rows=500, max_delay=60, background=True)
        w.add("flows", _flows(500))  # max_rows: the writer thread starts committing these
        assert w.in_commit.wait(10)
        t0 = time.monotonic()
        for k in range(6):  # 3x max_rows while the commit is held (under hard_rows), each add also "due"
            w.add("flows", _flows(250, start=500 + 250 * k))
        assert time.monotonic() - t0 < 2.0
        assert w.pending_rows() == 1500
        assert store.sql("SELECT count(*) FROM flows").fetchone()[0] == 0  # the first commit is still open
        w.release.set()
        w.close()
        assert w.flushes >= 2 and w.rows_written["flows"] == 2000
        assert store.sql("SELECT count(*), count(DISTINCT flow_uid) FROM flows").fetchone() == (2000, 2000)


def test_batch_writer_failed_commit_keeps_rows_in_order(store_dir):
    """A failed commit puts its batch back ahead of rows added meanwhile; the next flush writes all of them."""
    with Store.open(str(store_dir)) as store:
        w = _HeldCommit(store, max_rows=10**9, max_delay=60)
        w.release.set()
        w.fail_next = True
        w.add("flows", _flows(100))
        with pytest.raises(StoreError):
            w.flush()
        assert w.pending_rows() == 100
        w.add("flows", _flows(50, start=100))
        assert w._pending.tables["flows"][0].column("flow_uid")[0].as_py() == "F0"
        assert w.flush() == 150
        assert store.sql("SELECT count(*) FROM flows").fetchone()[0] == 150


def test_read_only_refuses_writes_and_missing_store(store_dir, tmp_path):
    with pytest.raises(StoreError, match="no store"):
        Store.open(str(tmp_path / "nothing"), read_only=True)
    Store.open(str(store_dir)).close()
    with Store.open(str(store_dir), read_only=True) as ro:
        with pytest.raises(duckdb.Error):
            ro.sql("INSERT INTO dns (query) VALUES ('x')")


def test_compact_and_exports(store_dir, tmp_path):
    with Store.open(str(store_dir)) as store:
        for i in range(5):
            with BatchWriter(store) as w:
                w.add("flows", _flows(1000, start=i * 1000))
        res = compact_isolated(str(store_dir), expire_older_than_hours=0)
        assert res["files_after"] < res["files_before"]
        assert store.sql("SELECT count(*) FROM flows").fetchone()[0] == 5000
    with Store.open(str(store_dir), read_only=True) as ro:
        export_duckdb(ro, tmp_path / "one.duckdb")
        export_parquet(ro, tmp_path / "pq")
    assert duckdb.connect(str(tmp_path / "one.duckdb")).execute("SELECT count(*) FROM flows").fetchone()[0] == 5000
    assert (tmp_path / "pq" / "flows.parquet").exists()


def test_writer_and_reader_processes_concurrently(store_dir):
    """A second process writes while this one reads read-only: no errors, counts only grow."""
    Store.open(str(store_dir)).close()
    code = textwrap.dedent(f"""
        import datetime as dt
        from collector.store import Store, BatchWriter
        with Store.open({str(store_dir)!r}) as s:
            for b in range(15):
                with BatchWriter(s) as w:
                    w.add("flows", [{{"flow_uid": f"{{b}}-{{i}}", "host_id": "h2", "proto": "udp"}} for i in range(200)])
    """)
    proc = subprocess.Popen([sys.executable, "-c", code])
    seen = []
    while proc.poll() is None:
        with Store.open(str(store_dir), read_only=True) as ro:
            seen.append(ro.sql("SELECT count(*) FROM flows").fetchone()[0])
    assert proc.returncode == 0
    with Store.open(str(store_dir), read_only=True) as ro:
        seen.append(ro.sql("SELECT count(*) FROM flows").fetchone()[0])
    assert seen == sorted(seen) and seen[-1] == 3000


@pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux unshare is not installed")
def test_no_network_needed(store_dir):
    """The store opens and writes inside a network namespace with no interfaces up: nothing downloads."""
    if os.geteuid() != 0:
        pytest.skip("creating a network namespace needs root (CI runs as root)")
    code = f"from collector.store import Store; s = Store.open({str(store_dir)!r}); print(len(s.tables()))"
    out = subprocess.run(["unshare", "-n", sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= len(schema_mod.TABLES)


def test_inserted_since_names_the_tables_a_commit_inserted_into(store_dir):
    """Store.inserted_since: the tables the commits after a snapshot inserted into; None when one of
    them did anything else (here a delete), so a caller falls back to looking at the rows."""
    with Store.open(str(store_dir)) as store:
        first = store.snapshot_id()
        with BatchWriter(store) as w:
            w.add("collector_stats", [{"ts": NOW, "host_id": "agent-1", "events": 1}])
        middle = store.snapshot_id()
        with BatchWriter(store) as w:
            w.add("processes", [{"ts": NOW, "host_id": "agent-1", "pid": 7, "exe": "/bin/sh"}])
        assert store.inserted_since(first) == {"collector_stats", "processes"}
        assert store.inserted_since(middle) == {"processes"}
        assert store.inserted_since(store.snapshot_id()) == set()
        store.con.execute("DELETE FROM collector_stats")
        assert store.inserted_since(middle) is None


def test_inserted_since_reads_the_table_names_again_after_a_rename(store_dir):
    """A commit that is not an insert (here a table renamed) makes inserted_since say None and forget
    the table names it knew: a later insert is named by the table's new name, never a stale one."""
    with Store.open(str(store_dir)) as store:
        store.con.execute("CREATE TABLE scratch_a (x INTEGER)")
        made = store.snapshot_id()
        store.con.execute("INSERT INTO scratch_a VALUES (1)")
        assert store.inserted_since(made) == {"scratch_a"}  # the names are cached now
        filled = store.snapshot_id()
        store.con.execute("ALTER TABLE scratch_a RENAME TO scratch_b")
        assert store.inserted_since(filled) is None
        renamed = store.snapshot_id()
        store.con.execute("INSERT INTO scratch_b VALUES (2)")
        assert store.inserted_since(renamed) == {"scratch_b"}
