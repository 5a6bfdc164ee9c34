"""Fixtures for proxy tests: a loopback TLS router with its own CA."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.proxy.ca import CertificateAuthority
from tests.collector.proxy.tls_router import Router


@pytest.fixture
def router_ca(tmp_path: Path) -> CertificateAuthority:
    """The router's own CA (not the proxy's)."""
    return CertificateAuthority(tmp_path / "router-ca")


@pytest.fixture
def router(router_ca: CertificateAuthority) -> Iterator[Router]:
    r = Router(router_ca)
    yield r
    r.stop()
