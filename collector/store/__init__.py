"""The store: DuckDB + DuckLake (SQLite catalog on one host, PostgreSQL + object storage for a fleet).

Public surface:
- `Store.open(location, read_only=...)` -> a connection with the lake attached as `lake` and in use
- `BatchWriter` for batched Arrow writes (seconds, not rows)
- `compact()` for maintenance, `export_duckdb()` / `export_parquet()` for single-file copies
"""

from collector.store.connection import Store
from collector.store.errors import StoreError
from collector.store.writer import BatchWriter

__all__ = ["Store", "StoreError", "BatchWriter"]
