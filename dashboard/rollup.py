"""Per-minute flow aggregates kept in the reader's own in-memory database, extended incrementally.

Pages ask "flows per hour", "top destinations", "first time this host reached X": on 10M flows each
is a full scan (~0.3-1 s on two cores). The dashboard is a long-running reader, so it keeps two small
aggregates in its private in-memory DuckDB (never in the store) and extends them from the rows
DuckLake reports as inserted since the last snapshot it saw (`ducklake_table_insertions`):

- `flow_rollup`: (minute, host, destination, ip, port) -> flows, bytes, last start
- `dest_first`: (host, destination) -> first seen, the pid and port of that first flow, flows

If anything looks off (snapshots expired, compaction rewrote files, row counts disagree) the
aggregates are rebuilt from a consistent snapshot (`AT (VERSION => n)`). Windows are minute-aligned.
"""

from __future__ import annotations

import threading
import time

import duckdb

ROLLUP = "memory.main.flow_rollup"
FIRST = "memory.main.dest_first"

_AGG = ("date_trunc('minute', ts_start) AS minute, host_id, coalesce(server_name, dst_ip) AS destination, "
        "dst_ip, dst_port, count(*) AS flows, sum(bytes_out) AS bytes_out, sum(bytes_in) AS bytes_in, "
        "max(ts_start) AS last_start")
_FIRST = ("host_id, coalesce(server_name, dst_ip) AS destination, min(ts_start) AS first_seen, "
          "arg_min(pid, ts_start) AS pid, arg_min(dst_port, ts_start) AS dst_port, count(*) AS flows")


class FlowRollup:
    """Keeps the aggregates current; `refresh()` is cheap when nothing was committed."""

    def __init__(self, cursor_factory, min_interval: float = 1.0):
        self._cursor = cursor_factory
        self._lock = threading.Lock()
        self.snapshot: int | None = None
        self.rows = 0
        self._checked = 0.0
        self.min_interval = min_interval
        self.rebuilds = 0
        self.increments = 0

    def refresh(self) -> None:
        """Bring the aggregates to the latest snapshot (at most once per `min_interval`)."""
        if time.monotonic() - self._checked < self.min_interval and self.snapshot is not None:
            return
        with self._lock:
            cur = self._cursor()
            try:
                snap = int(cur.execute("SELECT id FROM lake.current_snapshot()").fetchone()[0])
                if snap == self.snapshot:
                    self._checked = time.monotonic()
                    return
                if self.snapshot is None:
                    self._rebuild(cur, snap)
                else:
                    try:
                        self._extend(cur, self.snapshot + 1, snap)
                    except duckdb.Error:
                        self._rebuild(cur, snap)
                self._checked = time.monotonic()
            finally:
                cur.close()

    def _rebuild(self, cur: duckdb.DuckDBPyConnection, snap: int) -> None:
        src = f"(SELECT * FROM lake.flows AT (VERSION => {snap}))"
        cur.execute("BEGIN")
        cur.execute(f"CREATE OR REPLACE TABLE {ROLLUP} AS SELECT {_AGG} FROM {src} GROUP BY ALL")
        cur.execute(f"CREATE OR REPLACE TABLE {FIRST} AS SELECT {_FIRST} FROM {src} GROUP BY ALL")
        cur.execute("COMMIT")
        self.rows = int(cur.execute(f"SELECT coalesce(sum(flows), 0) FROM {ROLLUP}").fetchone()[0])
        self.snapshot = snap
        self.rebuilds += 1

    def _extend(self, cur: duckdb.DuckDBPyConnection, lo: int, hi: int) -> None:
        expected = int(cur.execute(f"SELECT count(*) FROM lake.flows AT (VERSION => {hi})").fetchone()[0])
        new = f"ducklake_table_insertions('lake', 'main', 'flows', {lo}, {hi})"
        cur.execute("BEGIN")
        try:
            added = int(cur.execute(f"SELECT count(*) FROM {new}").fetchone()[0])
            if self.rows + added != expected:  # rewritten files or deletes: start over
                raise duckdb.Error(f"rollup drift: {self.rows} + {added} != {expected}")
            if added:
                cur.execute(f"INSERT INTO {ROLLUP} SELECT {_AGG} FROM {new} GROUP BY ALL")
                cur.execute(
                    f"CREATE OR REPLACE TABLE {FIRST} AS SELECT host_id, destination, min(first_seen) AS first_seen, "
                    "arg_min(pid, first_seen) AS pid, arg_min(dst_port, first_seen) AS dst_port, "
                    f"sum(flows) AS flows FROM (SELECT * FROM {FIRST} UNION ALL SELECT {_FIRST} FROM {new} "
                    "GROUP BY ALL) GROUP BY ALL")
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        self.rows += added
        self.snapshot = hi
        self.increments += 1
