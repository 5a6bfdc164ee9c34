"""collector_stats rows: what the collector saw and what it missed, every interval.

Kernel counters (events seen, ring-buffer losses) are cumulative; rows carry the interval's deltas
in the fixed columns and the cumulative totals in `detail`, so `recorded + lost = generated` can be
checked over any span.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class Stats:
    """Cumulative counters of the collector process plus the kernel's, turned into rows."""

    LOST_KEYS = ("conn_lost", "exec_lost", "exit_lost", "ssl_lost", "dns_lost", "dnsq_lost")

    def __init__(self, host_id: str, mode: str, meta: dict | None = None):
        self.host_id = host_id
        self.mode = mode
        # who reported: version, process start, scope (in every row's detail: a restart shows as a new
        # started_at, a mixed fleet as several versions; the dashboard's Hosts view reads them)
        self.meta = dict(meta or {})
        self.totals: dict[str, int] = {}
        self._last: dict[str, int] = {}
        self._last_ts = time.monotonic()

    def add(self, name: str, n: int = 1) -> None:
        self.totals[name] = self.totals.get(name, 0) + n

    def set(self, name: str, value: int) -> None:
        self.totals[name] = value

    def row(self, *, decrypt_backlog: int = 0, kernel: dict[str, int] | None = None) -> dict:
        now = time.monotonic()
        cur = dict(self.totals)
        for k, v in (kernel or {}).items():
            cur[f"kernel_{k}"] = v
        lost_total = sum(cur.get(f"kernel_{k}", 0) for k in self.LOST_KEYS)
        cur["lost"] = lost_total

        def delta(k: str) -> int:
            return cur.get(k, 0) - self._last.get(k, 0)

        row = {
            "ts": datetime.now(UTC).replace(tzinfo=None),
            "host_id": self.host_id,
            "interval_s": round(now - self._last_ts, 3),
            "events": delta("events"),
            "lost": delta("lost"),
            "capture_drops": delta("capture_drops"),
            "decrypt_backlog": decrypt_backlog,
            "rss_bytes": rss_bytes(),
            "flows_written": delta("flows"),
            "mode": self.mode,
            "detail": json.dumps({**cur, **self.meta}, sort_keys=True),
        }
        self._last, self._last_ts = cur, now
        return row
