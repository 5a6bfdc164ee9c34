"""The SQL sandbox: every query a person types runs here, and can read the store's tables and nothing else.

`routerwatch sql` (one-shot, stdin, interactive), the dashboard's SQL page and its saved queries all
go through `Sandbox.run`. Three layers, each closing what the one before might miss:

1. **Statements, by DuckDB's own parser** (`extract_statements`, never text prefixes): only SELECT
   (which covers WITH, VALUES, DESCRIBE, SHOW, SUMMARIZE) and plain EXPLAIN of a SELECT pass. EXPLAIN
   ANALYZE executes its statement, so it is refused; every statement of a script is checked before
   the first one runs.
2. **The parse tree of each SELECT** (`json_serialize_sql`): table functions must be on a read-only
   allow-list (generators, catalog metadata, the lake's history). That shuts out the file readers
   (read_text/read_blob/read_csv/read_parquet/glob/sniff_csv/parquet_*), `query()`/`query_table()`,
   `sqlite_scan`/`sqlite_attach` (the sqlite extension opens files itself, past DuckDB's
   `enable_external_access`), `json_execute_serialized_sql`, `checkpoint()`, `enable_logging()` and
   every ducklake maintenance function. Table names that look like files (replacement scans such as
   `FROM 'x.csv'`) and a few scalar functions (getenv, write_log) are refused too.
3. **The connection**: the lake attached READ_ONLY, the writable in-memory database detached, external
   access off except reading the store's data path (DuckLake's Parquet files), Python replacement
   scans off, no temp directory, a memory limit, then `lock_configuration` so none of it can be undone.

Every query also has a time limit (`interrupt()` from a timer) and a row cap applied inside the
query (`SELECT * FROM (<query>) LIMIT cap+1`), so `SELECT * FROM range(5000000)` never reaches Python.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb

from collector.store import Store
from collector.store.sqltext import sql_literal

TIMEOUT_ENV = "ROUTERWATCH_SQL_TIMEOUT"
MEMORY_ENV = "ROUTERWATCH_SQL_MEMORY_LIMIT"
MAX_ROWS_ENV = "ROUTERWATCH_SQL_MAX_ROWS"
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MEMORY = "1GiB"
DEFAULT_MAX_ROWS = 10_000

# Read-only table functions a person may call. Everything else is refused (an allow-list: DuckDB and
# its extensions add table functions with every release, and several of them write or read files).
TABLE_FUNCTIONS = frozenset({
    # generators and JSON/list helpers
    "range", "generate_series", "unnest", "repeat", "repeat_row", "json_each", "json_tree",
    "histogram", "histogram_values", "pg_timezone_names", "icu_calendar_names",
    # catalog metadata
    "duckdb_columns", "duckdb_constraints", "duckdb_databases", "duckdb_dependencies", "duckdb_extensions",
    "duckdb_functions", "duckdb_indexes", "duckdb_keywords", "duckdb_memory", "duckdb_optimizers",
    "duckdb_schemas", "duckdb_sequences", "duckdb_settings", "duckdb_tables", "duckdb_types", "duckdb_views",
    "duckdb_temporary_files", "pragma_table_info", "pragma_show", "pragma_version", "pragma_database_size",
    "pragma_platform", "pragma_user_agent", "pragma_collations",
    # the lake's history (read-only), also as `lake.<name>()`
    "ducklake_snapshots", "ducklake_table_info", "ducklake_table_changes", "ducklake_table_insertions",
    "ducklake_table_deletions", "ducklake_current_snapshot", "ducklake_last_committed_snapshot",
    "ducklake_list_files", "ducklake_options", "ducklake_settings",
    "snapshots", "table_info", "table_changes", "table_insertions", "table_deletions", "current_snapshot",
    "last_committed_snapshot", "list_files", "options", "settings",
})
# Table functions refused with a more specific reason than "not on the list".
FILE_READERS = frozenset({
    "read_text", "read_blob", "read_csv", "read_csv_auto", "read_json", "read_json_auto", "read_json_objects",
    "read_json_objects_auto", "read_ndjson", "read_ndjson_auto", "read_ndjson_objects", "read_parquet",
    "parquet_scan", "read_duckdb", "glob", "sniff_csv", "parquet_metadata", "parquet_schema",
    "parquet_file_metadata", "parquet_kv_metadata", "parquet_full_metadata", "parquet_bloom_probe",
    "sqlite_scan", "sqlite_query", "sqlite_attach", "postgres_scan", "postgres_query", "postgres_attach",
})
SCALAR_DENIED = frozenset({"getenv", "write_log"})
_FILE_LIKE = re.compile(r"[/\\.:*?~]")  # a table "name" that DuckDB would resolve as a file (replacement scan)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.IGNORECASE)
_ALLOWED_TYPES = (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN)
_ALLOWED_NOTE = "only SELECT / WITH / EXPLAIN / DESCRIBE / SHOW / SUMMARIZE run here (the store is read-only)"


class QueryError(Exception):
    """A query failed or was refused; the message is one line."""


class Refused(QueryError):
    """The sandbox refused a statement before running anything."""


@dataclass(frozen=True)
class Limits:
    """Per-query limits: wall time, DuckDB memory, rows returned."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    memory: str = DEFAULT_MEMORY
    max_rows: int = DEFAULT_MAX_ROWS

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"the time limit must be a positive number of seconds, not {self.timeout_s!r}")
        if not _SIZE.match(str(self.memory)):
            raise ValueError(f"the memory limit {self.memory!r} is not a size such as 512MiB or 2GiB")
        if self.max_rows < 1:
            raise ValueError(f"the row cap must be at least 1, not {self.max_rows!r}")

    @classmethod
    def from_env(cls, timeout_s: float | None = None, memory: str | None = None,
                 max_rows: int | None = None, default_rows: int = DEFAULT_MAX_ROWS) -> Limits:
        """Flags win over ROUTERWATCH_SQL_TIMEOUT / _MEMORY_LIMIT / _MAX_ROWS, which win over the defaults."""
        def env(name: str, conv, default):
            raw = os.environ.get(name, "").strip()
            if not raw:
                return default
            try:
                return conv(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not valid") from None

        return cls(
            timeout_s if timeout_s is not None else env(TIMEOUT_ENV, float, DEFAULT_TIMEOUT_S),
            memory if memory is not None else env(MEMORY_ENV, str, DEFAULT_MEMORY),
            max_rows if max_rows is not None else env(MAX_ROWS_ENV, int, default_rows),
        )


@dataclass(frozen=True)
class Result:
    columns: list[str]
    rows: list[tuple]
    truncated: bool = False  # more rows existed than the cap


@dataclass(frozen=True)
class Planned:
    """A checked statement, as it will run: `kind` 'select' (wrapped in the row cap) or 'explain'."""

    kind: str
    sql: str


# -- layer 1 and 2: what a statement is and what it touches -------------------------------------------
def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _statements(con: duckdb.DuckDBPyConnection, sql: str) -> list:
    # Parse on the locked-down connection only: DuckDB expands some statements while parsing
    # (IMPORT DATABASE reads <dir>/schema.sql), and there file access is already off.
    try:
        return con.extract_statements(sql)
    except duckdb.Error as exc:
        raise Refused(f"cannot parse: {_first_line(exc)}") from None


def _tree(con: duckdb.DuckDBPyConnection, sql: str) -> dict:
    if "\x00" in sql:  # the statement travels as a C string below: a NUL would cut what is checked
        raise Refused("the statement contains a NUL character")
    # a literal, not a bound parameter: binding one makes DuckDB import pandas (~0.5 s CPU per command)
    raw = con.execute(f"SELECT json_serialize_sql({sql_literal(sql)})").fetchone()[0]
    tree = json.loads(raw)
    if tree.get("error"):
        msg = str(tree.get("error_message") or "unknown").splitlines()[0]
        if "Only SELECT" in msg:
            raise Refused("this statement cannot be checked here (PIVOT and other statement forms that create "
                          f"objects are refused); {_ALLOWED_NOTE}")
        raise Refused(f"cannot parse: {msg}")
    return tree


def _nodes(o: object) -> Iterator[dict]:
    if isinstance(o, dict):
        yield o
        for v in o.values():
            yield from _nodes(v)
    elif isinstance(o, list):
        for v in o:
            yield from _nodes(v)


def _check_tree(tree: dict) -> None:
    """Refuse table functions off the allow-list, file-like table names and denied scalar functions."""
    for node in _nodes(tree):
        kind = node.get("type")
        if kind == "TABLE_FUNCTION":
            fn = node.get("function") or {}
            name = str(fn.get("function_name") or "").lower()
            if name in FILE_READERS:
                raise Refused(f"{name}() reads files: the SQL sandbox reads the store's tables only "
                              "(query flows, llm_exchanges, ... instead)")
            if name not in TABLE_FUNCTIONS:
                raise Refused(f"table function {name}() is not allowed in the SQL sandbox (it may write or reach "
                              "outside the store); allowed: range, unnest, duckdb_*() metadata, ducklake_snapshots(), ...")
        elif node.get("class") == "FUNCTION" and str(node.get("function_name") or "").lower() in SCALAR_DENIED:
            raise Refused(f"{node['function_name']}() is not allowed in the SQL sandbox")
        elif kind in ("BASE_TABLE", "SHOW_REF"):
            name = str(node.get("table_name") or "").strip('"')
            if name and _FILE_LIKE.search(name) and name != "__show_tables_expanded":
                raise Refused(f"{name!r} looks like a file: the SQL sandbox reads the store's tables only")


def _check_select(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    stmts = _statements(con, sql)
    if len(stmts) != 1 or stmts[0].type != duckdb.StatementType.SELECT:
        raise Refused(f"expected one SELECT; {_ALLOWED_NOTE}")
    _check_tree(_tree(con, sql))


def _explained(sql: str) -> str:
    """The statement behind a plain `EXPLAIN <statement>`; EXPLAIN ANALYZE and options are refused."""
    tokens = duckdb.tokenize(sql)
    if len(tokens) < 2 or not re.match(r"explain\b", sql[tokens[0][0]:], re.IGNORECASE):
        raise Refused(f"cannot read this EXPLAIN; {_ALLOWED_NOTE}")
    nxt = sql[tokens[1][0]:]
    if re.match(r"analy[sz]e\b", nxt, re.IGNORECASE):
        raise Refused("EXPLAIN ANALYZE executes its statement and is refused; plain EXPLAIN shows the plan")
    if nxt.startswith("("):
        raise Refused("EXPLAIN options are refused here (EXPLAIN (ANALYZE) executes); use plain EXPLAIN <query>")
    return nxt


def complete(buffer: str) -> bool:
    """Whether `buffer` ends with a `;` that ends a statement (not one inside a string or comment)."""
    try:
        tokens = duckdb.tokenize(buffer)
    except duckdb.Error:
        return False
    return bool(tokens) and buffer[tokens[-1][0]] == ";" and tokens[-1][1] == duckdb.token_type.operator


def wrap(sql: str, cap: int) -> str:
    """`sql` with the row cap inside the query (one more row than the cap: to tell that rows were cut)."""
    return f"SELECT * FROM (\n{sql}\n) AS rw_result LIMIT {int(cap) + 1}"


def plan(con: duckdb.DuckDBPyConnection, sql: str, max_rows: int) -> list[Planned]:
    """Check every statement of `sql` (nothing runs if one is refused); return them as they will run.

    The text that runs is checked again as a whole, so the row-cap wrapper or the rebuilt EXPLAIN
    cannot change what was checked.
    """
    stmts = _statements(con, sql)
    if not stmts:
        raise Refused("no statement to run")
    out: list[Planned] = []
    for st in stmts:
        text = st.query.strip().rstrip(";").strip()  # a PRAGMA comes back rewritten, with a ';'
        if st.type not in _ALLOWED_TYPES:
            word = re.match(r"[A-Za-z_]*", text or sql.strip()).group(0).upper() or st.type.name
            raise Refused(f"{word} statements are refused: {_ALLOWED_NOTE}")
        if st.type == duckdb.StatementType.EXPLAIN:
            inner = _explained(text)
            _check_select(con, inner)
            final = "EXPLAIN " + inner
            again = _statements(con, final)
            if len(again) != 1 or again[0].type != duckdb.StatementType.EXPLAIN or _explained(final) != inner:
                raise Refused(f"cannot read this EXPLAIN; {_ALLOWED_NOTE}")
            out.append(Planned("explain", final))
        else:
            _check_select(con, text)
            final = wrap(text, max_rows)
            _check_select(con, final)
            out.append(Planned("select", final))
    return out


# -- layer 3: the connection ----------------------------------------------------------------------
def lock_down(store: Store, limits: Limits) -> None:
    """Configure the store's connection for untrusted SQL and lock the configuration."""
    con = store.con
    loc = store.location
    if loc.root is not None:
        data = Path(loc.data_path).resolve()
        key = loc.secret_file.resolve()
        if key == data or data in key.parents:
            raise QueryError(f"the fingerprint key {key} lies inside the data path {data}: move it out "
                             "before running SQL over this store")
    con.execute("SET temp_directory = ''")  # nothing spills to disk: the memory limit is the limit
    con.execute("SET python_enable_replacements = false")  # no scans of the calling Python frame's variables
    con.execute(f"SET memory_limit = '{_SIZE.match(limits.memory).group(0).strip()}'")
    # DuckLake's Parquet files, read below. A literal, not a bound list: binding a Python list makes
    # DuckDB import pandas (~0.5 s of CPU, most of a `routerwatch sql` command's start-up)
    con.execute(f"SET allowed_directories = [{sql_literal(str(loc.data_path))}]")
    con.execute("SET enable_external_access = false")
    con.execute("DETACH memory")  # the only writable database besides temp: gone
    con.execute("SET lock_configuration = true")


class Sandbox:
    """The store opened read-only, locked down, with limits; `run()` is the only way in."""

    def __init__(self, store: Store, limits: Limits):
        self.store = store
        self.limits = limits
        self._lock = threading.Lock()  # one query at a time on this connection

    @classmethod
    def open(cls, spec: str | None = None, limits: Limits | None = None) -> Sandbox:
        limits = limits or Limits()
        store = Store.open(spec, read_only=True)
        try:
            lock_down(store, limits)
        except BaseException:
            store.close()
            raise
        return cls(store, limits)

    def check(self, sql: str) -> list[Planned]:
        """What `run(sql)` would execute, or `Refused`."""
        with self._lock:
            return plan(self.store.con, sql, self.limits.max_rows)

    def run(self, sql: str) -> list[Result]:
        """Check every statement, then run them in order; one Result per statement."""
        with self._lock:
            planned = plan(self.store.con, sql, self.limits.max_rows)
            return [self._execute(p) for p in planned]

    def run_one(self, sql: str) -> Result:
        """Like `run`, returning the last statement's result (the one-shot command's behaviour)."""
        return self.run(sql)[-1]

    def execute(self, p: Planned) -> Result:
        """Run one statement that `check()` returned (a script printing each result as it goes)."""
        with self._lock:
            return self._execute(p)

    def _execute(self, p: Planned) -> Result:
        con = self.store.con
        timer = threading.Timer(self.limits.timeout_s, con.interrupt)
        timer.daemon = True
        timer.start()
        try:
            cur = con.execute(p.sql)
            cols = [d[0] for d in cur.description] if cur.description else []
            rows = cur.fetchall() if cols else []
        except duckdb.InterruptException:
            raise QueryError(f"stopped: the query ran longer than the {self.limits.timeout_s:g} s time limit "
                             f"(--timeout or {TIMEOUT_ENV} to change)") from None
        except duckdb.OutOfMemoryException as exc:
            raise QueryError(f"{_first_line(exc)} (memory limit {self.limits.memory}: --memory-limit or "
                             f"{MEMORY_ENV} to change)") from None
        except duckdb.Error as exc:
            raise QueryError(_first_line(exc)) from None
        finally:
            timer.cancel()
        cap = self.limits.max_rows
        if p.kind == "select" and len(rows) > cap:
            return Result(cols, rows[:cap], True)
        return Result(cols, rows)

    def tables(self) -> list[str]:
        return self.store.tables()

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
