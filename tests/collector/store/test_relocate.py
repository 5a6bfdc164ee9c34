"""A local store opens where it is: copied (`cp -a`), moved or restored elsewhere, for reads and writes,
and a copy's writes never touch the original; stores made before the data path was resolved on open
(their catalog records an absolute data path somewhere else) open too."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
from pathlib import Path

import duckdb
import pytest

from collector.store import BatchWriter, Store
from collector.store.extensions import OFFLINE_CONFIG, load
from tests.conftest import CORPUS, run_cli

TLS = CORPUS / "tls12-illustrated.pcap"
TLS_KEYS = CORPUS / "tls12-illustrated.keys"
DNS = CORPUS / "dns-tcp-multirequest.pcap"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the shared corpus is not beside this checkout ({CORPUS})")


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under `root` -> (mode, sha256): any write, chmod or new file shows."""
    return {str(p.relative_to(root)): (p.stat().st_mode, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def count(store: Path, sql: str) -> int:
    r = run_cli("sql", "--store", str(store), "--format", "csv", sql)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.splitlines()[-1])


def recorded_data_path(store: Path) -> str:
    con = sqlite3.connect(f"file:{store / 'catalog.sqlite'}?mode=ro", uri=True)
    try:
        return con.execute("SELECT value FROM ducklake_metadata WHERE key = 'data_path'").fetchone()[0]
    finally:
        con.close()


def data_files(store: Path) -> list[str]:
    with Store.open(str(store), read_only=True) as s:
        return [r[0] for t in s.tables() for r in s.sql(f"SELECT data_file FROM ducklake_list_files('lake', '{t}')").fetchall()]


@needs_corpus
def test_copied_store_reads_and_writes_apart_from_the_original(tmp_path):
    original, copy = tmp_path / "s", tmp_path / "s2"
    r = run_cli("ingest", "--store", str(original), str(TLS), "--keylog", str(TLS_KEYS))
    assert r.returncode == 0, r.stderr
    assert subprocess.run(["cp", "-a", str(original), str(copy)]).returncode == 0
    before = snapshot(original)

    assert count(copy, "SELECT count(*) FROM flows") == 1  # the plain DuckLake attach refused this
    r = run_cli("ingest", "--store", str(copy), str(DNS))
    assert r.returncode == 0, r.stderr
    r = run_cli("analyze", "--store", str(copy))
    assert r.returncode == 0, r.stderr
    r = run_cli("store", "compact", "--store", str(copy))  # writes Parquet files, deletes none yet
    assert r.returncode == 0, r.stderr
    assert count(copy, "SELECT count(*) FROM flows") == 2
    assert count(copy, "SELECT count(*) FROM dns") == 40
    assert count(copy, "SELECT count(*) FROM analyzer_runs") == 1
    files = data_files(copy)
    assert files and all(f.startswith(f"{copy}/data/") for f in files), files
    assert all(Path(f).is_file() for f in files)

    assert snapshot(original) == before  # not one byte, mode or file of the original changed
    assert count(original, "SELECT count(*) FROM flows") == 1
    assert count(original, "SELECT count(*) FROM dns") == 0
    assert recorded_data_path(copy) == f"{original}/data/"  # resolved on open, not rewritten


def test_moved_store_opens_for_writes_in_process(tmp_path):
    first, moved = tmp_path / "a", tmp_path / "b" / "restored"
    with Store.open(str(first)) as s, BatchWriter(s) as w:
        w.add("dns", [{"host_id": "h", "query": f"q{i}"} for i in range(5)])
    moved.parent.mkdir()
    shutil.move(first, moved)
    with Store.open(str(moved)) as s:
        with BatchWriter(s) as w:
            w.add("dns", [{"host_id": "h", "query": "after"}])
        s.sql("CALL ducklake_flush_inlined_data('lake')")
        assert s.sql("SELECT count(*) FROM dns").fetchone()[0] == 6
    assert not first.exists()
    files = data_files(moved)
    assert files and all(f.startswith(f"{moved}/data/") and Path(f).is_file() for f in files)


@needs_corpus
def test_store_recording_another_absolute_data_path_opens(tmp_path):
    """A store of the previous code restored on another machine: its catalog names a data path that
    does not exist here. DuckLake alone refuses it; routerwatch reads and writes it."""
    store = tmp_path / "restored"
    r = run_cli("ingest", "--store", str(store), str(DNS))
    assert r.returncode == 0, r.stderr
    r = run_cli("store", "compact", "--store", str(store))
    assert r.returncode == 0, r.stderr
    con = sqlite3.connect(store / "catalog.sqlite")
    con.execute("UPDATE ducklake_metadata SET value = '/var/lib/elsewhere/data/' WHERE key = 'data_path'")
    con.commit()
    con.close()

    plain = duckdb.connect(config=dict(OFFLINE_CONFIG))
    load(plain, "ducklake", "sqlite_scanner")
    with pytest.raises(duckdb.Error, match="does not match existing data path"):
        plain.execute(f"ATTACH 'ducklake:sqlite:{store}/catalog.sqlite' AS lake (DATA_PATH '{store}/data/')")
    plain.close()

    assert count(store, "SELECT count(*) FROM dns") == 40
    r = run_cli("ingest", "--store", str(store), str(TLS))
    assert r.returncode == 0, r.stderr
    assert count(store, "SELECT count(*) FROM flows") == 2
    r = run_cli("store", "compact", "--store", str(store))
    assert r.returncode == 0, r.stderr
    assert count(store, "SELECT count(*) FROM flows") == 2
    assert not Path("/var/lib/elsewhere").exists()
    files = data_files(store)
    assert files and all(f.startswith(f"{store}/data/") and Path(f).is_file() for f in files)
