"""Store maintenance and single-file exports."""

from __future__ import annotations

from pathlib import Path

from collector.store.connection import LAKE, Store
from collector.store.errors import StoreError
from collector.store.permissions import private_dir, private_umask
from collector.store.sqltext import sql_escape

CLEANUP_DELAY_MIN = 60  # files no snapshot references are deleted this long after they were dropped


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
