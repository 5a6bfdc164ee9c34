"""Store maintenance and single-file exports.

Compaction runs in a child process (`compact_isolated`): once in a CI soak, `routerwatch store
compact` beside the live collector, the analyzer service and an ingest died inside DuckDB with
glibc's "double free or corruption (!prev)" (SIGABRT), not reproduced in 133 further compactions
under similar load (docs/store-and-fleet.md). A native crash there must cost one attempt, not the
command or the maintenance service: each step is one DuckLake transaction, so a step that died
before its commit changed nothing in the catalog (files it had begun writing are unreferenced, and
the next round's cleanup deletes them).
"""

from __future__ import annotations

import faulthandler
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb

from collector.parallel import Child, reply, serve
from collector.store.connection import LAKE, Store
from collector.store.errors import StoreError
from collector.store.permissions import private_dir, private_umask
from collector.store.sqltext import sql_escape

CLEANUP_DELAY_MIN = 60  # files no snapshot references are deleted this long after they were dropped
CHILD_MODULE = "collector.store.maintenance"  # what compact_isolated runs (`python -m`)


def compact(store: Store, *, expire_older_than_hours: float = 24.0) -> dict[str, int]:
    """Flush inlined rows, merge small Parquet files, expire old snapshots, delete unreferenced files.

    Each step is its own write transaction (under the store's write lock, started over on a
    conflict), so other writers wait for one step at a time, never for the whole maintenance."""
    before = _file_count(store)
    hours = float(expire_older_than_hours)
    for what, sql in (
        # small batches are inlined into the catalog; move them into Parquet first
        ("compact: flush inlined data", f"CALL ducklake_flush_inlined_data('{LAKE}')"),
        ("compact: merge files", f"CALL ducklake_merge_adjacent_files('{LAKE}')"),
        ("compact: expire snapshots",
         f"CALL ducklake_expire_snapshots('{LAKE}', older_than => now() - INTERVAL '{hours} hours')"),
        # files merged away or expired at least an hour ago: a reader that started before the merge
        # may still be reading them (the newer ones go at the next compaction)
        ("compact: delete old files",
         f"CALL ducklake_cleanup_old_files('{LAKE}', older_than => now() - INTERVAL '{float(CLEANUP_DELAY_MIN)} minutes')"),
    ):
        store.write(lambda con, sql=sql: con.execute(sql).fetchall(), what=what, deadline=600)
    return {"files_before": before, "files_after": _file_count(store)}


def compact_isolated(spec: str | None, *, expire_older_than_hours: float = 24.0, attempts: int = 2,
                     warn: Callable[[str], None] | None = None) -> dict[str, int]:
    """`compact()` in a child process (`python -m collector.store.maintenance`), started over once
    when the child dies from a signal (a native crash: see the module docstring; its Python stack is
    on stderr). An ordinary error (a store that is missing, busy past every retry) is raised here as a
    `StoreError` with the child's one line, not retried."""
    warn = warn or (lambda line: print(f"routerwatch: {line}", file=sys.stderr, flush=True))
    why = ""
    for attempt in range(1, attempts + 1):
        got: list[tuple[str, object]] = []
        child = Child(CHILD_MODULE, on_reply=got.append, name="routerwatch-compact")
        child.send((spec, float(expire_older_than_hours)))
        status = child.finish()
        if got:  # the child's answer; a crash while it closed the store after answering changes nothing
            kind, value = got[0]
            if kind == "ok":
                return value  # type: ignore[return-value]
            raise StoreError(str(value))
        why = _exit_reason(status)
        if attempt < attempts:
            warn(f"compaction {why}; no step was left half done (each is one transaction): starting over")
    raise StoreError(f"compaction {why}, {attempts} times; the store is consistent (each step is one "
                     "transaction), only not compacted: run it again, and report the stack printed above")


def _exit_reason(status: int) -> str:
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"crashed inside DuckDB ({name})"
    return f"process ended without an answer (exit status {status})"


def _serve() -> None:
    """The child's side of `compact_isolated`: one compaction per request."""
    faulthandler.enable()  # a native crash prints the Python stack it happened under
    for spec, hours in serve():
        try:
            with Store.open(spec) as store:
                reply(("ok", compact(store, expire_older_than_hours=hours)))
        except (StoreError, duckdb.Error) as exc:
            reply(("error", str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__))


def _file_count(store: Store) -> int:
    total = 0
    for table in store.tables():
        total += len(store.sql(f"SELECT * FROM ducklake_list_files('{LAKE}', '{table}')").fetchall())
    return total


def export_duckdb(store: Store, path: str | Path) -> list[str]:
    """Copy every table into one plain .duckdb file (for people who want a single file), 0600: an
    export holds what the store holds, so it is as private as the store."""
    path = Path(path)
    if path.exists():
        raise StoreError(f"{path} exists; choose a new file name")
    tables = store.tables()
    with private_umask():  # the file and its WAL come out 0600, whatever the shell's umask
        store.sql(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS export_db")
        try:
            for t in tables:
                store.sql(f'CREATE TABLE export_db."{t}" AS SELECT * FROM {LAKE}."{t}"')
        finally:
            store.sql("DETACH export_db")
    return tables


def export_parquet(store: Store, directory: str | Path) -> list[str]:
    """One Parquet file per table in `directory` (created 0700; the files 0600)."""
    directory = private_dir(directory)
    tables = store.tables()
    with private_umask():
        for t in tables:
            target = directory / f"{t}.parquet"
            target.unlink(missing_ok=True)  # a file from an earlier export would keep its old mode
            store.sql(f"COPY (SELECT * FROM {LAKE}.\"{t}\") TO '{sql_escape(str(target))}' "
                      "(FORMAT parquet)")
    return tables


if __name__ == "__main__":
    _serve()
