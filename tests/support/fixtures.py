"""pytest fixtures around the router zoo. Import them into a conftest.py or a test module:

    from tests.support.fixtures import pki_dir, zoo  # noqa: F401

    def test_x(zoo):
        router = zoo("inject", tls_version="1.2", alpn=("http/1.1",))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from analyzer.demo.pki import ensure_pki
from analyzer.demo.zoo import RouterHandle, start_router


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CA + leaf (127.0.0.1, ::1, localhost) for the whole session."""
    d = tmp_path_factory.mktemp("zoo-pki")
    ensure_pki(d)
    return d


@pytest.fixture
def zoo(pki_dir: Path) -> Iterator[Callable[..., RouterHandle]]:
    """A factory: zoo(mode, **start_router kwargs) -> a running router, stopped after the test."""
    started: list[RouterHandle] = []

    def make(mode: str = "honest", **kw: Any) -> RouterHandle:
        kw.setdefault("certdir", pki_dir)
        h = start_router(mode, **kw)
        started.append(h)
        return h

    yield make
    for h in started:
        h.stop()
