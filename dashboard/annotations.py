"""The dashboard's own state: finding acknowledgements, notes and saved SQL queries.

Kept APART from the captured data: the dashboard never writes the store (it may not even have write
access to it). State lives in one small SQLite file, `annotations.sqlite`, in the dashboard state
directory: `$ROUTERWATCH_DASHBOARD_STATE`, else `$XDG_STATE_HOME/routerwatch/dashboard`, else
`~/.local/state/routerwatch/dashboard` (directory 0700). Rows carry the store they refer to, so one
state file can serve several stores. Acknowledgements are an append-only log: the latest action wins.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from pathlib import Path

STATE_ENV = "ROUTERWATCH_DASHBOARD_STATE"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS finding_actions (
    store TEXT NOT NULL, finding_id TEXT NOT NULL, ts TEXT NOT NULL, author TEXT,
    action TEXT NOT NULL CHECK (action IN ('ack', 'unack', 'note')), note TEXT
);
CREATE INDEX IF NOT EXISTS finding_actions_id ON finding_actions (store, finding_id);
CREATE TABLE IF NOT EXISTS saved_queries (
    name TEXT PRIMARY KEY, sql TEXT NOT NULL, ts TEXT NOT NULL
);
"""


def state_dir() -> Path:
    env = os.environ.get(STATE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "routerwatch" / "dashboard"


class Annotations:
    """Acknowledge/annotate findings and keep saved queries, in the dashboard's own SQLite file."""

    def __init__(self, store: str, path: Path | None = None):
        self.store = store
        self.path = path or state_dir() / "annotations.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._db() as db:
            db.executescript(_SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def _add(self, finding_id: str, action: str, note: str | None, author: str | None) -> None:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with self._db() as db:
            db.execute("INSERT INTO finding_actions VALUES (?, ?, ?, ?, ?, ?)",
                       (self.store, finding_id, now, author, action, note))

    def acknowledge(self, finding_id: str, author: str | None = None, note: str | None = None) -> None:
        self._add(finding_id, "ack", note, author)

    def unacknowledge(self, finding_id: str, author: str | None = None) -> None:
        self._add(finding_id, "unack", None, author)

    def annotate(self, finding_id: str, note: str, author: str | None = None) -> None:
        self._add(finding_id, "note", note, author)

    def acknowledged(self) -> set[str]:
        """Finding ids whose latest ack/unack action is an ack."""
        with self._db() as db:
            rows = db.execute(
                "SELECT finding_id, action FROM finding_actions WHERE store = ? AND action IN ('ack', 'unack') "
                "ORDER BY rowid", (self.store,)).fetchall()
        state: dict[str, bool] = {}
        for fid, action in rows:
            state[fid] = action == "ack"
        return {f for f, acked in state.items() if acked}

    def history(self, finding_id: str) -> list[tuple[str, str | None, str, str | None]]:
        """(ts, author, action, note), oldest first."""
        with self._db() as db:
            return db.execute(
                "SELECT ts, author, action, note FROM finding_actions WHERE store = ? AND finding_id = ? ORDER BY rowid",
                (self.store, finding_id)).fetchall()

    def save_query(self, name: str, sql: str) -> None:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO saved_queries VALUES (?, ?, ?)", (name, sql, now))

    def saved_queries(self) -> dict[str, str]:
        with self._db() as db:
            return dict(db.execute("SELECT name, sql FROM saved_queries ORDER BY name").fetchall())
