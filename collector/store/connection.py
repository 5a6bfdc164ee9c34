"""Opening a store: DuckDB in memory with a DuckLake catalog attached as `lake`.

A store is named by a directory (single host: `catalog.sqlite` + `data/` Parquet + `secret.key`,
directory 0700, or 2750 for the dashboard's group; `permissions.py` keeps it from other users; the data
path is resolved again on every open, so a copied or restored store opens where it is) or, for a fleet, by a DuckLake URI (`ducklake:postgres:dbname=... host=...`) with
`ROUTERWATCH_DATA_PATH` naming the shared data path (e.g. `s3://bucket/routerwatch/`).
Writers commit through the catalog, so many writer processes and read-only readers coexist.

Concurrency (docs/store-and-fleet.md has the measurements behind it): the SQLite catalog runs in WAL
mode (readers never block writers, writers never block readers), a helper process keeps it open
(`anchor.py`), every write transaction holds the store's write lock from BEGIN to COMMIT
(`locking.py`; a WAL transaction that another writer overtook can only start over), and `write()` /
`retry()` start a transaction over after a transient error, with jittered backoff, until a deadline;
a write that gives up raises `StoreBusyError`, one line that says what was not committed.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import duckdb

from collector.config import resolve_store
from collector.store import anchor, extensions, permissions, remote
from collector.store.errors import StoreBusyError, StoreError
from collector.store.locking import LockTimeout, StoreLock
from collector.store.sqltext import sql_escape

LAKE = "lake"
DATA_PATH_ENV = "ROUTERWATCH_DATA_PATH"
SECRET_ENV = "ROUTERWATCH_SECRET_FILE"
T = TypeVar("T")

# SQLite busy/locked (also inside DuckLake's "Failed to commit ..." messages), DuckLake and PostgreSQL
# write conflicts, and two writers creating the same DuckLake catalog in an empty PostgreSQL database at
# once (a fleet's first start); anything else is a real error and is not retried
_TRANSIENT = ("database is locked", "database table is locked", "conflict", "concurrent", "busy",
              "could not serialize", "deadlock detected", "duplicate key value violates unique constraint")
BUSY_TIMEOUT_MS = 5000  # SQLite's own wait for a lock (the bundled SQLite sleeps in whole seconds)
# how long a write keeps trying (lock waits and retries) before it gives up; ROUTERWATCH_WRITE_DEADLINE overrides
WRITE_DEADLINE_S = float(os.environ.get("ROUTERWATCH_WRITE_DEADLINE") or 120.0)
# DuckLake's own commit retries (conflicts between writers on a PostgreSQL catalog)
DUCKLAKE_SETTINGS = {"ducklake_max_retry_count": 30, "ducklake_retry_wait_ms": 50, "ducklake_retry_backoff": 1.5}


@dataclass(frozen=True)
class StoreLocation:
    """Where a store's catalog, data and fingerprint key live."""

    spec: str
    catalog: str  # the ATTACH target, e.g. 'ducklake:sqlite:/var/lib/routerwatch/catalog.sqlite'
    data_path: str
    root: Path | None  # the local directory, when the store is one
    secret_file: Path

    @classmethod
    def parse(cls, spec: str | None = None) -> StoreLocation:
        spec = resolve_store(spec)
        if spec.startswith("ducklake:"):
            data = os.environ.get(DATA_PATH_ENV)
            if not data:
                raise StoreError(f"store {spec!r} is a catalog URI: set {DATA_PATH_ENV} to its data path")
            secret = os.environ.get(SECRET_ENV) or str(Path.home() / ".config/routerwatch/secret.key")
            return cls(spec, spec, data, None, Path(secret))
        root = Path(spec).expanduser().absolute()
        return cls(
            spec,
            f"ducklake:sqlite:{root / 'catalog.sqlite'}",
            str(root / "data") + "/",
            root,
            Path(os.environ.get(SECRET_ENV) or root / "secret.key"),
        )

    @property
    def display(self) -> str:
        """The spec as it may be printed or logged (a password in it masked)."""
        return remote.display_spec(self.spec)

    def exists(self) -> bool:
        return self.root is None or (self.root / "catalog.sqlite").exists()

    @property
    def sqlite_file(self) -> str | None:
        """The SQLite catalog file of a local store (None for a PostgreSQL catalog)."""
        return self.catalog.removeprefix("ducklake:sqlite:") if self.catalog.startswith("ducklake:sqlite:") else None

    def secret_key(self, create: bool = True) -> bytes:
        """The per-store HMAC key for secret fingerprints (created 0600 on first use by a writer);
        readable without opening the store (the gate's hook redacts before it spools)."""
        path = self.secret_file
        if not path.exists():
            if not create:
                raise StoreError(f"store secret {path} is missing")
            if self.root is None:  # a fleet: every host must fingerprint with the same key
                raise StoreError(
                    f"the fleet's fingerprint key {path} is missing: copy it from the central host "
                    f"(deploy/install.sh --secret-file FILE, or ${SECRET_ENV}); a key made here would "
                    "fingerprint secrets differently from every other host")
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another writer made it first
                return path.read_bytes()
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
        return path.read_bytes()


