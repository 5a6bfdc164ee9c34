"""Store maintenance and single-file exports."""

from __future__ import annotations

from pathlib import Path

from collector.store.connection import LAKE, Store, retrying
from collector.store.errors import StoreError


def compact(store: Store, *, expire_older_than_hours: float = 24.0) -> dict[str, int]:
    """Flush inlined rows, merge small Parquet files, expire old snapshots, delete unreferenced files."""
    before = _file_count(store)
    # small batches are inlined into the catalog; move them into Parquet first
    retrying(lambda: store.sql(f"CALL ducklake_flush_inlined_data('{LAKE}')").fetchall())
    retrying(lambda: store.sql(f"CALL ducklake_merge_adjacent_files('{LAKE}')").fetchall())
    retrying(
        lambda: store.sql(
            f"CALL ducklake_expire_snapshots('{LAKE}', older_than => now() - INTERVAL '{float(expire_older_than_hours)} hours')"
        ).fetchall()
    )
    retrying(lambda: store.sql(f"CALL ducklake_cleanup_old_files('{LAKE}', cleanup_all => true)").fetchall())
    return {"files_before": before, "files_after": _file_count(store)}


def _file_count(store: Store) -> int:
    total = 0
    for table in store.tables():
        total += len(store.sql(f"SELECT * FROM ducklake_list_files('{LAKE}', '{table}')").fetchall())
    return total


def export_duckdb(store: Store, path: str | Path) -> list[str]:
    """Copy every table into one plain .duckdb file (for people who want a single file)."""
    path = Path(path)
    if path.exists():
        raise StoreError(f"{path} exists; choose a new file name")
    tables = store.tables()
    store.sql(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS export_db")
    try:
        for t in tables:
            store.sql(f'CREATE TABLE export_db."{t}" AS SELECT * FROM {LAKE}."{t}"')
    finally:
        store.sql("DETACH export_db")
    return tables


def export_parquet(store: Store, directory: str | Path) -> list[str]:
    """One Parquet file per table in `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tables = store.tables()
    for t in tables:
        target = str(directory / f"{t}.parquet").replace("'", "''")
        store.sql(f"COPY (SELECT * FROM {LAKE}.\"{t}\") TO '{target}' (FORMAT parquet)")
    return tables
