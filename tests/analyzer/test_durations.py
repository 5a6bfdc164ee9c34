"""Durations (rule `suppress:`) and `--since` values: every accepted spelling, and refusals."""

from __future__ import annotations

import datetime as dt

import pytest

from analyzer.durations import parse_duration, parse_since
from tests.conftest import run_cli

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize("v,secs", [
    (None, None), ("forever", None), ("never", None), (90, 90.0), (1.5, 1.5), ("45", 45.0), ("45s", 45.0),
    ("30m", 1800.0), ("12h", 43200.0), ("7d", 604800.0), (" 1.5 h ", 5400.0),
])
def test_durations(v, secs) -> None:  # noqa: ANN001
    assert parse_duration(v) == secs


@pytest.mark.parametrize("v", ["", "7w", "-5m", "d", "1e3", "5 minutes", "1h30m"])
def test_bad_durations(v: str) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(v)


@pytest.mark.parametrize("v,want", [
    ("90m", dt.datetime(2026, 3, 1, 10, 30)), ("24h", dt.datetime(2026, 2, 28, 12, 0)),
    ("7d", dt.datetime(2026, 2, 22, 12, 0)), ("3600", dt.datetime(2026, 3, 1, 11, 0)),
    ("2026-01-31T10:00", dt.datetime(2026, 1, 31, 10, 0)), ("2026-01-31", dt.datetime(2026, 1, 31)),
    ("20260131", dt.datetime(2026, 1, 31)),  # ISO basic format stays a date, not 20 million seconds
    ("2026-01-31T10:00+02:00", dt.datetime(2026, 1, 31, 10, 0)),  # taken as written (as before)
])
def test_since(v: str, want: dt.datetime) -> None:
    assert parse_since(v, now=NOW) == want


@pytest.mark.parametrize("v", ["forever", "yesterday", "7w", ""])
def test_bad_since(v: str) -> None:
    with pytest.raises(ValueError):
        parse_since(v, now=NOW)


def test_since_flag_error_is_one_line_exit_2(tmp_path) -> None:  # noqa: ANN001
    p = run_cli("findings", "--store", str(tmp_path / "s"), "--since", "yesterday", timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "--since 'yesterday': use an ISO time" in p.stderr