def is_transient(exc: BaseException) -> bool:
    """A commit conflict or a busy catalog: worth retrying, never worth losing a batch over."""
    return is_transient_text(str(exc))


def backoff(attempt: int, base: float = 0.05, cap: float = 2.0) -> float:
    """Seconds to sleep before retry `attempt` (0-based): exponential, capped, times a random 0.5-1.5."""
    return min(cap, base * 1.5**attempt) * (0.5 + random.random())


def retrying(fn: Callable[[], T], attempts: int = 20, base_delay: float = 0.05,
             also: tuple[str, ...] = ()) -> T:
    """Run `fn` (no transaction of its own: ATTACH, a catalog probe), retrying transient errors and
    errors whose text contains one of `also`."""
    for i in range(attempts):
        try:
            return fn()
        except (duckdb.Error, StoreError) as exc:
            if i == attempts - 1 or not (is_transient(exc) or any(s in str(exc) for s in also)):
                raise
            time.sleep(backoff(i, base_delay))
    raise AssertionError("unreachable")


class Store:
    """One DuckDB connection with the store's lake attached and selected (`USE lake`)."""

    def __init__(self, location: StoreLocation, con: duckdb.DuckDBPyConnection, read_only: bool):
        self.location = location
        self.con = con
        self.read_only = read_only
        self.write_lock = StoreLock(location.root, "write") if location.root is not None else None
        self._table_names: dict[str, str] = {}  # DuckLake table id -> name (inserted_since)
        self._anchored: str | None = None

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, spec: str | None = None, *, read_only: bool = False, migrate: bool = True,
             threads: int | None = None) -> Store:
        """Open (and for writers create and migrate) the store named by `spec`. `threads`: DuckDB's
        worker threads for this connection (default: one per core)."""
        loc = StoreLocation.parse(spec)
        if read_only and not loc.exists():
            raise StoreError(
                f"no store at {loc.display}: ingest a capture (`routerwatch ingest FILE`) or run the collector first"
            )
        if loc.root is not None:
            if not read_only:
                try:
                    loc.root.mkdir(parents=True, exist_ok=True, mode=0o700)
                except OSError as exc:
                    raise StoreError(f"cannot create store directory {loc.root}: {exc.strerror}") from None
            permissions.secure_store(loc.root)
            if not read_only:
                # a group store (deploy/install.sh: 2750 root:routerwatch) keeps data/ readable by its group
                data_mode = 0o750 if loc.root.stat().st_mode & 0o040 else 0o700
                try:
                    (loc.root / "data").mkdir(exist_ok=True, mode=data_mode)
                except OSError as exc:
                    raise StoreError(f"cannot create store directory {loc.root}: {exc.strerror}") from None
        config = dict(extensions.OFFLINE_CONFIG, **({"threads": threads} if threads else {}))
        con = duckdb.connect(":memory:", config=config)
        extensions.load(con, *remote.extensions_for(loc.catalog, loc.data_path))
        for name, value in DUCKLAKE_SETTINGS.items():
            con.execute(f"SET {name} = {value}")
        try:
            remote.configure(con, loc.data_path)  # object storage: S3 secret from the credential chain
        except StoreError:
            con.close()
            raise
        opts = f"DATA_PATH '{sql_escape(loc.data_path)}'"
        if loc.root is not None:
            # the catalog keeps the data path it was created with (absolute); a local store's data is
            # always its own data/, so a store copied, moved or restored elsewhere opens where it is now
            # (every file path in the catalog is relative to the data path)
            opts += ", OVERRIDE_DATA_PATH true"
        if loc.sqlite_file is not None:
            # passed to every SQLite connection DuckLake opens (one per transaction); a reader cannot
            # switch the journal mode, and needs not: the mode is stored in the file
            opts += f", META_BUSY_TIMEOUT {BUSY_TIMEOUT_MS}" + ("" if read_only else ", META_JOURNAL_MODE 'WAL'")
        if read_only:
            opts += ", READ_ONLY"
        # an existing catalog is anchored before this process's first SQLite connection opens: that
        # connection closes at the end of the ATTACH's transaction, and closing last it would delete
        # the -wal/-shm files a reader that cannot write the directory needs (anchor.py)
        anchored = loc.sqlite_file is not None and Path(loc.sqlite_file).exists()
        if anchored:
            anchor.hold(loc.sqlite_file)
        try:
            # DuckLake creates an empty catalog's tables with plain CREATE TABLE: hosts opening a new
            # PostgreSQL catalog at once collide there ("duplicate key" while the winner's transaction
            # is open, "relation ... already exists" once it committed); the next attempt finds the
            # catalog made and attaches to it
            retrying(lambda: con.execute(f"ATTACH '{sql_escape(loc.catalog)}' AS {LAKE} ({opts})"),
                     also=("already exists",) if loc.sqlite_file is None else ())
        except duckdb.Error as exc:
            con.close()
            if anchored:
                anchor.release(loc.sqlite_file)
            raise StoreError(_open_error(loc, exc, read_only)) from None
        con.execute(f"USE {LAKE}")
        store = cls(loc, con, read_only)
        if loc.sqlite_file is not None:
            if not anchored:  # a new catalog: anchored now that it exists
                anchor.hold(loc.sqlite_file)
            store._anchored = loc.sqlite_file
        if not read_only and migrate:
            from collector.store.migrate import migrate as _migrate

            _migrate(store)
        return store

    # -- use ----------------------------------------------------------------------------------
    def sql(self, query: str, params: list | None = None) -> duckdb.DuckDBPyConnection:
        return self.con.execute(query, params or [])

    @contextlib.contextmanager
    def transaction(self, what: str = "write", *, lock_timeout: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction under the store's write lock: BEGIN, the body, COMMIT (ROLLBACK on
        error). No retry here (a `with` body cannot be re-run): use `write()` for that."""
        if self.read_only:
            raise StoreError(f"store {self.location.display} is open read-only")
        lock = self.write_lock
        if lock is not None:
            try:
                lock.acquire(what, lock_timeout)
            except LockTimeout as exc:
                raise StoreBusyError(str(exc)) from None
        try:
            self.con.execute("BEGIN")
            try:
                yield self.con
                self.con.execute("COMMIT")
            except BaseException:
                try:
                    self.con.execute("ROLLBACK")
                except duckdb.Error:
                    pass  # a failed COMMIT has already ended the transaction
                raise
        finally:
            if lock is not None:
                lock.release()

    def write(self, body: Callable[[duckdb.DuckDBPyConnection], T], *, what: str = "write",
              rows: int | None = None, deadline: float = WRITE_DEADLINE_S) -> T:
        """Run `body(con)` in a write transaction (see `transaction()`), starting over after a
        transient error until `deadline` seconds have passed; `body` must therefore be safe to repeat
        (everything it did is rolled back before it runs again). Returns what `body` returns."""
        return self.retry(lambda lock_timeout: self._once(body, what, lock_timeout), what=what, rows=rows,
                          deadline=deadline)

    def _once(self, body: Callable[[duckdb.DuckDBPyConnection], T], what: str, lock_timeout: float) -> T:
        with self.transaction(what, lock_timeout=lock_timeout) as con:
            return body(con)

    def retry(self, attempt: Callable[[float], T], *, what: str = "write", rows: int | None = None,
              deadline: float = WRITE_DEADLINE_S) -> T:
        """Call `attempt(lock_timeout)` (one whole transaction) until it succeeds, a non-transient
        error occurs, or `deadline` seconds have passed (then `StoreBusyError`: one line, with the
        number of rows not committed when `rows` is given)."""
        t0 = time.monotonic()
        i = 0

        def give_up(why: str) -> StoreBusyError:
            lost = f" ({rows:,} rows not committed)" if rows is not None else ""
            return StoreBusyError(f"store {self.location.display} busy: gave up on {what}{lost} after "
                                  f"{time.monotonic() - t0:.0f} s: {why}")

        while True:
            left = deadline - (time.monotonic() - t0)
            try:
                return attempt(max(left, 0.0))
            except StoreBusyError as exc:  # the write lock was not free before the deadline
                raise give_up(str(exc)) from None
            except (duckdb.Error, StoreError) as exc:
                if not is_transient(exc):
                    raise
                pause = backoff(i)
                if time.monotonic() - t0 + pause > deadline:
                    raise give_up(f"{i + 1} attempts, last: {_first_line(exc)}") from None
                if i == 2:
                    print(f"routerwatch: store busy, retrying {what}: {_first_line(exc)}", file=sys.stderr, flush=True)
                time.sleep(pause)
                i += 1

    def read(self, fn: Callable[[duckdb.DuckDBPyConnection], T], *, deadline: float = 30.0) -> T:
        """Run a read `fn(con)`, starting over after a transient error (a busy catalog) until `deadline`."""
        return self.retry(lambda _t: fn(self.con), what="read", deadline=deadline)

    def snapshot_id(self) -> int:
        """The store's latest DuckLake snapshot id: changes whenever any writer commits (a cheap poll)."""
        return int(self.read(lambda con: con.execute(f"SELECT id FROM {LAKE}.current_snapshot()").fetchone()[0]))

    def data_file_count(self) -> int | None:
        """How many data files the latest snapshot references, from DuckLake's own catalog table (one
        read, ~7 ms); None when the catalog cannot say. DuckLake reads the whole file list for every
        table a query scans, so this is what makes every query slower between compactions."""
        try:
            return int(self.read(lambda con: con.execute(
                f"SELECT count(*) FROM __ducklake_metadata_{LAKE}.ducklake_data_file WHERE end_snapshot IS NULL"
            ).fetchone()[0]))
        except Exception:  # noqa: BLE001 - another catalog layout: the caller's timer still applies
            return None

    def inserted_since(self, snapshot: int) -> set[str] | None:
        """The tables rows were inserted into by the commits after `snapshot`; None when one of those
        commits did anything else (deleted, compacted, changed a schema: whatever else DuckLake
        records) or names a table the lake does not hold. One catalog read (~5 ms), where the highest
        row id of every table the analyzer reads took ~150 ms: the analyzer service tells the
        commits no rule looks at (the collector's statistics, its own runs) from the others."""
        def changes(con: duckdb.DuckDBPyConnection) -> list:
            return [r[0] for r in con.execute(
                f"SELECT changes FROM ducklake_snapshots('{LAKE}') WHERE snapshot_id > {int(snapshot)}").fetchall()]

        ids: set[str] = set()
        for change in self.read(changes):
            if not isinstance(change, dict) or set(change) - {"tables_inserted_into", "inlined_insert"}:
                self._table_names = {}  # a table may have been renamed or made again: read the names anew
                return None
            for tables in change.values():
                ids.update(str(t) for t in tables or ())
        names = self._table_names
        if ids - names.keys():  # a table made since the last look (a migration)
            names = self._table_names = dict(self.read(lambda con: [
                (str(i), n) for i, n in con.execute(f"SELECT table_id, table_name FROM ducklake_table_info('{LAKE}')").fetchall()]))
            if ids - names.keys():
                return None
        return {names[i] for i in ids}

    def tables(self) -> list[str]:
        rows = self.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? ORDER BY 1", [LAKE]
        ).fetchall()
        return [r[0] for r in rows]

    def secret_key(self) -> bytes:
        """The per-store HMAC key for secret fingerprints (created 0600 on first use by a writer)."""
        return self.location.secret_key(create=not self.read_only)

    def close(self) -> None:
        try:
            self.con.close()
        finally:
            if self._anchored is not None:  # after our own SQLite connections are gone
                anchor.release(self._anchored)
                self._anchored = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()




def _first_line(exc: BaseException) -> str:
    """The informative line of a DuckDB/DuckLake error (they nest "Failed to commit ...:" prefixes)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    for ln in lines:
        if is_transient_text(ln):
            return ln
    return lines[0]


def transient_message(exc: BaseException) -> str:
    """One line for a transient error that reached the top of a command."""
    return f"the store stayed busy (try again): {_first_line(exc)}"


def is_transient_text(text: str) -> bool:
    return any(s in text.lower() for s in _TRANSIENT)


def _open_error(loc: StoreLocation, exc: BaseException, read_only: bool) -> str:
    msg = remote.display_spec(_first_line(exc))
    if read_only and loc.root is not None and "readonly database" in str(exc):
        # WAL mode: a reader needs the catalog's -wal and -shm files; it cannot create them in a
        # read-only directory, and they exist once any writer of this version has opened the store
        return (f"cannot read store {loc.display}: its catalog's -wal/-shm files are missing and this user cannot "
                f"create them (read-only view); start the collector, or run any writer (e.g. `routerwatch store "
                f"info` as the store's owner) once")
    return f"cannot open store {loc.display}: {msg}"
