"""collector.config: the one resolution order of routerwatch's directories, and the defaults built on it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from collector import config
from collector.live.capture import default_capture_dir
from collector.proxy.ca import default_ca_dir
from collector.store.spool import default_spool_root

_ENVS = ("ROUTERWATCH_KEYLOG_DIR", "ROUTERWATCH_PROXY_CA_DIR", "ROUTERWATCH_BUFFER_DIR", "XDG_RUNTIME_DIR",
         "XDG_DATA_HOME", "XDG_CONFIG_HOME")


@pytest.fixture
def user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A non-root user with its own home and no XDG or routerwatch variables set."""
    for k in _ENVS:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    return tmp_path


def test_environment_wins_then_root_then_user(user: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def home() -> Path:
        calls.append(1)
        return user / "mine"

    assert config.routerwatch_dir("RW_TEST_DIR", "/srv/rw", home) == user / "mine"
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert config.routerwatch_dir("RW_TEST_DIR", "/srv/rw", home) == Path("/srv/rw")
    monkeypatch.setenv("RW_TEST_DIR", "/elsewhere")
    assert config.routerwatch_dir("RW_TEST_DIR", "/srv/rw", home) == Path("/elsewhere")
    assert calls == [1]  # the user's directory is looked up only when it is the answer


def test_user_defaults(user: Path) -> None:
    assert config.default_store_dir() == user / ".local/share/routerwatch"
    assert config.keylog_dir() == user / ".local/state/routerwatch/keylogs"
    assert default_ca_dir() == user / ".config/routerwatch/proxy-ca"
    assert default_spool_root() == user / ".local/state/routerwatch/buffer"
    assert default_capture_dir() == user / ".cache/routerwatch/capture"


def test_xdg_and_override_variables(user: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    monkeypatch.setenv("XDG_DATA_HOME", "/data")
    monkeypatch.setenv("XDG_CONFIG_HOME", "/conf")
    assert config.keylog_dir() == Path("/run/user/1000/routerwatch/keylogs")
    assert config.default_store_dir() == Path("/data/routerwatch")
    assert default_ca_dir() == Path("/conf/routerwatch/proxy-ca")
    monkeypatch.setenv("ROUTERWATCH_KEYLOG_DIR", "/k")
    monkeypatch.setenv("ROUTERWATCH_PROXY_CA_DIR", "/ca")
    monkeypatch.setenv("ROUTERWATCH_BUFFER_DIR", "/buf")
    assert (config.keylog_dir(), default_ca_dir(), default_spool_root()) == (Path("/k"), Path("/ca"), Path("/buf"))


def test_root_defaults(user: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert config.default_store_dir() == Path("/var/lib/routerwatch")
    assert config.keylog_dir() == Path("/run/routerwatch/keylogs")
    assert default_ca_dir() == Path("/etc/routerwatch/proxy-ca")
    assert default_spool_root() == Path("/var/lib/routerwatch-buffer")
    assert default_capture_dir() == Path("/var/lib/routerwatch-capture")
