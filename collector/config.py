"""Where the store lives and who this host is: one resolution order used by every command."""

from __future__ import annotations

import os
import socket
from pathlib import Path

STORE_ENV = "ROUTERWATCH_STORE"
HOST_ID_ENV = "ROUTERWATCH_HOST_ID"


def default_store_dir() -> Path:
    """The documented default: /var/lib/routerwatch for root (the appliance), else the XDG data dir."""
    if os.geteuid() == 0:
        return Path("/var/lib/routerwatch")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "routerwatch"


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
    env = os.environ.get("ROUTERWATCH_KEYLOG_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/run/routerwatch/keylogs")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "routerwatch" / "keylogs"
    return Path.home() / ".local" / "state" / "routerwatch" / "keylogs"
