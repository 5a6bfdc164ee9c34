"""`routerwatch sql` through the real console script, on a real store."""

from __future__ import annotations

import datetime as dt
import json

from collector.store import BatchWriter, Store
from tests.conftest import run_cli


def _seed(store_dir):
    with Store.open(str(store_dir)) as s, BatchWriter(s) as w:
        w.add("flows", [{"flow_uid": "F1", "host_id": "h", "proto": "tcp", "dst_ip": "127.0.0.1", "dst_port": 443,
                         "ts_start": dt.datetime(2026, 1, 1)}])
        w.add("dns", [{"query": "api.example.com", "answers": ["127.0.0.1", "::1"], "host_id": "h"}])


def test_formats(store_dir):
    _seed(store_dir)
    out = run_cli("sql", "--store", str(store_dir), "--format", "json", "SELECT flow_uid, ts_start, dst_port FROM flows")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"flow_uid": "F1", "ts_start": "2026-01-01T00:00:00", "dst_port": 443}]
    out = run_cli("sql", "--store", str(store_dir), "--format", "json", "SELECT answers FROM dns")
    assert json.loads(out.stdout) == [{"answers": ["127.0.0.1", "::1"]}]
    out = run_cli("sql", "--store", str(store_dir), "--format", "csv", "SELECT flow_uid, dst_port FROM flows")
    assert out.stdout.splitlines() == ["flow_uid,dst_port", "F1,443"]
    out = run_cli("sql", "--store", str(store_dir), "SELECT flow_uid FROM flows")
    assert "F1" in out.stdout and "(1 row)" in out.stdout


def test_env_store_and_stdin_script(store_dir):
    _seed(store_dir)
    out = run_cli("sql", env={"ROUTERWATCH_STORE": str(store_dir)}, input="SELECT 1 AS a;\nSELECT count(*) AS n\nFROM flows;\n")
    assert out.returncode == 0, out.stderr
    assert "n" in out.stdout and "1" in out.stdout


def test_writes_refused_and_errors_are_one_line(store_dir, tmp_path):
    _seed(store_dir)
    out = run_cli("sql", "--store", str(store_dir), "DELETE FROM flows")
    assert out.returncode == 2 and "read-only" in out.stderr
    out = run_cli("sql", "--store", str(store_dir), "SELECT * FROM nope")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    out = run_cli("sql", "--store", str(tmp_path / "missing"), "SELECT 1")
    assert out.returncode == 2 and "no store" in out.stderr
    assert not (tmp_path / "missing").exists()
