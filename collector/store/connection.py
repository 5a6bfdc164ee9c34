"""Opening a store: DuckDB in memory with a DuckLake catalog attached as `lake`.

A store is named by a directory (single host: `catalog.sqlite` + `data/` Parquet + `secret.key`,
directory 0700) or, for a fleet, by a DuckLake URI (`ducklake:postgres:dbname=... host=...`) with
`ROUTERWATCH_DATA_PATH` naming the shared data path (e.g. `s3://bucket/routerwatch/`).
Writers commit through the catalog, so many writer processes and read-only readers coexist.
"""

from __future__ import annotations

import os
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import duckdb

from collector.config import resolve_store
from collector.store import extensions
from collector.store.errors import StoreError

LAKE = "lake"
DATA_PATH_ENV = "ROUTERWATCH_DATA_PATH"
SECRET_ENV = "ROUTERWATCH_SECRET_FILE"
T = TypeVar("T")

_TRANSIENT = ("database is locked", "conflict", "Transaction", "busy", "SQLITE_BUSY")


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

    def exists(self) -> bool:
        return self.root is None or (self.root / "catalog.sqlite").exists()


def is_transient(exc: BaseException) -> bool:
    """A commit conflict or a busy catalog: worth retrying, never worth losing a batch over."""
    return any(s.lower() in str(exc).lower() for s in _TRANSIENT)


def retrying(fn: Callable[[], T], attempts: int = 20, base_delay: float = 0.05) -> T:
    """Run `fn`, retrying transient catalog conflicts with jittered backoff."""
    for i in range(attempts):
        try:
            return fn()
        except (duckdb.Error, StoreError) as exc:
            if i == attempts - 1 or not is_transient(exc):
                raise
            time.sleep(base_delay * (1.5**i) * (0.5 + random.random()))
    raise AssertionError("unreachable")


class Store:
    """One DuckDB connection with the store's lake attached and selected (`USE lake`)."""

    def __init__(self, location: StoreLocation, con: duckdb.DuckDBPyConnection, read_only: bool):
        self.location = location
        self.con = con
        self.read_only = read_only

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, spec: str | None = None, *, read_only: bool = False, migrate: bool = True) -> Store:
        """Open (and for writers create and migrate) the store named by `spec`."""
        loc = StoreLocation.parse(spec)
        if read_only and not loc.exists():
            raise StoreError(
                f"no store at {loc.spec}: ingest a capture (`routerwatch ingest FILE`) or run the collector first"
            )
        if loc.root is not None and not read_only:
            try:
                loc.root.mkdir(parents=True, exist_ok=True, mode=0o700)
                (loc.root / "data").mkdir(exist_ok=True, mode=0o700)
            except OSError as exc:
                raise StoreError(f"cannot create store directory {loc.root}: {exc.strerror}") from None
        con = duckdb.connect(":memory:", config=dict(extensions.OFFLINE_CONFIG))
        names = ["ducklake", "postgres_scanner" if ":postgres:" in loc.catalog else "sqlite_scanner"]
        extensions.load(con, *names)
        opts = f"DATA_PATH '{_q(loc.data_path)}'"
        if read_only:
            opts += ", READ_ONLY"
        try:
            retrying(lambda: con.execute(f"ATTACH '{_q(loc.catalog)}' AS {LAKE} ({opts})"))
        except duckdb.Error as exc:
            con.close()
            raise StoreError(f"cannot open store {loc.spec}: {_first_line(exc)}") from None
        con.execute(f"USE {LAKE}")
        store = cls(loc, con, read_only)
        if not read_only and migrate:
            from collector.store.migrate import migrate as _migrate

            _migrate(store)
        return store

    # -- use ----------------------------------------------------------------------------------
    def sql(self, query: str, params: list | None = None) -> duckdb.DuckDBPyConnection:
        return self.con.execute(query, params or [])

    def tables(self) -> list[str]:
        rows = self.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? ORDER BY 1", [LAKE]
        ).fetchall()
        return [r[0] for r in rows]

    def secret_key(self) -> bytes:
        """The per-store HMAC key for secret fingerprints (created 0600 on first use by a writer)."""
        path = self.location.secret_file
        if not path.exists():
            if self.read_only:
                raise StoreError(f"store secret {path} is missing")
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
        return path.read_bytes()

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _q(s: str) -> str:
    return s.replace("'", "''")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
