"""A writer that outlives its store: batches commit while the store answers, go to a bounded disk
spool while it does not (PostgreSQL restarting, object storage unreachable, a network cut), and are
replayed in order once it answers again, each exactly once.

Exactly once: every batch has an id, and the transaction that commits its rows also records
(`store_batches`: host, batch id, time, rows). A commit whose outcome is unknown (the connection
died during COMMIT) spills the batch under the same id; the replay first looks the id up and skips a
batch the store already holds. A collector restarted over a non-empty spool replays it first, so
nothing is lost across restarts either (a kill -9 still loses the batch that was only in memory).

Bounded: memory holds at most `max_rows` pending rows (beyond that the batch goes to disk at once,
without waiting for a commit); the spool holds at most `max_spool_bytes`, and a batch that does not
fit is dropped and counted (`store_dropped_rows` in collector_stats: a loss is never silent). One
process owns a spool directory (flock), so two collectors never replay the same batch.

The interface is BatchWriter's (`add`, `flush`, `close`, `pending_rows`, `rows_written`).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.ipc as ipc

from collector.config import routerwatch_dir
from collector.store.connection import Store, is_transient
from collector.store.errors import StoreError
from collector.store.permissions import private_umask
from collector.store.schema import TABLES, conform
from collector.store.writer import PendingRows, insert_arrow

BUFFER_ENV = "ROUTERWATCH_BUFFER_DIR"
BATCHES_TABLE = "store_batches"
_DONE = "COMPLETE"


def default_spool_root() -> Path:
    return routerwatch_dir(BUFFER_ENV, "/var/lib/routerwatch-buffer",
                           lambda: Path.home() / ".local" / "state" / "routerwatch" / "buffer")


def spool_dir_for(host_id: str, root: Path | None = None) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", host_id)[:100] or "host"
    return (root or default_spool_root()) / safe


def _conflict(exc: BaseException) -> bool:
    """A conflict with another writer (retry at once), not the store going away (spool, reconnect)."""
    msg = str(exc).lower()
    return is_transient(exc) and not any(s in msg for s in ("io error", "connect", "timeout", "http", "ssl"))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Batch:
    """Rows of several tables that commit together, under one id."""

    def __init__(self, tables: dict[str, list[pa.Table]], batch_id: str | None = None, ts: dt.datetime | None = None):
        self.tables = tables
        self.id = batch_id or uuid.uuid4().hex
        self.ts = ts or _now()

    @property
    def rows(self) -> int:
        return sum(t.num_rows for ts in self.tables.values() for t in ts)


class Spool:
    """Batches on disk, oldest first: one directory per batch (an Arrow IPC file per table), made
    visible by an atomic rename once complete."""

    def __init__(self, directory: Path, max_bytes: int):
        self.dir = directory
        self.max_bytes = max_bytes
        with private_umask():  # missing parents (the buffer directory) 0700 too
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        self._lockf = open(self.dir / ".lock", "a+")
        try:
            fcntl.flock(self._lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lockf.close()
            raise StoreError(f"spool {self.dir} is in use by another collector (one host id, one collector)") from None
        for tmp in self.dir.glob("*.tmp"):  # a spill cut short by a crash: never complete, never committed
            shutil.rmtree(tmp, ignore_errors=True)
        self._lock = threading.Lock()  # the collector's thread and the writer's may both spill
        found = self.batches()
        self._seq = max((int(p.name.split("-")[0]) for p in found), default=0)
        self.bytes = sum(f.stat().st_size for p in found for f in p.glob("*.arrow"))
        self.count = len(found)  # kept up to date by put/remove: counters and the writer loop never list the dir
        self.rows = sum(self._rows_of(p) for p in found)

    def batches(self) -> list[Path]:
        return sorted(p for p in self.dir.iterdir() if p.is_dir() and not p.name.endswith(".tmp")
                      and (p / _DONE).exists())

    @staticmethod
    def _rows_of(path: Path) -> int:
        try:
            return int((path / _DONE).read_text().split()[1])
        except (OSError, IndexError, ValueError):
            return 0

    def put(self, batch: Batch) -> bool:
        """Write `batch`; False (nothing written) when it would pass the size bound."""
        size = sum(t.nbytes for ts in batch.tables.values() for t in ts)
        with self._lock:
            if self.bytes + size > self.max_bytes:
                return False
            self._seq += 1
            name = f"{self._seq:012d}-{batch.id}"
            self.bytes += size  # reserved now, corrected to the file sizes below
        tmp = self.dir / f"{name}.tmp"
        written = 0
        try:
            tmp.mkdir(mode=0o700)
            for table, parts in batch.tables.items():
                data = pa.concat_tables(parts)
                path = tmp / f"{table}.arrow"
                with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, data.schema) as w:
                    w.write_table(data)
                written += path.stat().st_size
            (tmp / _DONE).write_text(f"{batch.ts.isoformat()} {batch.rows}\n")
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.dir / name)
        except OSError:  # a full or failing disk: the batch is not kept (the caller counts it as dropped)
            shutil.rmtree(tmp, ignore_errors=True)
            with self._lock:
                self.bytes -= size
            return False
        with self._lock:
            self.bytes += written - size
            self.count += 1
            self.rows += batch.rows
        return True

    def load(self, path: Path) -> Batch:
        ts_text, _rows = (path / _DONE).read_text().split()
        tables = {}
        for f in sorted(path.glob("*.arrow")):
            with pa.memory_map(str(f)) as src:
                tables[f.stem] = [ipc.open_file(src).read_all()]
        return Batch(tables, batch_id=path.name.split("-", 1)[1], ts=dt.datetime.fromisoformat(ts_text))

    def remove(self, path: Path) -> None:
        size = sum(f.stat().st_size for f in path.glob("*.arrow"))
        rows = self._rows_of(path)
        shutil.rmtree(path, ignore_errors=True)
        with self._lock:
            self.bytes = max(0, self.bytes - size)
            self.count = max(0, self.count - 1)
            self.rows = max(0, self.rows - rows)

    def close(self) -> None:
        try:
            fcntl.flock(self._lockf, fcntl.LOCK_UN)
        finally:
            self._lockf.close()


class SpoolingWriter:
    """Rows in, committed batches out; the store may come and go (see module docstring)."""

    def __init__(self, open_store: Callable[[], Store], *, host_id: str, store: Store | None = None,
                 spool_dir: Path | None = None, max_delay: float = 2.0, max_rows: int = 250_000,
                 max_spool_bytes: int = 1 << 30, log: Callable[[str], None] | None = None):
        self._open_store = open_store
        self.store = store
        self.host_id = host_id
        self.max_delay = max_delay
        self.max_rows = max_rows
        self.log = log or (lambda _m: None)
        self.spool = Spool(spool_dir or spool_dir_for(host_id), max_spool_bytes)
        self._pending = PendingRows()
        self._commit_lock = threading.Lock()  # the store connection: one transaction at a time
        self._stop = threading.Event()
        self._due = threading.Event()
        self.rows_written: dict[str, int] = {}
        self.flushes = 0
        self.counts = {"store_spilled_batches": 0, "store_replayed_batches": 0, "store_replay_skipped": 0,
                       "store_dropped_rows": 0, "store_reconnects": 0, "store_failures": 0}
        self._down_since: float | None = None if store is not None else time.monotonic()
        self._down_total = 0.0
        self._next_try = 0.0
        self._backoff = 0.5
        self._last_error = ""
        self._thread = threading.Thread(target=self._run, name="routerwatch-spooling-writer", daemon=True)
        self._thread.start()

    # -- the BatchWriter interface ----------------------------------------------------------------
    def add(self, table: str, rows: Iterable[Mapping] | pa.Table) -> None:
        if table not in TABLES:
            raise KeyError(f"unknown table {table!r}")
        batch = conform(table, rows)
        if batch.num_rows == 0:
            return
        if self._pending.add(table, batch) < self.max_rows:
            return
        if self.store is None or self._commit_lock.locked():
            self._spill(self._take())  # the store is away or busy: disk, not memory, and never wait
        else:
            self._due.set()

    def pending_rows(self) -> int:
        return self._pending.rows

    def flush(self) -> int:
        """Commit (or, with the store away, spool) what is pending; returns rows handled."""
        batch = self._take()
        if batch is None:
            return 0
        if self.store is None:
            self._spill(batch)
            return batch.rows
        with self._commit_lock:
            if self._commit(batch, replay=False):
                return batch.rows
        self._spill(batch)
        return batch.rows

    def close(self) -> None:
        self._stop.set()
        self._due.set()
        self._thread.join(timeout=60)  # inside a service manager's stop timeout (the units give 90 s)
        if self._thread.is_alive():  # a commit still hangs on a store that stopped answering: to disk
            self._spill(self._take())
        else:
            self.flush()
        if self.store is not None:
            self.store.close()
        self.spool.close()

    def __enter__(self) -> SpoolingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what collector_stats reports -------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        down = self._down_total + (time.monotonic() - self._down_since if self._down_since is not None else 0.0)
        return {**self.counts, "store_buffered_rows": self.spool.rows, "store_buffered_bytes": self.spool.bytes,
                "store_up": int(self.store is not None), "store_unavailable_ms": int(down * 1000)}

    # -- internals ---------------------------------------------------------------------------------
    def _take(self) -> Batch | None:
        taken = self._pending.take()
        return None if taken is None else Batch(taken[0])

    def _spill(self, batch: Batch | None) -> None:
        if batch is None:
            return
        if self.spool.put(batch):
            self.counts["store_spilled_batches"] += 1
        else:
            self.counts["store_dropped_rows"] += batch.rows
            self.log(f"spool {self.spool.dir} full ({self.spool.bytes:,} bytes) or unwritable: {batch.rows:,} rows dropped")

    def _commit(self, batch: Batch, *, replay: bool) -> bool:
        """One transaction: the rows and their batch record. False: the store is away (now marked so)."""
        store = self.store
        assert store is not None
        con = store.con
        for attempt in range(5):
            try:
                if replay and con.execute(
                    f"SELECT count(*) FROM {BATCHES_TABLE} WHERE ts = ? AND host_id = ? AND batch_id = ?",
                    [batch.ts, self.host_id, batch.id],
                ).fetchone()[0]:
                    self.counts["store_replay_skipped"] += 1
                    return True
                # one transaction (under a local store's write lock; none on a PostgreSQL catalog)
                with store.transaction("spooled batch", lock_timeout=30.0) as tx:
                    for table, parts in batch.tables.items():
                        insert_arrow(tx, table, pa.concat_tables(parts))
                    tx.execute(f"INSERT INTO {BATCHES_TABLE} (ts, host_id, batch_id, rows) VALUES (?, ?, ?, ?)",
                               [batch.ts, self.host_id, batch.id, batch.rows])
            except (duckdb.Error, StoreError, OSError) as exc:
                if _conflict(exc) and attempt < 4:
                    time.sleep(0.05 * (2 ** attempt))  # a commit conflict with another writer: retry now
                    continue
                self._went_away(exc)
                return False
            for t, parts in batch.tables.items():
                self.rows_written[t] = self.rows_written.get(t, 0) + sum(p.num_rows for p in parts)
            self.flushes += 1
            return True
        return False

    def _went_away(self, exc: BaseException) -> None:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        self.counts["store_failures"] += 1
        if self.store is not None:
            try:
                self.store.close()
            except Exception:
                pass
            self.store = None
            self._down_since = time.monotonic()
            self._backoff = 0.5
            self._next_try = time.monotonic() + self._backoff
        if msg != self._last_error:
            from collector.store.remote import display_spec

            self.log(f"store unavailable, buffering to {self.spool.dir}: {display_spec(msg)[:300]}")
            self._last_error = msg

    def _reconnect(self) -> bool:
        if time.monotonic() < self._next_try:
            return False
        try:
            store = self._open_store()
        except Exception as exc:  # noqa: BLE001 - any failure: try again later
            self._backoff = min(self._backoff * 2, 10.0)
            self._next_try = time.monotonic() + self._backoff
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if msg != self._last_error:
                from collector.store.remote import display_spec

                self.log(f"store still unavailable: {display_spec(msg)[:300]}")
                self._last_error = msg
            return False
        self.store = store
        if self._down_since is not None:
            self._down_total += time.monotonic() - self._down_since
            self._down_since = None
        self.counts["store_reconnects"] += 1
        self._last_error = ""
        self.log(f"store reachable again; replaying {self.spool.count} buffered batches")
        return True

    def _replay(self) -> None:
        """Buffered batches, oldest first, each in its own transaction; stops at the first failure."""
        for path in self.spool.batches():
            if self.store is None or self._stop.is_set() and not self._closing_replay:
                return
            try:
                batch = self.spool.load(path)
            except (OSError, ValueError, pa.ArrowInvalid) as exc:  # a damaged spool file: kept aside, counted
                self.log(f"unreadable spool batch {path.name} set aside: {exc}")
                self.spool.count = max(0, self.spool.count - 1)
                path.rename(path.with_name(path.name + ".bad"))
                continue
            with self._commit_lock:
                if not self._commit(batch, replay=True):
                    return
            self.spool.remove(path)
            self.counts["store_replayed_batches"] += 1

    _closing_replay = False

    def _run(self) -> None:
        tick = min(0.25, self.max_delay)
        while not self._stop.is_set():
            due = self._due.wait(tick)
            self._due.clear()
            if self._stop.is_set():
                break
            if self.store is None and not self._reconnect():
                first = self._pending.first_add
                if first is not None and time.monotonic() - first >= self.max_delay:
                    self._spill(self._take())  # memory stays bounded while the store is away
                continue
            if self.spool.count:
                self._replay()
                if self.store is None:
                    continue
            first = self._pending.first_add
            if due or (first is not None and time.monotonic() - first >= self.max_delay):
                self.flush()
        # closing: one last chance for what is buffered, then the final flush (in close())
        if self.store is not None and self.spool.count:
            self._closing_replay = True
            self._replay()
