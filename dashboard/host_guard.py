"""DNS-rebinding defence at the HTTP layer: the dashboard serves only its own Host names, and only
same-origin browsers.

A web page the operator visits can make its own host name resolve to 127.0.0.1 (DNS rebinding) and then
talk to a dashboard on loopback "same-origin": the browser sends `Host: rebind.attacker.test:PORT` and a
matching `Origin`. Streamlit accepts any Host on HTTP requests (its `server.allowedHosts` covers the
websocket only, and is empty by default), so this ASGI middleware sits in front of every HTTP request and
every websocket upgrade:

- `Host` must name this server: localhost, a loopback address, the bind address, or a name given with
  `--allowed-host`; IP literals are also accepted when bound to all interfaces (an IP literal cannot be
  rebound: a browser sending it connected to that address itself).
- `Origin`, when present (browsers always send it on websockets), must be an allowed host too, and the
  same origin as the Host (host name and effective port), so another local web app on another port
  cannot drive the dashboard either.

Refusals are 403 (HTTP) or a refused upgrade (websocket, before accept), and are logged, rate-limited.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

ALLOWED_ENV = "ROUTERWATCH_DASHBOARD_ALLOWED_HOSTS"  # comma-separated, set by `routerwatch dashboard`
BIND_ENV = "ROUTERWATCH_DASHBOARD_BIND"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("0.0.0.0", "::", "")

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def split_host(value: str) -> tuple[str, int | None] | None:
    """`Host` header -> (lower-case host name without brackets or trailing dot, port); None if malformed."""
    try:
        parts = urlsplit("//" + value)
        name, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not name or parts.username is not None or parts.password is not None or parts.path or parts.query \
            or parts.fragment or any(c.isspace() for c in value):
        return None
    return name.lower().rstrip("."), port


class HostPolicy:
    """Which Host and Origin values this server answers."""

    def __init__(self, bind: str, allowed: Iterable[str] = ()):
        self.bind = bind.strip("[]").lower()
        names = {*LOOPBACK_NAMES, *(a.strip().strip("[]").lower().rstrip(".") for a in allowed if a.strip())}
        if self.bind not in WILDCARDS:
            names.add(self.bind)
        self.names = frozenset(names)
        self.any_ip = self.bind in WILDCARDS

    @classmethod
    def from_env(cls) -> HostPolicy:
        allowed = [a for a in os.environ.get(ALLOWED_ENV, "").split(",") if a.strip()]
        return cls(os.environ.get(BIND_ENV, "127.0.0.1"), allowed)

    def host_ok(self, name: str) -> bool:
        if name in self.names:
            return True
        ip = _ip(name)
        return ip is not None and (ip.is_loopback or self.any_ip)

    def check(self, host: str | None, origin: str | None) -> str | None:
        """Why a request with these headers is refused, or None."""
        if not host:
            return "no Host header"
        parsed = split_host(host)
        if parsed is None:
            return f"malformed Host {host[:80]!r}"
        name, port = parsed
        if not self.host_ok(name):
            return f"Host {name[:80]!r} is not this dashboard's (--allowed-host NAME to serve it)"
        if origin is None:
            return None
        o = urlsplit(origin)
        try:
            oname, oport = (o.hostname or "").lower().rstrip("."), o.port
        except ValueError:
            return f"malformed Origin {origin[:80]!r}"
        if o.scheme not in ("http", "https") or not oname:
            return f"Origin {origin[:80]!r} is not a web origin"
        if not self.host_ok(oname):
            return f"Origin {origin[:80]!r} is not this dashboard's"
        default = 443 if o.scheme == "https" else 80
        if oname != name or (oport or default) != (port or default):
            return f"cross-origin request: Origin {origin[:80]!r} for Host {host[:80]!r}"
        return None


class HostGuard:
    """ASGI middleware applying a `HostPolicy` to every HTTP request and websocket upgrade."""

    def __init__(self, app: ASGIApp, policy: HostPolicy | None = None, log_every: float = 1.0):
        self.app = app
        self.policy = policy or HostPolicy.from_env()
        self._lock = threading.Lock()
        self._last_log = 0.0
        self._quiet = 0
        self.log_every = log_every

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for k, v in scope.get("headers") or ():
            headers.setdefault(k.lower(), v)  # the first of duplicates, as most servers do
        host = headers.get(b"host")
        origin = headers.get(b"origin")
        why = self.policy.check(host.decode("latin-1") if host is not None else None,
                                origin.decode("latin-1") if origin is not None else None)
        if why is None:
            await self.app(scope, receive, send)
            return
        self._log(scope, why)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # before accept: the upgrade is refused (403)
            return
        body = f"routerwatch dashboard: refused: {why}\n".encode()
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _log(self, scope: Scope, why: str) -> None:
        client = scope.get("client") or ("?", 0)
        now = time.monotonic()
        with self._lock:
            if now - self._last_log < self.log_every:
                self._quiet += 1
                return
            quiet, self._quiet, self._last_log = self._quiet, 0, now
        more = f" ({quiet} more refused since the last message)" if quiet else ""
        msg = f"routerwatch dashboard: refused {scope['type']} {scope.get('path', '')[:100]} from {client[0]}: {why}{more}"
        print(msg, file=sys.stderr, flush=True)
