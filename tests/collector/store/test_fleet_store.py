"""A fleet store for real: the DuckLake catalog in PostgreSQL (password from .pgpass), Parquet data on
the S3-compatible server (credentials through DuckDB's credential chain), opened by routerwatch's
Store; the spooling writer across PostgreSQL and object-storage outages, restarts and unknown
commit outcomes."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import time
from pathlib import Path

import pyarrow as pa
import pytest

from collector.store import Store, StoreError
from collector.store.remote import S3Settings, display_spec, has_password
from collector.store.spool import Batch, SpoolingWriter
from tests.conftest import run_cli
from tests.support.fleet import PostgresServer, S3Server, needs_postgres

pytestmark = needs_postgres


@pytest.fixture
def fleet_env(postgres: PostgresServer, s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A fresh database and prefix per test, as a fleet host's environment would name them."""
    db = f"t{secrets.token_hex(4)}"
    postgres.psql(f"CREATE DATABASE {db} OWNER routerwatch")
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:{postgres.port}:{db}:routerwatch:{postgres.password}\n")
    pgpass.chmod(0o600)
    key = tmp_path / "secret.key"
    key.write_bytes(os.urandom(32))
    env = {**s3.env(), "ROUTERWATCH_DATA_PATH": f"s3://{s3.bucket}/{db}/", "PGPASSFILE": str(pgpass),
           "ROUTERWATCH_SECRET_FILE": str(key), "ROUTERWATCH_S3_TIMEOUT_S": "2",
           "ROUTERWATCH_STORE": f"ducklake:postgres:dbname={db} host=127.0.0.1 port={postgres.port} user=routerwatch"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def rows(n: int, host: str = "h1", start: int = 0) -> list[dict]:
    return [{"ts": None, "host_id": host, "query": f"q{start + i}.example", "rcode": "NOERROR"} for i in range(n)]


def count(sql: str) -> int:
    with Store.open(read_only=True) as s:
        return s.sql(sql).fetchone()[0]


def wait(pred, timeout: float = 60, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(step)
    raise AssertionError("condition not met in time")


def test_store_opens_migrates_writes_and_reads(fleet_env, s3: S3Server, postgres: PostgresServer):
    with Store.open() as s:
        assert s.location.root is None and "flows" in s.tables()
        s.sql("INSERT INTO dns (host_id, query) SELECT 'h1', 'x' || range FROM range(3000)")
    assert count("SELECT count(*) FROM dns") == 3000
    prefix = fleet_env["ROUTERWATCH_DATA_PATH"].split("/", 3)[3]
    assert any(k.endswith(".parquet") for k in s3.keys(prefix))
    r = run_cli("store", "info")
    assert r.returncode == 0 and "dns" in r.stdout and "3,000" in r.stdout, r.stderr


def test_credentials_come_only_from_the_standard_places(fleet_env, monkeypatch, tmp_path, s3: S3Server):
    # the shared credentials file + profile instead of the environment
    creds = tmp_path / "aws-credentials"
    creds.write_text(f"[fleet]\naws_access_key_id = {s3.key_id}\naws_secret_access_key = {s3.secret}\n")
    creds.chmod(0o600)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_PROFILE", "fleet")
    monkeypatch.setenv("ROUTERWATCH_S3_CREDENTIAL_CHAIN", "env;config")  # nothing may try the instance role here
    with Store.open() as s:
        s.sql("INSERT INTO dns (host_id, query) VALUES ('h1', 'y')")
        shown = s.sql("SELECT secret_string FROM duckdb_secrets()").fetchone()[0]
    assert s3.secret not in shown and "secret=redacted" in shown
    # no credentials anywhere: one clear line, exit 2
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    r = run_cli("store", "info")
    assert r.returncode == 2 and "no S3 credentials" in r.stderr and "Traceback" not in r.stderr
    # a wrong PostgreSQL password: the message names the store, never a password
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    spec = os.environ["ROUTERWATCH_STORE"] + " password=hunter2-not-it"
    r = run_cli("store", "info", "--store", spec)
    assert r.returncode == 2 and "hunter2" not in r.stderr and "password=***" in r.stderr, r.stderr


def test_fleet_store_needs_the_shared_fingerprint_key(fleet_env, monkeypatch, tmp_path):
    monkeypatch.setenv("ROUTERWATCH_SECRET_FILE", str(tmp_path / "missing.key"))
    with Store.open() as s, pytest.raises(StoreError, match="fleet's fingerprint key"):
        s.secret_key()
    assert not (tmp_path / "missing.key").exists()


def test_display_spec_masks_passwords():
    assert display_spec("ducklake:postgres:dbname=rw password=s3cr3t host=db") == \
        "ducklake:postgres:dbname=rw password=*** host=db"
    assert display_spec("ducklake:postgres:password='a b c' host=db") == "ducklake:postgres:password=*** host=db"
    assert display_spec("ducklake:postgres:postgresql://rw:pw@db/rw") == "ducklake:postgres:postgresql://rw:***@db/rw"
    assert not has_password("ducklake:postgres:dbname=rw host=db service=fleet")


def test_s3_settings_for_compatible_servers(monkeypatch):
    monkeypatch.setenv("ROUTERWATCH_S3_ENDPOINT", "https://minio.internal:9000/")
    monkeypatch.delenv("ROUTERWATCH_S3_USE_SSL", raising=False)
    monkeypatch.delenv("ROUTERWATCH_S3_URL_STYLE", raising=False)
    s = S3Settings.from_env()
    assert (s.endpoint, s.use_ssl, s.url_style) == ("minio.internal:9000", True, "path")
    monkeypatch.setenv("ROUTERWATCH_S3_URL_STYLE", "sideways")
    with pytest.raises(StoreError, match="path or vhost"):
        S3Settings.from_env()


def _writer(tmp_path: Path, store: Store | None, **kw) -> SpoolingWriter:
    return SpoolingWriter(lambda: Store.open(), host_id="h1", store=store, spool_dir=tmp_path / "spool",
                          max_delay=0.3, **kw)


def test_postgres_restart_buffers_then_replays_exactly_once(fleet_env, postgres: PostgresServer, tmp_path):
    w = _writer(tmp_path, Store.open())
    try:
        w.add("dns", rows(100))
        w.flush()
        postgres.stop()
        for i in range(5):  # while it is away: spooled, memory stays small
            w.add("dns", rows(100, start=1000 * (i + 1)))
            w.flush()
        c = w.counters()
        assert c["store_up"] == 0 and c["store_buffered_rows"] == 500 and c["store_spilled_batches"] == 5
        postgres.start()
        wait(lambda: w.counters()["store_buffered_rows"] == 0 and w.store is not None)
        assert w.counters()["store_reconnects"] == 1 and w.counters()["store_unavailable_ms"] > 0
    finally:
        w.close()
    assert count("SELECT count(*) FROM dns") == 600
    assert count("SELECT count(DISTINCT query) FROM dns") == 600
    assert count("SELECT count(*) FROM store_batches") == 6


def test_object_store_paused_buffers_then_replays(fleet_env, s3: S3Server, tmp_path):
    w = _writer(tmp_path, Store.open())
    try:
        w.add("dns", rows(50))
        w.flush()
        s3.pause()
        try:
            t0 = time.monotonic()
            w.add("dns", rows(50, start=100))
            w.flush()  # the Parquet upload times out (ROUTERWATCH_S3_TIMEOUT_S=2): spooled, not stuck
            assert time.monotonic() - t0 < 30
            assert w.counters()["store_buffered_rows"] == 50
        finally:
            s3.resume()
        wait(lambda: w.counters()["store_buffered_rows"] == 0 and w.store is not None, timeout=90)
    finally:
        w.close()
    assert count("SELECT count(*) FROM dns") == 100
    assert count("SELECT count(DISTINCT query) FROM dns") == 100


def test_unknown_commit_outcome_is_not_duplicated(fleet_env, tmp_path):
    """The connection dies during COMMIT: the batch was stored, but the writer cannot know and spools it
    under the same id. The replay finds the id and skips it."""
    batch = Batch({"dns": [pa.Table.from_pylist(rows(10), schema=None)]})
    w = _writer(tmp_path, Store.open())
    try:
        with w._commit_lock:
            assert w._commit(Batch({"dns": [w_table(rows(10))]}, batch.id, batch.ts), replay=False)
        w._spill(Batch({"dns": [w_table(rows(10))]}, batch.id, batch.ts))
        wait(lambda: w.counters()["store_buffered_rows"] == 0)
        assert w.counters()["store_replay_skipped"] == 1
    finally:
        w.close()
    assert count("SELECT count(*) FROM dns") == 10


def w_table(r: list[dict]) -> pa.Table:
    from collector.store.schema import conform

    return conform("dns", r)


def test_spool_survives_a_restart_and_is_bounded(fleet_env, tmp_path):
    w = _writer(tmp_path, None)  # started while the store was away: everything spools
    w.add("dns", rows(30))
    w.close()
    with pytest.raises(StoreError, match="in use"):
        a = _writer(tmp_path, None)
        try:
            _writer(tmp_path, None)
        finally:
            a.close()
    w2 = _writer(tmp_path, Store.open())  # the next run replays it first
    wait(lambda: w2.counters()["store_buffered_rows"] == 0)
    w2.close()
    assert count("SELECT count(*) FROM dns") == 30
    # a spool too small for a batch: the rows are dropped and counted, never silently
    w3 = SpoolingWriter(lambda: Store.open(), host_id="h2", store=None, spool_dir=tmp_path / "tiny",
                        max_spool_bytes=100)
    w3.add("dns", rows(30, host="h2"))
    w3.flush()
    assert w3.counters()["store_dropped_rows"] == 30
    w3.close()


def test_one_maintainer_at_a_time_beside_a_writer(fleet_env):
    from collector.store import maintainer

    w = SpoolingWriter(lambda: Store.open(), host_id="h1", store=Store.open(), spool_dir=Path(os.environ["PGPASSFILE"]).parent / "sp",
                       max_delay=0.2)
    try:
        for i in range(8):  # small commits: small files
            w.add("dns", rows(200, start=1000 * i))
            w.flush()
        with Store.open() as a, Store.open() as b:
            first = maintainer.maintain_once(a, holder="central:1", period_s=60, expire_hours=24)
            second = maintainer.maintain_once(b, holder="other:2", period_s=60, expire_hours=24)
            assert first.ran and not second.ran and second.holder == "central:1"
            assert first.detail["files_after"] < first.detail["files_before"]
            w.add("dns", rows(200, start=99_000))  # a writer commits right after the merge
            w.flush()
            maintainer.release_lease(a, "central:1")
            assert maintainer.maintain_once(b, holder="other:2", period_s=60, expire_hours=24).ran
            r = run_cli("store", "maintain")  # the lease is other:2's now: the command skips its round
            assert r.returncode == 0 and "held by other:2; skipped" in r.stderr, r.stderr
            maintainer.release_lease(b, "other:2")
    finally:
        w.close()
    assert count("SELECT count(*) FROM dns") == 1800
    assert count("SELECT count(DISTINCT query) FROM dns") == 1800
    r = run_cli("store", "maintain")
    assert r.returncode == 0 and "compacted:" in r.stderr, r.stderr


def test_writers_starting_together_on_an_empty_catalog(fleet_env):
    """A fleet's first start: every collector opens (creates, migrates) the empty catalog at once."""
    import subprocess
    import sys

    # each process imports first and then waits for the start signal, so the opens really coincide
    # (started one after another, the first often created the catalog before the last had imported)
    code = ("import sys\n"
            "from collector.store import Store\n"
            "sys.stdin.read()\n"
            "with Store.open() as s:\n"
            "    s.sql(\"INSERT INTO dns (host_id, query) VALUES ('h', 'x')\")\n")
    n = 6
    procs = [subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(n)]
    time.sleep(3)  # imports done
    for p in procs:
        p.stdin.close()
    errs = [p.stderr.read() for p in procs]
    for p in procs:
        p.wait(timeout=180)
    assert [p.returncode for p in procs] == [0] * n, errs
    assert count("SELECT count(*) FROM dns") == n


def test_collector_started_while_postgres_is_down_records_then_catches_up(fleet_env, postgres: PostgresServer,
                                                                          tmp_path):
    """A host reboots while the central PostgreSQL restarts: `routerwatch collect` must not exit (the
    unit would restart it in a loop and record nothing): it records into its buffer from the start and
    the rows of that time reach the store once PostgreSQL answers."""
    import signal
    import subprocess

    from tests.conftest import BIN

    Store.open().close()  # the catalog exists (another host created it); now PostgreSQL goes away
    postgres.stop()
    log = tmp_path / "collect.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([str(BIN / "routerwatch"), "collect", "--no-ebpf", "--no-capture", "--host-id",
                                 "rebooted", "--interval", "1", "--max-delay", "0.5",
                                 "--buffer-dir", str(tmp_path / "buffer")],
                                stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **fleet_env})
    try:
        wait(lambda: "recording into the buffer until it answers" in log.read_text() or proc.poll() is not None,
             timeout=60)
        assert proc.poll() is None, log.read_text()
        time.sleep(3)  # stats rows every second, all spooled
        assert proc.poll() is None, log.read_text()
    finally:
        postgres.start()
    back = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # the store's timestamps are naive UTC
    try:
        def caught_up() -> bool:
            try:
                with Store.open(read_only=True) as s:
                    first = s.sql("SELECT min(ts) FROM collector_stats WHERE host_id = 'rebooted'").fetchone()[0]
            except StoreError:
                return False
            return first is not None and first < back  # a row recorded while PostgreSQL was away
        wait(caught_up, timeout=90)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
    text = log.read_text()
    assert rc == 0 and "Traceback" not in text, text
    assert "unreachable at start" in text, text
