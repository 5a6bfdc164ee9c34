"""The SQL sandbox through `routerwatch sql`: hostile statements are refused in one line (exit 2) and
leave every file as it was; ordinary analytic SQL keeps working; time, memory and row limits hold.

One-shot runs go through the installed console script, one process per statement. The stdin modes
(`QUERY -` and a script on stdin) run every statement through the same `main()` in this process, and
a few through the console script, so the suite stays within CI's time.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

import duckdb
import pytest

from analyzer.sandbox import DEFAULT_MAX_ROWS, Limits, Refused, Sandbox, complete, plan
from tests.conftest import BIN, run_cli
from tests.support import hostile_sql
from tests.support.hostile_sql import HOSTILE


@pytest.fixture(scope="module")
def hs(tmp_path_factory):
    return hostile_sql.build(tmp_path_factory.mktemp("hostile"))


def _cli(hs, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    """The console script with HOME, TMPDIR and the working directory inside the watched tree."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTERWATCH_")}
    return subprocess.run([str(BIN / "routerwatch"), *args], capture_output=True, text=True, input=input,
                          env={**env, **hs.env()}, cwd=hs.base / "cwd", timeout=120)


def _assert_refused(hs, rc: int, out: str, err: str, stmt: str) -> None:
    assert rc == 2, (stmt, rc, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("routerwatch: error: "), (stmt, err)
    assert "Traceback" not in err
    assert out.strip() == "", (stmt, out)  # nothing ran, so nothing printed
    assert not hostile_sql.secrets_in(out + err, hs), (stmt, hostile_sql.secrets_in(out + err, hs))


@pytest.mark.parametrize("stmt", HOSTILE)
def test_hostile_one_shot(hs, stmt):
    before = hostile_sql.snapshot(hs)
    p = _cli(hs, "sql", hs.fmt(stmt))
    _assert_refused(hs, p.returncode, p.stdout, p.stderr, stmt)
    assert hostile_sql.diff(before, hostile_sql.snapshot(hs)) == [], stmt


def _main(hs, monkeypatch, capsys, args: list[str], stdin: str) -> tuple[int, str, str]:
    from collector.cli import main

    for k, v in hs.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(hs.base / "cwd")
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    rc = main(["sql", *args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.mark.parametrize("mode", ["dash", "script"])
def test_hostile_stdin_modes(hs, monkeypatch, capsys, mode):
    """Every hostile statement as `routerwatch sql -` (stdin is the query) and as a script on stdin."""
    args = ["-"] if mode == "dash" else []
    for stmt in HOSTILE:
        before = hostile_sql.snapshot(hs)
        rc, out, err = _main(hs, monkeypatch, capsys, args, hs.fmt(stmt))
        _assert_refused(hs, rc, out, err, stmt)
        assert hostile_sql.diff(before, hostile_sql.snapshot(hs)) == [], stmt


@pytest.mark.parametrize("stmt", [HOSTILE[0], "SELECT * FROM read_blob('{root}/secret.key')", "CHECKPOINT",
                                  "SELECT 1; COPY (SELECT 1) TO '{out}/smuggled.csv'",
                                  "EXPLAIN ANALYZE CREATE TABLE memory.x AS SELECT 42"])
def test_hostile_stdin_console_script(hs, stmt):
    """The same through the console script's real stdin (a pipe): `-` and the script mode."""
    for args in (["sql", "-"], ["sql"]):
        before = hostile_sql.snapshot(hs)
        p = _cli(hs, *args, input=hs.fmt(stmt) + "\n")
        _assert_refused(hs, p.returncode, p.stdout, p.stderr, stmt)
        assert hostile_sql.diff(before, hostile_sql.snapshot(hs)) == [], stmt


def test_script_checked_before_anything_runs(hs, monkeypatch, capsys):
    rc, out, err = _main(hs, monkeypatch, capsys, [], "SELECT 'first' AS a;\nSELECT 'second' AS b;\nCHECKPOINT;\n")
    assert rc == 2 and "CHECKPOINT statements are refused" in err
    assert "first" not in out and "second" not in out


# -- legitimate use ----------------------------------------------------------------------------------
LEGIT = {
    "WITH per_host AS (SELECT host, count(*) AS n FROM llm_exchanges GROUP BY host) "
    "SELECT host, n, rank() OVER (ORDER BY n DESC) AS r FROM per_host ORDER BY r, host": ["host", "r"],
    "SELECT f.flow_uid, t.sni FROM flows f JOIN tls t USING (flow_uid) ORDER BY f.flow_uid LIMIT 3": ["sni"],
    "SELECT sum(bytes_out) OVER (PARTITION BY host_id ORDER BY ts_start ROWS 2 PRECEDING) AS s FROM flows LIMIT 5": ["s"],
    "SHOW TABLES": ["flows", "llm_exchanges", "findings"],
    "DESCRIBE flows": ["flow_uid", "dst_port", "VARCHAR"],
    "SUMMARIZE flows": ["column_name", "dst_port", "approx_unique"],
    "EXPLAIN SELECT count(*) FROM flows": ["physical_plan"],
    "FROM flows SELECT count(*) AS n": ["n"],
    "SELECT id FROM lake.current_snapshot()": ["id"],
    "SELECT count(*) AS snaps FROM ducklake_snapshots('lake')": ["snaps"],
    "SELECT current_setting('enable_external_access') AS ext": ["ext\nFalse"],
    "VALUES (1, 'a'), (2, 'b')": ["col0"],
    "SELECT table_name FROM information_schema.tables WHERE table_name = 'flows'": ["flows"],
}


def test_legitimate_queries(hs):
    script = ";\n".join(LEGIT) + ";\n"
    p = _cli(hs, "sql", "--format", "csv", input=script)
    assert p.returncode == 0, p.stderr
    for stmt, texts in LEGIT.items():
        for t in texts:
            assert t in p.stdout, (stmt, t)
    from collector.store import Store

    with Store.open(str(hs.root), read_only=True) as s:
        n = s.sql("SELECT count(*) FROM flows").fetchone()[0]
    with Sandbox.open(str(hs.root)) as sb:
        assert sb.run_one("SELECT count(*) AS n FROM flows").rows == [(n,)]
        res = sb.run_one("SELECT * FROM flows ORDER BY ts_start DESC LIMIT 7")
        assert len(res.rows) == 7 and not res.truncated
        assert [r[0] for r in res.rows] == [r[0] for r in sb.run_one(
            "SELECT * FROM (SELECT * FROM flows ORDER BY ts_start DESC) LIMIT 7").rows]


def test_one_shot_json_and_multiple_statements(hs):
    p = _cli(hs, "sql", "--format", "json", "SELECT 1 AS a; SELECT 2 AS b")
    assert p.returncode == 0 and json.loads(p.stdout) == [{"b": 2}]  # the last statement's result, as before


# -- limits ------------------------------------------------------------------------------------------
def test_defaults():
    lim = Limits()
    assert (lim.timeout_s, lim.memory, lim.max_rows) == (30.0, "1GiB", DEFAULT_MAX_ROWS)
    p = run_cli("sql", "--help")
    assert "ROUTERWATCH_SQL_TIMEOUT" in p.stdout and "30" in p.stdout and "1GiB" in p.stdout
    for bad in (["--timeout", "0"], ["--memory-limit", "lots"], ["--max-rows", "0"]):
        p = run_cli("sql", *bad, "SELECT 1")
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, bad


def test_row_cap_is_inside_the_query(hs):
    with Sandbox.open(str(hs.root), Limits(max_rows=1000)) as sb:
        [planned] = sb.check("SELECT * FROM range(5000000)")
        assert planned.sql.rstrip().endswith("LIMIT 1001")
        res = sb.run_one("SELECT * FROM range(5000000)")
    assert len(res.rows) == 1000 and res.truncated


RSS = ("import resource, sys\nfrom collector.cli import main\nrc = main(sys.argv[1:])\n"
       "print('maxrss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\nsys.exit(rc)")


def _maxrss_kb(hs, query: str) -> tuple[int, str]:
    p = subprocess.run([sys.executable, "-c", RSS, "sql", "--store", str(hs.root), "--format", "csv", query],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return int(p.stderr.split("maxrss")[1].split()[0]), p.stdout


def test_huge_result_never_reaches_python(hs):
    """5M rows asked for, 100,000 (the CLI's cap) fetched: memory as for a small query, not +600 MB."""
    small, _ = _maxrss_kb(hs, "SELECT * FROM range(100000)")
    big, out = _maxrss_kb(hs, "SELECT * FROM range(5000000)")
    assert len(out.splitlines()) == 100_000 + 1  # header + the cap
    assert big - small < 60_000, (small, big)  # KB


def test_time_limit(hs, monkeypatch, capsys):
    t0 = time.monotonic()
    p = _cli(hs, "sql", "--timeout", "1.5", "SELECT count(*) FROM range(100000000000000)")
    assert p.returncode == 2 and "time limit" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert time.monotonic() - t0 < 20
    monkeypatch.setenv("ROUTERWATCH_SQL_TIMEOUT", "1")
    t0 = time.monotonic()
    rc, out, err = _main(hs, monkeypatch, capsys, [], "SELECT count(*) FROM range(100000000000000);\n")
    assert rc == 2 and "1 s time limit" in err and time.monotonic() - t0 < 15
    # the connection is usable after an interrupt
    with Sandbox.open(str(hs.root), Limits(timeout_s=1)) as sb:
        with pytest.raises(Exception, match="time limit"):
            sb.run_one("SELECT count(*) FROM range(100000000000000)")
        assert sb.run_one("SELECT 42 AS x").rows == [(42,)]


def test_memory_limit(hs):
    p = _cli(hs, "sql", "--memory-limit", "200MiB", "SELECT list(range) FROM range(200000000)")
    assert p.returncode == 2 and "Out of Memory" in p.stderr and "memory limit 200MiB" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


# -- the layers, each on its own ---------------------------------------------------------------------
def test_parser_layer_alone():
    """The statement and parse-tree checks refuse without any store (DuckDB's parser, not prefixes)."""
    con = duckdb.connect()
    for stmt in ("COPY (SELECT 1) TO 'x'", "  /* c */ Attach 'x'", "SELECT 1; DETACH lake",
                 "EXPLAIN ANALYZE SELECT 1", "SELECT * FROM read_text('x')", "SELECT * FROM system.main.glob('*')",
                 "SELECT * FROM \"read_blob\"('x')", "WITH a AS (SELECT * FROM query('SELECT 1')) SELECT * FROM a",
                 "SELECT (SELECT max(content) FROM read_text('x'))", "SELECT * FROM range(3), LATERAL read_csv('x')",
                 "SELECT * FROM 'x.parquet'", "SELECT getenv('X')", "LOAD '/tmp/x.duckdb_extension'",
                 "INSTALL '/tmp/x.duckdb_extension'", "SELECT 1; LOAD json"):
        with pytest.raises(Refused):
            plan(con, stmt, 10)
    assert [p.kind for p in plan(con, "SELECT 1; EXPLAIN SELECT 2; SHOW TABLES; DESCRIBE SELECT 1", 10)] == [
        "select", "explain", "select", "select"]


def test_statement_text_is_checked_whole():
    """The check quotes the statement into SQL: quotes inside it stay data, a NUL (which would cut the
    C string the check reads) is refused."""
    con = duckdb.connect()
    assert [p.kind for p in plan(con, "SELECT 'it''s', $$x'y$$, '\\'", 10)] == ["select"]
    breakout = "SELECT '" + "''" + "); COPY (SELECT 1) TO 'x'; SELECT ('"
    for stmt in ("SELECT 1\x00; COPY (SELECT 1) TO 'x'", breakout):
        with pytest.raises(Refused):
            plan(con, stmt, 10)


def test_sql_command_does_not_import_pandas(hs):
    """Binding a Python parameter makes DuckDB import pandas, ~0.5 s of CPU on every `routerwatch sql`
    (half its start-up): the sandbox passes its own values as literals."""
    code = ("import sys; from analyzer.sandbox import Limits, Sandbox; sb = Sandbox.open(sys.argv[1], Limits()); "
            "sb.run_one('SELECT count(*) FROM flows'); print('pandas' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTERWATCH_")}
    r = subprocess.run([sys.executable, "-c", code, str(hs.root)], capture_output=True, text=True,
                       env={**env, **hs.env()}, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "False", (r.stdout, r.stderr[-2000:])


def test_connection_layer_alone(hs, tmp_path):
    """Below the statement checks, the connection itself is locked: run straight on it."""
    evil = tmp_path.parent / "evil.duckdb_extension"  # a would-be unsigned extension (never loaded)
    evil.write_bytes(b"\x7fELF" + bytes(4096))
    with Sandbox.open(str(hs.root)) as sb:
        con = sb.store.con
        for stmt in ("SET enable_external_access = true", "SET lock_configuration = false",
                     "SET allowed_directories = ['/']", "SET memory_limit = '100GB'", "SET temp_directory = '/tmp'"):
            with pytest.raises(duckdb.Error):
                con.execute(stmt)
        for stmt in (f"SELECT * FROM read_blob('{hs.root}/secret.key')", "SELECT * FROM read_text('/etc/hostname')",
                     f"COPY (SELECT 1) TO '{tmp_path}/x.csv'", f"ATTACH '{tmp_path}/y.db'",
                     "DELETE FROM flows", "CREATE TABLE lake.t AS SELECT 1", "CREATE TABLE memory.t AS SELECT 1",
                     # the store's connections accept unsigned extensions (collector/store/extensions.py):
                     # only external access being off stops a LOAD of a file here
                     f"LOAD '{evil}'", f"INSTALL '{evil}'"):
            with pytest.raises(duckdb.Error):
                con.execute(stmt)
        dbs = dict(con.execute("SELECT database_name, readonly FROM duckdb_databases() WHERE NOT internal").fetchall())
        assert dbs == {"lake": True}  # `memory` detached
        assert con.execute("SELECT current_setting('lock_configuration')").fetchone()[0] is True
        local_frame = __import__("pandas").DataFrame({"x": [1]})  # noqa: F841 - not visible to SQL
        with pytest.raises(duckdb.CatalogException):
            con.execute("SELECT * FROM local_frame")
    assert list(tmp_path.iterdir()) == []


def test_complete():
    assert complete("SELECT 1;") and complete("SELECT 1 /* x */ ;\n")
    assert not complete("SELECT ';") and not complete("SELECT 1 -- ;\n") and not complete("/* ; */")


def test_key_inside_data_path_is_refused(hs, monkeypatch):
    """A fingerprint key configured inside the readable data path would be readable: refuse to open."""
    monkeypatch.setenv("ROUTERWATCH_SECRET_FILE", str(hs.data / "main" / "secret.key"))
    with pytest.raises(Exception, match="inside the data path"):
        Sandbox.open(str(hs.root))


def test_interactive_prompt_on_a_terminal(hs):
    """The prompt_toolkit shell on a real pseudo-terminal: results print, refusals are one line and the
    prompt goes on; nothing but the user's own history file is written."""
    import pty
    import select

    before = hostile_sql.snapshot(hs)
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTERWATCH_")}
    proc = subprocess.Popen([str(BIN / "routerwatch"), "sql"], stdin=slave, stdout=slave, stderr=slave,
                            env={**env, **hs.env(), "TERM": "xterm"}, cwd=hs.base / "cwd", close_fds=True)
    os.close(slave)
    seen = b""

    def read_until(marker: bytes, timeout: float = 60) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break
        assert marker in seen, seen[-2000:]

    try:
        read_until(b"sql>")
        os.write(master, b"SELECT 6 * 7 AS answer;\r")
        read_until(b"42")
        os.write(master, hs.fmt("COPY (SELECT 1) TO '{out}/tty.csv';\r").encode())
        read_until(b"COPY statements are refused")
        os.write(master, b"SELECT 'still' || 'here' AS s\r;\r")  # a statement over two lines
        read_until(b"stillhere")
        os.write(master, b".quit\r")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    changed = hostile_sql.diff(before, hostile_sql.snapshot(hs))
    history = [c for c in changed if "/home/.local" in c]
    assert changed == history and any(c.endswith("/sql_history") for c in history), changed
    assert (hs.base / "home/.local/state/routerwatch/sql_history").stat().st_mode & 0o077 == 0
