"""Key logs the live collector may use: `routerwatch wrap` runs (sidecar + key log in
collector.config.keylog_dir()) and key-log files named on the command line.

A wrap run's sidecar (wrap-<id>.json) names the agent's pid and start time; the collector claims the
run (wrap-<id>.claimed) so wrap leaves the keys for it, decrypts the run's flows, and deletes the key
log and sidecar once the agent has exited and its flows are done, when the sidecar says
`delete_after_use`. Key material is read by tshark in place: never copied, never stored.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from collector import config


@dataclass
class KeylogRun:
    run_id: str
    keylog: Path
    sidecar: Path | None
    pid: int | None  # None: applies to every outbound flow (a key log named with --keylog)
    process_start: float | None = None
    delete_after_use: bool = False
    status: str = "running"
    end_time: float | None = None
    pending: int = 0  # flows queued for decryption

    @property
    def claim_marker(self) -> Path | None:
        return self.sidecar.with_suffix(".claimed") if self.sidecar else None


class KeylogWatcher:
    def __init__(self, directory: Path | None = None, extra: list[str] | None = None, *, rescan_s: float = 0.5,
                 grace_s: float = 3.0):
        self.dir = Path(directory) if directory else config.keylog_dir()
        self.runs: dict[str, KeylogRun] = {}
        for p in extra or []:
            self.runs[f"file:{p}"] = KeylogRun(f"file:{p}", Path(p), None, None)
        self.rescan_s = rescan_s
        self.grace_s = grace_s
        self._next = 0.0
        self.deleted = 0
        self._lock = threading.Lock()  # the collector loop reads runs, the decrypt thread updates them

    def scan(self, force: bool = False) -> None:
        with self._lock:
            self._scan(force)

    def _scan(self, force: bool) -> None:
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + self.rescan_s
        try:
            sidecars = list(self.dir.glob("wrap-*.json"))
        except OSError:
            return
        for sc in sidecars:
            try:
                meta = json.loads(sc.read_text())
            except (OSError, ValueError):
                continue  # being rewritten (atomic replace) or removed
            rid = meta.get("run_id") or sc.stem
            run = self.runs.get(rid)
            if run is None:
                run = self.runs[rid] = KeylogRun(rid, self.dir / meta.get("keylog", f"wrap-{rid}.keylog"), sc, None)
                marker = run.claim_marker
                try:
                    os.close(os.open(marker, os.O_WRONLY | os.O_CREAT, 0o600))
                except OSError:
                    pass
            run.pid = meta.get("pid") or run.pid
            run.process_start = meta.get("process_start") or run.process_start
            run.delete_after_use = bool(meta.get("delete_after_use"))
            run.status = meta.get("status", run.status)
            run.end_time = meta.get("end_time") or run.end_time

    def by_pid(self) -> dict[int, KeylogRun]:
        with self._lock:
            return {r.pid: r for r in self.runs.values() if r.pid and r.keylog.exists()}

    def global_runs(self) -> list[KeylogRun]:
        with self._lock:
            return [r for r in self.runs.values() if r.pid is None and r.keylog.exists()]

    def cleanup(self) -> None:
        """Delete finished runs' key material when their sidecar asks for it."""
        with self._lock:
            self._cleanup()

    def _cleanup(self) -> None:
        now = time.time()
        for rid, run in list(self.runs.items()):
            if run.sidecar is None:
                continue
            if run.status in ("exited", "failed") and run.pending == 0 and (run.end_time or 0) + self.grace_s <= now:
                if run.delete_after_use:
                    for p in (run.keylog, run.sidecar, run.claim_marker):
                        try:
                            p.unlink()
                        except (FileNotFoundError, TypeError):
                            pass
                    self.deleted += 1
                del self.runs[rid]
