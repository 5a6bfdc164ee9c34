"""Maintenance of a shared store by one designated process: `routerwatch store maintain`; and the
leases that keep one process at a time on a fleet store's shared jobs (maintenance, analyze).

Every writer commits small Parquet files (seconds of rows each); merging them, expiring old snapshots
and deleting files nothing references any more is done by one process for the whole fleet, beside the
writers (DuckLake's maintenance calls are transactions of their own: a writer's commit and a merge do
not conflict, and a file is deleted only once no snapshot younger than the expiry references it).

"One" is enforced, not only configured: on a PostgreSQL catalog the maintainer holds a lease row in a
small table of its own (`routerwatch_lease`, beside DuckLake's tables), taken and renewed by one
atomic upsert; a second maintainer finds the lease held and skips its round. A lease not renewed
(its holder died) expires after three periods and the next maintainer takes over. A local store has
one host and needs no lease.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import duckdb

from collector.store import extensions
from collector.store.connection import Store
from collector.store.maintenance import compact_isolated
from collector.store.sqltext import sql_escape

LEASE = "maintenance"
_PG_ALIAS = "rw_lease_db"


@dataclass
class Round:
    ran: bool
    holder: str
    detail: dict


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pg_conninfo(catalog: str) -> str | None:
    prefix = "ducklake:postgres:"
    return catalog[len(prefix):] if catalog.startswith(prefix) else None




def take_lease(store: Store, holder: str, ttl_s: float, name: str = LEASE) -> str:
    """Take or renew the lease `name` (maintenance, analyze); returns who holds it now (`holder` when
    it is ours). A local store has one host: the caller's own lock applies there."""
    conninfo = _pg_conninfo(store.location.catalog)
    if conninfo is None:
        return holder
    con = store.con
    attached = {r[0] for r in con.execute("SELECT database_name FROM duckdb_databases()").fetchall()}
    if _PG_ALIAS not in attached:
        extensions.load(con, "postgres_scanner")
        con.execute(f"ATTACH '{sql_escape(conninfo)}' AS {_PG_ALIAS} (TYPE postgres)")
    sql = (
        "CREATE TABLE IF NOT EXISTS routerwatch_lease (name text PRIMARY KEY, holder text NOT NULL, "
        "expires timestamptz NOT NULL); "
        f"INSERT INTO routerwatch_lease VALUES ('{sql_escape(name)}', '{sql_escape(holder)}', now() + interval '{float(ttl_s)} seconds') "
        "ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires = EXCLUDED.expires "
        "WHERE routerwatch_lease.expires < now() OR routerwatch_lease.holder = EXCLUDED.holder"
    )
    con.execute("CALL postgres_execute(?, ?)", [_PG_ALIAS, sql])
    row = con.execute(
        f"SELECT holder FROM postgres_query('{_PG_ALIAS}', 'SELECT holder FROM routerwatch_lease WHERE name = ''{sql_escape(sql_escape(name))}''')"
    ).fetchone()
    owner = row[0] if row else holder
    if owner != holder and _dead_here(owner):  # its holder died on this host without releasing it: take over
        con.execute("CALL postgres_execute(?, ?)", [_PG_ALIAS, (
            f"UPDATE routerwatch_lease SET holder = '{sql_escape(holder)}', expires = now() + interval '{float(ttl_s)} seconds' "
            f"WHERE name = '{sql_escape(name)}' AND holder = '{sql_escape(owner)}'")])
        return take_lease(store, holder, ttl_s, name)
    return owner


def _dead_here(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def release_lease(store: Store, holder: str, name: str = LEASE) -> None:
    if _pg_conninfo(store.location.catalog) is None:
        return
    try:
        store.con.execute("CALL postgres_execute(?, ?)", [
            _PG_ALIAS, f"DELETE FROM routerwatch_lease WHERE name = '{sql_escape(name)}' AND holder = '{sql_escape(holder)}'"])
    except duckdb.Error:
        pass  # it expires on its own


def maintain_once(store: Store, *, holder: str, period_s: float, expire_hours: float,
                  log: Callable[[str], None] | None = None) -> Round:
    owner = take_lease(store, holder, ttl_s=3 * period_s)
    if owner != holder:
        return Round(False, owner, {})
    detail = compact_isolated(store.location.spec, expire_older_than_hours=expire_hours, warn=log)
    if store.location.root is None:  # files a failed commit left behind (an object store gone mid-upload)
        try:
            store.sql("CALL ducklake_delete_orphaned_files('lake', older_than => now() - INTERVAL '1 hour')").fetchall()
        except duckdb.Error:
            pass  # older DuckLake without the call: cleanup_old_files still covers expired snapshots
    return Round(True, holder, detail)


def run(spec: str | None, *, every_s: float | None, expire_hours: float, log: Callable[[str], None],
        stop: Callable[[], bool] = lambda: False) -> int:
    """One round (`every_s` None) or a round every `every_s` seconds until `stop()`."""
    holder = holder_name()
    period = every_s or 3600.0
    while True:
        t0 = time.monotonic()
        try:
            with Store.open(spec) as store:
                r = maintain_once(store, holder=holder, period_s=period, expire_hours=expire_hours, log=log)
                if every_s is None:
                    release_lease(store, holder)
        except Exception as exc:  # noqa: BLE001 - a store that is away: try again next round
            if every_s is None:
                raise
            log(f"maintenance round failed: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}")
        else:
            if r.ran:
                log(f"compacted: {r.detail['files_before']} -> {r.detail['files_after']} data files "
                    f"in {time.monotonic() - t0:.1f} s")
            else:
                log(f"maintenance is held by {r.holder}; skipped")
        if every_s is None:
            return 0
        deadline = time.monotonic() + every_s
        while time.monotonic() < deadline:
            if stop():
                return 0
            time.sleep(min(1.0, every_s))
