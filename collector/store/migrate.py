"""Bring a store up to `schema.TABLES`: create missing tables, add missing columns, record it."""

from __future__ import annotations

import datetime as dt

import duckdb

from collector.store.connection import LAKE, Store
from collector.store.schema import BACKFILLS, TABLES, schema_hash

MIGRATIONS_TABLE = "schema_migrations"


def _existing(store: Store) -> dict[str, set[str]]:
    rows = store.con.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_catalog = ?", [LAKE]
    ).fetchall()
    out: dict[str, set[str]] = {}
    for table, column in rows:
        out.setdefault(table, set()).add(column)
    return out


def pending_changes(store: Store) -> list[str]:
    """The DDL statements that would bring this store to the declared schema."""
    have = _existing(store)
    ddl: list[str] = []
    if MIGRATIONS_TABLE not in have:
        ddl.append(
            f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} "
            "(version INTEGER, ts TIMESTAMP, schema_hash VARCHAR, description VARCHAR)"
        )
    for table, cols in TABLES.items():
        if table not in have:
            body = ", ".join(f'"{c}" {t}' for c, t in cols)
            ddl.append(f"CREATE TABLE IF NOT EXISTS {table} ({body})")
            continue
        for c, t in cols:
            if c not in have[table]:
                ddl.append(f'ALTER TABLE {table} ADD COLUMN IF NOT EXISTS "{c}" {t}')
    return ddl


def recorded_hash(store: Store) -> str | None:
    """The schema hash of the last migration (None on a new store)."""
    try:
        row = store.con.execute(f"SELECT schema_hash FROM {MIGRATIONS_TABLE} ORDER BY version DESC LIMIT 1").fetchone()
    except duckdb.CatalogException:
        return None
    return row[0] if row else None


def migrate(store: Store) -> list[str]:
    """Apply pending changes in one transaction (under the write lock; started over on a conflict).

    Fast path (every writer opens through here, `routerwatch analyze` and `canary new` included): when
    the last recorded migration carries this version's schema hash, nothing is pending, and the
    column-by-column comparison (an information_schema scan of the lake) is skipped."""
    if recorded_hash(store) == schema_hash() or not pending_changes(store):
        return []

    def attempt(con) -> list[str]:
        ddl = pending_changes(store)  # again inside the transaction: another writer may have migrated
        for stmt in ddl:
            con.execute(stmt)
        for (table, column), sql in BACKFILLS.items():  # rows older than a new column, rewritten once
            if f'ALTER TABLE {table} ADD COLUMN IF NOT EXISTS "{column}" ' in "\n".join(ddl):
                con.execute(sql)
        if ddl:
            version = con.execute(f"SELECT coalesce(max(version), 0) + 1 FROM {MIGRATIONS_TABLE}").fetchone()[0]
            desc = "; ".join(s.split("(")[0].strip() for s in ddl)
            con.execute(
                f"INSERT INTO {MIGRATIONS_TABLE} VALUES (?, ?, ?, ?)",
                [version, dt.datetime.now(dt.UTC).replace(tzinfo=None), schema_hash(), desc[:4000]],
            )
        return ddl

    return store.write(attempt, what="schema migration")
