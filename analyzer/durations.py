"""Durations and points in time as people write them: `90s`, `30m`, `12h`, `7d`, plain seconds.

One parser for every place that takes one: rule metadata (`suppress: 7d`) and the `--since` flags
of `findings` and `report`.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SPAN = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")


def parse_duration(v: Any) -> float | None:
    """Seconds; None for `forever`/`never` (or no value). ValueError for anything else."""
    if v is None or v in ("forever", "never"):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    m = _SPAN.fullmatch(str(v))
    if not m:
        raise ValueError(f"bad duration {v!r} (use seconds, 30m, 12h, 7d or forever)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_since(v: str, now: dt.datetime | None = None) -> dt.datetime:
    """A point in time, naive UTC: an ISO time (2026-01-31T10:00, taken as written) or a span back
    from `now` (90m, 24h, 7d). ValueError for anything else, `forever` included."""
    try:
        return dt.datetime.fromisoformat(v).replace(tzinfo=None)
    except ValueError:
        pass
    secs = parse_duration(v)
    if secs is None:
        raise ValueError(f"not a time or a span: {v!r}")
    return (now or dt.datetime.now(dt.UTC)).replace(tzinfo=None) - dt.timedelta(seconds=secs)
