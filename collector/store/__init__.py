"""The store: DuckDB + DuckLake (SQLite catalog on one host, PostgreSQL + object storage for a fleet).

Public surface:
- `Store.open(location, read_only=...)` -> a connection with the lake attached as `lake` and in use
- `BatchWriter` for batched Arrow writes (seconds, not rows)
- `compact()` for maintenance, `export_duckdb()` / `export_parquet()` for single-file copies
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from collector.store.errors import StoreError

if TYPE_CHECKING:
    from collector.store.connection import Store
    from collector.store.writer import BatchWriter

__all__ = ["Store", "StoreError", "BatchWriter"]


def __getattr__(name: str):  # lazy: `routerwatch --help` must not load duckdb and pyarrow
    if name == "Store":
        from collector.store.connection import Store

        return Store
    if name == "BatchWriter":
        from collector.store.writer import BatchWriter

        return BatchWriter
    raise AttributeError(name)
