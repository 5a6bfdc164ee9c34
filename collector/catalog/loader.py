"""Load and merge the catalog; expose it as rows (the `routers` table, the rules' temp tables)."""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import ipaddress
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

CATALOG_ENV = "ROUTERWATCH_CATALOG"
_NAMED = ("providers", "routers", "software", "declared_routers")
_UNION = ("agents", "router_key_kinds", "package_sources")
_MAPS = ("brands", "credential_destinations", "settings", "model_aliases")


class CatalogError(ValueError):
    """A catalog file that cannot be used; the message names the file and the problem."""


def builtin_catalog() -> dict[str, Any]:
    text = resources.files("collector.catalog").joinpath("catalog.yaml").read_text()
    return yaml.safe_load(text)


def user_catalog_path(store_root: Path | None) -> Path:
    """$ROUTERWATCH_CATALOG, else `catalog.yaml` beside the store, else ~/.config/routerwatch/catalog.yaml."""
    env = os.environ.get(CATALOG_ENV)
    if env:
        return Path(env)
    if store_root is not None:
        return store_root / "catalog.yaml"
    return Path.home() / ".config" / "routerwatch" / "catalog.yaml"


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base` (see module docstring for the rules)."""
    out = copy.deepcopy(base)
    for key, val in (over or {}).items():
        if key in _NAMED:
            items = {e["name"]: e for e in out.get(key) or []}
            for e in val or []:
                if not isinstance(e, dict) or "name" not in e:
                    raise CatalogError(f"{key}: every entry needs a name ({e!r})")
                if e.get("disabled"):
                    items.pop(e["name"], None)
                else:
                    items[e["name"]] = e
            out[key] = list(items.values())
        elif key in _UNION:
            out[key] = list(dict.fromkeys([*(out.get(key) or []), *(val or [])]))
        elif key in _MAPS:
            out[key] = {**(out.get(key) or {}), **(val or {})}
        elif key == "allowlist":
            al = dict(out.get("allowlist") or {})
            for k, v in (val or {}).items():
                al[k] = list(dict.fromkeys([*(al.get(k) or []), *v])) if isinstance(v, list) else v
            out["allowlist"] = al
        else:
            out[key] = val
    return out


def split_host_port(spec: str) -> tuple[str, int | None]:
    """'host', 'host:port', '[::1]:443', '::1' -> (host, port)."""
    spec = spec.strip().lower()
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if spec.count(":") == 1:
        host, port = spec.split(":")
        if port.isdigit():
            return host, int(port)
    return spec, None


def router_label(dest: str | None, port: int | None) -> str | None:
    """How an uncatalogued router is named: its host, plus the port unless it is 443/80."""
    if not dest:
        return None
    if port and port not in (443, 80):
        return f"[{dest}]:{port}" if ":" in dest else f"{dest}:{port}"
    return dest


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    h = host.strip("[]").lower()
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


@dataclass
class Catalog:
    """The merged catalog plus where it came from."""

    data: dict[str, Any]
    sources: list[str] = field(default_factory=list)

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.data, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def setting(self, name: str, default: Any = None) -> Any:
        return (self.data.get("settings") or {}).get(name, default)

    # -- rows ---------------------------------------------------------------------------------
    def host_rows(self) -> list[dict[str, Any]]:
        """One row per (entry, host pattern): the catalog part of the `routers` table.
        `priority` orders overlapping matches (declared routers win, then providers, then routers)."""
        rows: list[dict[str, Any]] = []
        user_names = self._user_names()

        def add(kind: str, e: dict, prio: int, section: str) -> None:
            for spec in e.get("hosts") or []:
                host, port = split_host_port(str(spec))
                rows.append(
                    {
                        "name": e["name"],
                        "kind": kind,
                        "host_pattern": host,
                        "port": e.get("port", port),
                        "provider": e.get("provider") if kind == "provider" else None,
                        "software": e.get("software"),
                        "match_headers": None,
                        "match_paths": None,
                        "source": "user" if (section, e["name"]) in user_names else "builtin",
                        "priority": prio,
                    }
                )

        for e in self.data.get("declared_routers") or []:
            add("declared", e, 0, "declared_routers")
        for e in self.data.get("providers") or []:
            add("provider", e, 1, "providers")
        for e in self.data.get("routers") or []:
            add("router", e, 2, "routers")
        for e in self.data.get("software") or []:
            rows.append(
                {
                    "name": e["name"],
                    "kind": "software",
                    "host_pattern": None,
                    "port": None,
                    "provider": None,
                    "software": e["name"],
                    "match_headers": [h.lower() for h in e.get("headers") or []],
                    "match_paths": list(e.get("paths") or []),
                    "source": "user" if ("software", e["name"]) in user_names else "builtin",
                    "priority": 9,
                }
            )
        return rows

    def allowlist_entries(self) -> list[tuple[str, int | None]]:
        """(host pattern, port or None) for each allowlist entry ('host', 'host:port', '*.domain')."""
        return [split_host_port(str(h)) for h in (self.data.get("allowlist") or {}).get("hosts") or []]

    def allow_loopback(self) -> bool:
        return bool((self.data.get("allowlist") or {}).get("allow_loopback", True))

    def credential_rows(self) -> list[dict[str, str]]:
        """(kind, host pattern) where a provider credential legitimately goes."""
        out = []
        for e in self.data.get("providers") or []:
            for kind in e.get("key_kinds") or []:
                for spec in e.get("hosts") or []:
                    out.append({"kind": kind, "pattern": split_host_port(str(spec))[0]})
        for kind, pats in (self.data.get("credential_destinations") or {}).items():
            for p in pats or []:
                out.append({"kind": kind, "pattern": split_host_port(str(p))[0]})
        return out

    def brand_rows(self) -> list[dict[str, str]]:
        return [
            {"brand": brand, "token": tok.lower()}
            for brand, toks in (self.data.get("brands") or {}).items()
            for tok in toks or []
        ]

    def model_aliases(self) -> tuple[tuple[str, str], ...]:
        """Model families a provider or router may legitimately return for one another."""
        return tuple(sorted((str(k).lower(), str(v).lower()) for k, v in (self.data.get("model_aliases") or {}).items()))

    def software(self) -> list[dict[str, Any]]:
        return list(self.data.get("software") or [])

    # -- matching in Python (the SQL side uses GLOB on the same patterns) ----------------------
    def match_host(self, host: str | None, ip: str | None = None, port: int | None = None) -> dict[str, Any] | None:
        """The catalog entry (a host row) that names this destination: declared routers first, then
        providers, then known routers; a row with a port matches only that port."""
        rows = self.__dict__.get("_sorted_rows")
        if rows is None:
            rows = self.__dict__["_sorted_rows"] = sorted(
                (r for r in self.host_rows() if r["host_pattern"]), key=lambda r: r["priority"])
        names = [h.lower().strip("[]") for h in (host, ip) if h]
        for r in rows:
            if r["port"] is not None and (port is None or int(r["port"]) != int(port)):
                continue
            if any(fnmatch.fnmatchcase(n, r["host_pattern"]) for n in names):
                return r
        return None

    def router_names(self, host: str, port: int | None) -> tuple[str, tuple[str, ...]]:
        """How a router is named to people (its catalog name, else host[:port] without 443/80) and every
        name a policy override may use for it."""
        row = self.match_host(host, None, port)
        hp = f"[{host}]:{port}" if ":" in host and port else f"{host}:{port}" if port else host
        plain = router_label(host, port) or host
        label = row["name"] if row else plain
        return label, tuple(dict.fromkeys((label, host, hp, plain)))

    def is_allowlisted(self, host: str | None, port: int | None = None) -> bool:
        """Loopback (unless switched off), allowlist entries, provider and router endpoints."""
        if not host:
            return False
        cache = self.__dict__.setdefault("_allow_cache", {})
        key = (host, port)
        if key not in cache:
            cache[key] = self._is_allowlisted(host, port)
        return cache[key]

    def _is_allowlisted(self, host: str, port: int | None) -> bool:
        h = host.lower().strip("[]")
        if self.allow_loopback() and is_loopback(h):
            return True
        pats = self.allowlist_entries() + [(r["host_pattern"], r["port"]) for r in self.host_rows() if r["host_pattern"]]
        return any(fnmatch.fnmatchcase(h, p) and (pp is None or pp == port) for p, pp in pats)

    def is_package_source(self, host: str | None, url: str | None = None) -> bool:
        """A package source installs may use without being an execution indicator: a `package_sources`
        entry, either a host pattern (`pypi.org`, `*.corp.example`) or a host/path prefix pattern
        (`github.com/psf/*`) matched against the URL without its scheme."""
        if not host:
            return False
        h = host.lower().strip("[]")
        where = None
        if url and "://" in url:
            where = url.split("://", 1)[1].split("?", 1)[0].split("#", 1)[0].lower()
            where = where.split("@", 1)[-1] if "@" in where.split("/", 1)[0] else where
        for pat in (self.data.get("package_sources") or []):
            p = str(pat).lower().strip()
            if "/" in p:
                if where and (fnmatch.fnmatchcase(where, p) or fnmatch.fnmatchcase(where, p.rstrip("/*") + "/*")):
                    return True
            elif fnmatch.fnmatchcase(h, p):
                return True
        return False

    def _user_names(self) -> set[tuple[str, str]]:
        return {(k, n) for k, n in self.data.get("_user_entries", [])}


def load_catalog(store_root: Path | None = None, extra: dict[str, Any] | None = None) -> Catalog:
    """Builtin catalog, merged with the user's file (if present) and `extra` (tests, fixtures)."""
    data = builtin_catalog()
    sources = ["builtin"]
    user_entries: list[tuple[str, str]] = []
    path = user_catalog_path(store_root)
    overlays: list[tuple[str, dict]] = []
    if path.is_file():
        try:
            over = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise CatalogError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(over, dict):
            raise CatalogError(f"{path}: expected a mapping at the top level")
        overlays.append((str(path), over))
    if extra:
        overlays.append(("extra", extra))
    for src, over in overlays:
        data = merge(data, over)
        sources.append(src)
        for key in _NAMED:
            user_entries += [(key, e["name"]) for e in over.get(key) or [] if isinstance(e, dict) and "name" in e]
    data["_user_entries"] = user_entries
    return Catalog(data, sources)
