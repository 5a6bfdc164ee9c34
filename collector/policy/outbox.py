"""The hook's decisions reach the store without making the agent wait for it: the hook's outbox.

Opening the store and committing costs seconds; an agent waits for its PreToolUse hook on every
tool call. So the hook writes each decision, already redacted with the store's key, as one small
file in an outbox directory (0700; files 0600, written to a temporary name and renamed, so a reader
never sees half a file), answers the agent, and starts a detached importer (`python -m
collector.policy.outbox STORE`) that moves every file into the store. One importer works at a time
(a lock file in the outbox; the others leave at once instead of each opening the store), and it
claims each file by renaming it; a file whose import failed is put back for the next one. Nothing is
lost on a crash: a decision stays in the outbox until an import succeeds. (A long-running writer
that outlives its store is collector.store.spool, a different thing: it needs the store open.)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from collector.store.connection import StoreLocation

SUFFIX = ".decision.json"


def outbox_dir(loc: StoreLocation) -> Path:
    """`gate-outbox/` in the store's directory; for a catalog-URI store, the user's state directory."""
    if loc.root is not None:
        return loc.root / "gate-outbox"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "routerwatch" / "gate-outbox"


def _default(v: object) -> object:
    if isinstance(v, dt.datetime):
        return {"__ts__": v.isoformat()}
    raise TypeError(type(v).__name__)


def _hook(obj: dict) -> object:
    return dt.datetime.fromisoformat(obj["__ts__"]) if set(obj) == {"__ts__"} else obj


def put(loc: StoreLocation, tables: dict[str, list[dict]]) -> Path:
    """Write rows (table -> rows) as one outbox file; returns its path."""
    d = outbox_dir(loc)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = f"{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S%f')}-{os.getpid()}-{secrets.token_hex(3)}"
    tmp = d / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(tables, f, default=_default)
        f.flush()
        os.fsync(f.fileno())
    final = d / (name + SUFFIX)
    os.replace(tmp, final)
    return final


def start_importer(spec: str) -> None:
    """A detached `python -m collector.policy.outbox STORE`: no inherited pipes, its own session."""
    subprocess.Popen([sys.executable, "-m", "collector.policy.outbox", spec], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


def import_outbox(spec: str | None) -> int:
    """Move every decision in the outbox into the store; the number of files imported. One importer
    works at a time (a lock file in the outbox); one that finds the lock taken leaves the work to the
    one holding it, which looks again after it lets go, so a decision put meanwhile is not left behind."""
    import fcntl

    loc = StoreLocation.parse(spec)
    d = outbox_dir(loc)
    done = 0
    while d.is_dir() and any(d.glob("*" + SUFFIX)):
        fd = os.open(d / ".importer.lock", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return done  # another importer is at work
            done += _import_all(spec, d)
        finally:
            os.close(fd)  # releases the lock
    return done


def _import_all(spec: str | None, d: Path) -> int:
    from collector.store import Store
    from collector.store.writer import BatchWriter

    done = 0
    with Store.open(spec) as st:
        while True:
            claimed = []
            for f in sorted(d.glob("*" + SUFFIX)):
                mine = f.with_name(f.name + f".{os.getpid()}.importing")
                try:
                    os.rename(f, mine)
                except FileNotFoundError:
                    continue
                claimed.append(mine)
            if not claimed:
                return done
            w = BatchWriter(st)
            try:
                for f in claimed:
                    for table, rows in json.loads(f.read_text(), object_hook=_hook).items():
                        w.add(table, rows)
                w.close()
            except Exception:
                for f in claimed:  # back in the outbox for the next importer
                    os.replace(f, f.with_name(f.name.split(SUFFIX)[0] + SUFFIX))
                raise
            for f in claimed:
                f.unlink()
            done += len(claimed)


if __name__ == "__main__":
    import_outbox(sys.argv[1] if len(sys.argv) > 1 else None)
