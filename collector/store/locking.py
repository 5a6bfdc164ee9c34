"""Cross-process locks beside an embedded store: one writer at a time, taken in turn.

Why a lock of our own: on a SQLite catalog in WAL mode a DuckLake transaction reads the catalog when
it starts; if another process commits before it does, SQLite refuses its write with
SQLITE_BUSY_SNAPSHOT ("database is locked"), which neither SQLite's busy timeout nor DuckLake's commit
retries resolve (the whole transaction must start over). Every routerwatch writer therefore holds the
store's write lock from BEGIN to COMMIT, and keeps that span short. The lock is `flock(2)` on a file
in the store directory (released by the kernel when its holder dies, never left stale), and it is
fair enough: a waiter first takes a turnstile, then the lock, so a writer that commits in a loop (an
ingest writing small batches) must queue behind the waiter already at the turnstile instead of
taking the lock straight back. A waiter polls with short sleeps (so a wait can have a deadline); the
holder's pid and purpose are written into the lock file for anyone who waits to read.

A fleet store (PostgreSQL catalog) has no directory and needs no lock: PostgreSQL serialises
writers itself and DuckLake retries the conflicts.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

_POLL_MIN, _POLL_MAX = 0.002, 0.02


class LockTimeout(Exception):
    """The lock was not free before the deadline; the message names its holder."""


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _open(path: Path) -> tuple[int, bool]:
    """(fd, writable): read-write where allowed (to record the holder), else read-only (flock works on both)."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640), True
    except PermissionError:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC), False


class StoreLock:
    """A named, fair, cross-process exclusive lock (`<dir>/.<name>.lock`), re-entrant per thread."""

    def __init__(self, directory: Path, name: str):
        self.path = directory / f".{name}.lock"
        self.turnstile = directory / f".{name}.queue"
        self.name = name
        self._local = threading.local()

    def holder(self) -> str:
        """Who holds the lock, as recorded by the holder ('' if unknown)."""
        try:
            return self.path.read_text().strip()
        except OSError:
            return ""

    def held_here(self) -> bool:
        return getattr(self._local, "depth", 0) > 0

    def acquire(self, what: str, timeout: float | None = None) -> float:
        """Wait for the lock (at most `timeout` seconds); returns the seconds waited."""
        if self.held_here():
            self._local.depth += 1
            return 0.0
        t0 = time.monotonic()
        deadline = None if timeout is None else t0 + timeout
        fd, writable = _open(self.path)
        try:
            # always through the turnstile: a holder that releases and asks again queues behind the
            # waiter that holds the turnstile while it waits for the lock
            q, _ = _open(self.turnstile)
            try:
                self._wait(q, deadline)
                self._wait(fd, deadline)
            finally:
                os.close(q)  # leaves the turnstile to the next waiter
        except BaseException:
            os.close(fd)
            raise
        if writable:
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"pid {os.getpid()}: {what} (since {time.strftime('%H:%M:%S')})\n".encode(), 0)
            except OSError:
                writable = False
        self._local.fd = fd
        self._local.wrote = writable
        self._local.depth = 1
        return time.monotonic() - t0

    def _wait(self, fd: int, deadline: float | None) -> None:
        delay = _POLL_MIN
        while not _try_flock(fd):
            if deadline is not None and time.monotonic() >= deadline:
                who = self.holder()
                raise LockTimeout(f"the store's {self.name} lock is held" + (f" by {who}" if who else ""))
            time.sleep(delay)
            delay = min(delay * 1.5, _POLL_MAX)

    def release(self) -> None:
        depth = getattr(self._local, "depth", 0)
        if depth <= 0:
            raise RuntimeError(f"{self.path} is not held by this thread")
        self._local.depth = depth - 1
        if depth == 1:
            fd = self._local.fd
            self._local.fd = None
            if self._local.wrote:
                # the holder line goes with the lock: a line left behind read as a lock still held by a
                # run long over (docs/performance.md, Analyzer, 2026-12-07), and a holder that cannot
                # write the file would have shown its predecessor's line
                try:
                    os.ftruncate(fd, 0)
                except OSError:
                    pass
            os.close(fd)  # closing the descriptor releases the flock

    @contextlib.contextmanager
    def held(self, what: str, timeout: float | None = None) -> Iterator[float]:
        waited = self.acquire(what, timeout)
        try:
            yield waited
        finally:
            self.release()
