"""Batched writes: rows accumulate as Arrow tables and commit together, seconds not rows apart.

DuckLake writes at least one Parquet file per INSERT, so a writer must batch; one flush is one
transaction over every table touched, so a crash loses at most the open batch and never leaves a
half-written batch behind. A flush holds the store's write lock only while it inserts and commits,
and starts over after a transient conflict (`Store.retry`); a flush that gives up keeps its rows.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Mapping

import pyarrow as pa

from collector.store.connection import WRITE_DEADLINE_S, Store
from collector.store.schema import conform


def insert_arrow(con, table: str, batch: pa.Table) -> None:  # noqa: ANN001 - a DuckDB connection
    """Append a conformed Arrow table to `table` inside the caller's transaction (by column name)."""
    name = f"__rw_batch_{table}"
    con.register(name, batch)
    try:
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {name}")
    finally:
        con.unregister(name)


class PendingRows:
    """The rows a writer holds until its next commit, per table in arrival order, with their count and
    when the oldest came (what a `max_delay` timer watches). One short lock, never held across a
    commit, so the caller adding rows never waits for the store."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.tables: dict[str, list[pa.Table]] = {}
        self.rows = 0
        self.first_add: float | None = None

    def add(self, table: str, batch: pa.Table) -> int:
        """Queue `batch` (a conformed, non-empty table); returns the rows now pending."""
        with self._lock:
            self.tables.setdefault(table, []).append(batch)
            self.rows += batch.num_rows
            if self.first_add is None:
                self.first_add = time.monotonic()
            return self.rows

    def take(self) -> tuple[dict[str, list[pa.Table]], int, float | None] | None:
        """Everything pending (tables, row count, oldest add time), leaving nothing; None when empty."""
        with self._lock:
            if not self.tables:
                return None
            taken = self.tables, self.rows, self.first_add
            self.tables, self.rows, self.first_add = {}, 0, None
            return taken

    def put_back(self, tables: dict[str, list[pa.Table]], rows: int, first_add: float | None) -> None:
        """Return what `take()` gave (a commit failed) ahead of the rows added since, keeping the order."""
        with self._lock:
            for t, batches in tables.items():
                self.tables.setdefault(t, [])[:0] = batches
            self.rows += rows
            self.first_add = first_add  # the older of the two: it was added first


class BatchWriter:
    """Collects rows per table and commits them together.

    `max_delay` bounds how far the store lags (the collector passes <= 5 s); `max_rows` bounds memory.
    With `background=True` a thread flushes every `max_delay` seconds, and as soon as `max_rows` are
    pending.

    `add()` never waits for a commit: a flush swaps the pending batch out under a short lock and
    commits it outside that lock, so the caller (the collector's drain loop, which must keep up with
    the kernel's ring buffer) goes on adding rows while DuckDB writes. Flushes are serialised by a
    second lock, so batches reach the store in the order they were added, each as one transaction.
    The one exception is memory: past `hard_rows` pending rows (4 x `max_rows` by default, i.e. the
    store has fallen a whole commit behind several times over) `add()` waits for the commit in progress
    rather than grow without bound.
    """

    def __init__(self, store: Store, *, max_delay: float = 2.0, max_rows: int = 250_000, background: bool = False,
                 hard_rows: int | None = None, deadline: float = WRITE_DEADLINE_S):
        if store.read_only:
            raise ValueError("BatchWriter needs a writable store")
        self.store = store
        self.max_delay = max_delay
        self.max_rows = max_rows
        self.hard_rows = hard_rows if hard_rows is not None else 4 * max_rows
        self.deadline = deadline  # how long one flush keeps retrying before it gives up (rows kept)
        self.failed_flushes = 0
        self._pending = PendingRows()
        self._commit_lock = threading.Lock()  # one flush at a time: batches commit in order
        self._stop = threading.Event()
        self._due = threading.Event()  # max_rows reached: the background thread flushes now
        self.rows_written: dict[str, int] = {}
        self.flushes = 0
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="routerwatch-writer", daemon=True)
            self._thread.start()

    def add(self, table: str, rows: Iterable[Mapping] | pa.Table) -> None:
        """Queue rows for the next commit; RowContractError (naming table and column) when they do not
        fit the table's declaration, before anything is queued."""
        batch = conform(table, rows)
        if batch.num_rows == 0:
            return
        rows = self._pending.add(table, batch)
        if rows < self.max_rows:
            return
        if self._thread is not None and rows < self.hard_rows:
            self._due.set()  # the writer thread commits it; this caller goes on
        else:
            self.flush()  # no writer thread (the caller commits), or memory bound reached

    def pending_rows(self) -> int:
        return self._pending.rows

    def flush(self, deadline: float | None = None) -> int:
        """Commit everything pending in one transaction; returns rows written.

        Transient conflicts are retried for `deadline` seconds (default: the writer's). On a failed
        commit the batch goes back to the front of the pending rows (ahead of rows added meanwhile)
        and the exception propagates: nothing is dropped silently.
        """
        with self._commit_lock:
            taken = self._pending.take()
            if taken is None:
                return 0
            pending, count, first = taken
            try:
                self.store.retry(lambda lock_timeout: self._commit(pending, lock_timeout),
                                 what=f"a batch of {count:,} rows", rows=count,
                                 deadline=self.deadline if deadline is None else deadline)
            except Exception:
                self._pending.put_back(pending, count, first)
                raise
            for t, tables in pending.items():
                self.rows_written[t] = self.rows_written.get(t, 0) + sum(x.num_rows for x in tables)
            self.flushes += 1
            return count

    def _commit(self, pending: dict[str, list[pa.Table]], lock_timeout: float | None = None) -> None:
        """One attempt: every pending table inserted in one transaction under the write lock."""
        batches = {table: pa.concat_tables(tables) for table, tables in pending.items()}  # outside the lock
        with self.store.transaction("batch commit", lock_timeout=lock_timeout) as con:
            for table, batch in batches.items():
                insert_arrow(con, table, batch)

    def _run(self) -> None:
        tick = min(0.5, self.max_delay)
        while not self._stop.is_set():
            due = self._due.wait(tick)
            if self._stop.is_set():
                break
            self._due.clear()
            first = self._pending.first_add
            if due or (first is not None and time.monotonic() - first >= self.max_delay):
                try:
                    self.flush()
                except Exception as exc:  # retried on the next tick; the batch stays pending
                    self.failed_flushes += 1
                    print(f"routerwatch: warning: {exc} (kept: {self.pending_rows():,} rows pending, retrying)",
                          file=sys.stderr, flush=True)

    def close(self) -> None:
        self._stop.set()
        self._due.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
