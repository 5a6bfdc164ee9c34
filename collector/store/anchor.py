"""Keep a SQLite catalog "open" while this process uses it: a tiny helper process holds a read-only
connection (no transaction) until this process lets go.

Why: DuckDB's sqlite extension opens a new SQLite connection for every transaction and closes it at
the end. In WAL mode the last connection to close checkpoints the WAL and deletes the -wal and -shm
files, and the next one to open rebuilds them; a process that opens meanwhile gets SQLITE_BUSY, and
the SQLite bundled with the extension sleeps a whole second per busy retry (no usleep). Measured here:
reads beside two writers stalled 1.0-1.07 s every few seconds without an anchor, never (max 0.04 s)
with one. A connection that stays open keeps the WAL files in place, so nobody checkpoints-on-close
or recovers. Because the anchor opens the catalog read-only, its own close never deletes them either:
a reader that cannot write the store directory (the dashboard's read-only view) then always finds the
-wal and -shm files it needs, even when no writer runs.

The anchor must be another process: SQLite's POSIX advisory locks are per process, and a second SQLite
library (Python's) closing its descriptor of the catalog would drop the locks DuckDB's SQLite holds.
It is the running interpreter with `-I -S` (no site, ~15 ms), ignores SIGINT/SIGTERM (it must outlive
this process's own connections) and exits when its stdin, a pipe from this process, reaches EOF: when
the last Store using it closes, or when this process dies in any way.
"""

from __future__ import annotations

import contextlib
import select
import subprocess
import sys
import threading

_CODE = r"""
import signal, sqlite3, sys
from urllib.parse import quote
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
try:
    con = sqlite3.connect("file:" + quote(sys.argv[1]) + "?mode=ro", uri=True, isolation_level=None, timeout=10)
    con.execute("SELECT count(*) FROM sqlite_master").fetchall()
except sqlite3.Error:
    sys.exit(0)
sys.stdout.write("held\n")
sys.stdout.flush()
sys.stdin.buffer.read()
"""
READY_S = 10.0  # how long hold() waits for the anchor to have the catalog open

_lock = threading.Lock()
_anchors: dict[str, tuple[subprocess.Popen, int]] = {}


def hold(catalog: str) -> None:
    """Start (or share) the anchor of the SQLite file `catalog`; pair every call with `release()`."""
    with _lock:
        proc, n = _anchors.get(catalog, (None, 0))
        if proc is None or proc.poll() is not None:
            proc = _start(catalog)
            if proc is None:  # best effort: without it the store still works, with second-long stalls
                return
            n = 0
        _anchors[catalog] = (proc, n + 1)


def _start(catalog: str) -> subprocess.Popen | None:
    """An anchor that has the catalog open, or None. Waiting for its word matters: an anchor that
    opened only after this process had closed its own connections (a loaded machine) would outlive
    this process's use of the store, holding and recreating the WAL files behind everyone's back."""
    try:
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _CODE, catalog], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except OSError:
        return None
    ready, _, _ = select.select([proc.stdout], [], [], READY_S)
    if ready and proc.stdout.readline() == b"held\n":
        return proc
    _end(proc)  # could not open the catalog (gone, unreadable), or too slow to be of use
    return None


def _end(proc: subprocess.Popen) -> None:
    """Close the anchor's stdin (its signal to leave) and reap it; one that lingers is killed."""
    with contextlib.suppress(OSError):
        proc.stdin.close()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    with contextlib.suppress(OSError):
        proc.stdout.close()


def release(catalog: str) -> None:
    """Drop one hold; the last one ends the anchor (after this process's connections are closed)."""
    with _lock:
        proc, n = _anchors.get(catalog, (None, 0))
        if proc is None:
            return
        if n > 1:
            _anchors[catalog] = (proc, n - 1)
            return
        del _anchors[catalog]
    _end(proc)


def running(catalog: str) -> int | None:
    """The anchor's pid, if one runs for `catalog` (for tests and diagnostics)."""
    with _lock:
        proc, _ = _anchors.get(catalog, (None, 0))
        return proc.pid if proc is not None and proc.poll() is None else None
