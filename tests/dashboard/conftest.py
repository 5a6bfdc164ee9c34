"""A seeded store shared by the dashboard tests (built once per session: ~1 s)."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from collector.store import Store
from tests.support.sample_data import Seeded, seed

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"


@dataclass
class SeededStore:
    path: Path
    seeded: Seeded

    def scalar(self, sql: str, params: list | None = None):
        with Store.open(str(self.path), read_only=True) as s:
            return s.sql(sql, params).fetchone()[0]


@pytest.fixture(scope="session")
def seeded_store(tmp_path_factory: pytest.TempPathFactory) -> SeededStore:
    path = tmp_path_factory.mktemp("dash") / "store"
    end = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0) - dt.timedelta(minutes=2)
    with Store.open(str(path)) as s:
        info = seed(s, flows=20_000, exchanges=2_000, hosts=3, end=end)
    return SeededStore(path, info)


@pytest.fixture(scope="session", autouse=True)
def no_host_capture_ring(tmp_path_factory: pytest.TempPathFactory):
    """Isolate the pages from this host's real live-capture ring (/var/lib/routerwatch-capture exists
    wherever the collector ran as root): an empty ring directory, inherited by dashboard servers."""
    old = os.environ.get("ROUTERWATCH_CAPTURE_DIR")
    os.environ["ROUTERWATCH_CAPTURE_DIR"] = str(tmp_path_factory.mktemp("empty-capture-ring"))
    yield
    if old is None:
        os.environ.pop("ROUTERWATCH_CAPTURE_DIR", None)
    else:
        os.environ["ROUTERWATCH_CAPTURE_DIR"] = old


@pytest.fixture
def dash_env(seeded_store: SeededStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SeededStore:
    """Point the app at the seeded store and a fresh state directory."""
    monkeypatch.setenv("ROUTERWATCH_STORE", str(seeded_store.path))
    monkeypatch.setenv("ROUTERWATCH_DASHBOARD_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("ROUTERWATCH_DASHBOARD_AUTH", raising=False)
    monkeypatch.delenv("ROUTERWATCH_DASHBOARD_TOKEN", raising=False)
    return seeded_store
