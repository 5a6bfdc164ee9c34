"""The fleet's backends themselves, before any routerwatch code: DuckDB's httpfs reads and writes
Parquet on the local S3-compatible server (path-style URLs, endpoint override, no TLS), and DuckLake
keeps its catalog in the real PostgreSQL with its data on that object store."""

from __future__ import annotations

import duckdb
import pytest

from collector.store import extensions
from tests.support.fleet import PostgresServer, S3Server, needs_postgres

pytestmark = needs_postgres


def _con(*names: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:", config=dict(extensions.OFFLINE_CONFIG))
    extensions.load(con, *names)
    return con


def _secret(con: duckdb.DuckDBPyConnection, s3: S3Server) -> None:
    con.execute(f"CREATE SECRET rw_s3 (TYPE s3, KEY_ID '{s3.key_id}', SECRET '{s3.secret}', REGION '{s3.REGION}', "
                f"ENDPOINT '{s3.endpoint}', URL_STYLE 'path', USE_SSL false)")


def test_httpfs_writes_and_reads_parquet_path_style(s3: S3Server):
    con = _con("httpfs")
    _secret(con, s3)
    url = f"s3://{s3.bucket}/probe/t.parquet"
    con.execute(f"COPY (SELECT range AS i, 'h' || range AS host_id FROM range(1000)) TO '{url}' (FORMAT parquet)")
    assert "probe/t.parquet" in s3.keys("probe/")
    assert con.execute(f"SELECT count(*), sum(i), max(host_id) FROM '{url}'").fetchone() == (1000, 499500, "h999")
    # a wrong secret is refused by the server, not silently ignored
    bad = _con("httpfs")
    bad.execute(f"CREATE SECRET rw_s3 (TYPE s3, KEY_ID 'x', SECRET 'y', REGION 'us-east-1', ENDPOINT '{s3.endpoint}', "
                f"URL_STYLE 'path', USE_SSL false)")
    with pytest.raises(duckdb.Error):
        bad.execute(f"COPY (SELECT 1 AS i) TO 's3://no-such-bucket-{s3.port}/x.parquet' (FORMAT parquet)")


def test_ducklake_catalog_in_postgres_data_on_s3(postgres: PostgresServer, s3: S3Server, monkeypatch):
    monkeypatch.setenv("PGPASSFILE", str(postgres.pgpass))
    spec = postgres.spec()
    data = f"s3://{s3.bucket}/backend-test/"
    writers = []
    for host in ("a", "b"):  # two writers on one catalog, each committing its own rows
        con = _con("ducklake", "postgres_scanner", "httpfs")
        _secret(con, s3)
        con.execute(f"ATTACH '{spec}' AS lake (DATA_PATH '{data}')")
        con.execute("CREATE TABLE IF NOT EXISTS lake.t (host_id VARCHAR, i INTEGER)")
        writers.append((host, con))
    for host, con in writers:
        con.execute(f"INSERT INTO lake.t SELECT '{host}', range FROM range(500)")
    reader = _con("ducklake", "postgres_scanner", "httpfs")
    _secret(reader, s3)
    reader.execute(f"ATTACH '{spec}' AS lake (DATA_PATH '{data}', READ_ONLY)")
    assert reader.execute("SELECT host_id, count(*) FROM lake.t GROUP BY 1 ORDER BY 1").fetchall() == [("a", 500), ("b", 500)]
    assert any(k.endswith(".parquet") for k in s3.keys("backend-test/"))
    # the catalog really is in PostgreSQL
    assert "ducklake_snapshot" in postgres.psql("SELECT tablename FROM pg_tables", db="routerwatch")
