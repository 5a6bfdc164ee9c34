"""Where the store lives and who this host is: one resolution order used by every command."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

STORE_ENV = "ROUTERWATCH_STORE"
HOST_ID_ENV = "ROUTERWATCH_HOST_ID"


def routerwatch_dir(env: str | None, system: str, user: Callable[[], Path]) -> Path:
    """The one resolution order of every directory routerwatch keeps (store, key logs, proxy CA,
    store buffer, captures): $`env` when set, else `system` for root (the appliance), else `user()`
    (called only then: a user without a home can still name the directory in `env`)."""
    value = os.environ.get(env) if env else None
    if value:
        return Path(value)
    return Path(system) if os.geteuid() == 0 else user()


def xdg_dir(var: str, fallback: str) -> Path:
    """routerwatch's folder under an XDG base directory: $`var`, else ~/`fallback`."""
    return Path(os.environ.get(var) or str(Path.home() / fallback)) / "routerwatch"


def default_store_dir() -> Path:
    """The documented default: /var/lib/routerwatch for root (the appliance), else the XDG data dir."""
    return routerwatch_dir(None, "/var/lib/routerwatch", lambda: xdg_dir("XDG_DATA_HOME", ".local/share"))


def resolve_store(cli_value: str | None = None) -> str:
    """`--store`, else $ROUTERWATCH_STORE, else the default directory."""
    if cli_value:
        return cli_value
    env = os.environ.get(STORE_ENV)
    if env:
        return env
    return str(default_store_dir())


def host_id(cli_value: str | None = None) -> str:
    """A stable name for this host: `--host-id`, else $ROUTERWATCH_HOST_ID, else the hostname."""
    return cli_value or os.environ.get(HOST_ID_ENV) or socket.gethostname()


def keylog_dir() -> Path:
    """Where `routerwatch wrap` writes per-agent TLS key logs (0600 files in a 0700 dir) and the
    live collector watches: /run/routerwatch/keylogs as root, else $XDG_RUNTIME_DIR/routerwatch/keylogs
    (or ~/.local/state/routerwatch/keylogs). Override with $ROUTERWATCH_KEYLOG_DIR."""
    return routerwatch_dir("ROUTERWATCH_KEYLOG_DIR", "/run/routerwatch/keylogs",
                           lambda: xdg_dir("XDG_RUNTIME_DIR", ".local/state") / "keylogs")
