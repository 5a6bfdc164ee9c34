"""Destination classification, router-software fingerprints, model families and SSE stream checks.

One classifier serves flows and exchanges: a destination (host name or IP, port) is `provider`,
`router` (known or user-declared), or `other`; an `other` destination that served an LLM-API-shaped
exchange is a `suspected_router`.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from collector.catalog import Catalog
from collector.catalog.loader import split_host_port

# SSE event types each API's spec defines (a router that emits others is not a faithful proxy).
ANTHROPIC_EVENTS = {
    "message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta",
    "message_stop", "ping", "error",
}
CHAT_EVENTS = {"chat.completion.chunk", "message", "error", "[DONE]", "done"}
BENIGN_STREAM_ANOMALIES = {"error_event"}


@dataclass(frozen=True)
class DestClass:
    cls: str  # provider | router | other
    name: str | None  # catalog entry name
    provider: str | None
    kind: str | None  # catalog kind: provider | router | declared


class Classifier:
    """Match destinations against the catalog's host patterns (cached per distinct destination)."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self._software = catalog.software()
        self._brands = catalog.brand_rows()
        self.classify = lru_cache(maxsize=65536)(self._classify)
        self.brand = lru_cache(maxsize=65536)(self._brand)  # type: ignore[method-assign]
        self._sw_cache: dict[tuple, list[str]] = {}

    def _classify(self, host: str | None, ip: str | None, port: int | None) -> DestClass:
        r = self.catalog.match_host(host, ip, port)
        if r is None:
            return DestClass("other", None, None, None)
        return DestClass("provider" if r["kind"] == "provider" else "router", r["name"], r["provider"], r["kind"])

    def software(self, headers: dict[str, str], path: str | None, port: int | None) -> list[str]:
        """Router software recognised by response headers or by a path only that software serves."""
        key = (tuple(sorted(headers)), path)
        hit = self._sw_cache.get(key)
        if hit is None:
            hit = self._sw_cache[key] = self._software_uncached(headers, path)
        return list(hit)

    def _software_uncached(self, headers: dict[str, str], path: str | None) -> list[str]:
        found: list[str] = []
        names = list(headers)
        for sw in self._software:
            pats = [p.lower() for p in sw.get("headers") or []]
            if any(fnmatch.fnmatchcase(n, p) for p in pats for n in names):
                found.append(sw["name"])
            elif path and path.split("?")[0] in (sw.get("paths") or []):
                found.append(sw["name"])
        return found

    def _brand(self, host: str | None) -> str | None:
        """The provider brand a host name imitates (contains the brand, is not its endpoint)."""
        if not host:
            return None
        h = host.lower()
        for b in self._brands:
            if b["token"] in h:
                d = self.classify(h, None, None)
                if d.cls == "provider" and d.provider == b["brand"]:
                    return None
                return b["brand"]
        return None


def dest_of(host: str | None) -> tuple[str | None, int | None]:
    """'api.example.com:8443' -> ('api.example.com', 8443)."""
    if not host:
        return None, None
    return split_host_port(host)


def parse_headers(value: Any) -> dict[str, str]:
    """Router headers as stored (JSON object or list of pairs) -> {lower-case name: value}."""
    if value is None:
        return {}
    if isinstance(value, str):
        return dict(_parse_header_text(value))
    return _parse_header_value(value)


@lru_cache(maxsize=4096)
def _parse_header_text(text: str) -> tuple[tuple[str, str], ...]:
    try:
        value = json.loads(text)
    except ValueError:
        return ()
    return tuple(_parse_header_value(value).items())


def _parse_header_value(value: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out[str(k).lower()] = str(v)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (list, tuple)) and len(item) == 2:
                out[str(item[0]).lower()] = str(item[1])
            elif isinstance(item, dict) and "name" in item:
                out[str(item["name"]).lower()] = str(item.get("value"))
    return out


_VOLATILE = ("x-ratelimit-", "cf-ray", "x-request-id", "request-id", "x-generation-id", "x-amzn-requestid",
             "x-cloud-trace-context")


def fingerprint(headers: dict[str, str], software: list[str] | None) -> str:
    """A router's response fingerprint: the names of the fingerprint headers it sends (per-request ids
    and rate-limit counters left out), its `server` product (versions dropped) and recognised software.
    Readable on purpose (the Routers page shows it); 'none' when a response carried none of them."""
    names = sorted(h for h in headers if not h.startswith(_VOLATILE) and h != "server")
    server = re.sub(r"[/\s]*[\d.]+\S*", "", headers.get("server", "")).strip().lower()[:40]
    parts = ([f"server={server}"] if server else []) + ([f"sw={'+'.join(sorted(software))}"] if software else []) + names
    return ";".join(parts)[:300] or "none"


_DATE = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$")
_TAIL = re.compile(r"-(?:latest|preview|beta|v\d+(?::\d+)?)$")
_VERSION_DOT = re.compile(r"(?<=\d)\.(?=\d)")
_VENDOR_DOT = re.compile(r"^(?:anthropic|openai|meta|mistral|amazon|cohere|ai21|us|eu|apac|global)\.")


@lru_cache(maxsize=4096)
def model_family(model: str | None, aliases: tuple[tuple[str, str], ...] = ()) -> str | None:
    """'openai/gpt-4o-2024-08-06' -> 'gpt-4o'; 'anthropic.claude-3-5-sonnet-20240620-v1:0' ->
    'claude-3-5-sonnet'; 'claude-sonnet-4-5@20250929' -> 'claude-sonnet-4-5'; OpenRouter's
    'anthropic/claude-3.7-sonnet' -> 'claude-3-7-sonnet' (a dot between version digits is a hyphen)."""
    if not model or not isinstance(model, str):
        return None
    s = model.strip().lower().rsplit("/", 1)[-1].split("@", 1)[0]
    prev = None
    while prev != s:
        prev = s
        s = _VENDOR_DOT.sub("", s)
        s = _TAIL.sub("", s)
        s = _DATE.sub("", s)
    s = _VERSION_DOT.sub("-", s)
    return dict(aliases).get(s, s) or None


def stream_anomalies(api: str | None, summary: Any) -> list[tuple[str, str]]:
    """(kind, detail) for what a faithful stream of `api` would not contain."""
    if summary is None:
        return []
    if isinstance(summary, str):
        try:
            summary = json.loads(summary)
        except ValueError:
            return []
    out: list[tuple[str, str]] = []
    if isinstance(summary, list):  # a per-event list: [{type, output_tokens, model}, ...]
        types: dict[str, int] = {}
        seq: list[int] = []
        models: list[str] = []
        for ev in summary:
            if isinstance(ev, dict):
                t = ev.get("type") or ev.get("event")
                if t:
                    types[str(t)] = types.get(str(t), 0) + 1
                if isinstance(ev.get("output_tokens"), int):
                    seq.append(ev["output_tokens"])
                if ev.get("model") and ev["model"] not in models:
                    models.append(ev["model"])
        summary = {"types": types, "output_tokens_seq": seq, "models": models}
    if not isinstance(summary, dict):
        return []
    types = summary.get("types") or {}
    if isinstance(types, dict):
        unknown = sorted(t for t in types if not _known_event(api, t))
        if unknown:
            out.append(("unknown_event", ",".join(unknown)[:300]))
    seq = summary.get("output_tokens_seq") or []
    if isinstance(seq, list):
        nums = [x for x in seq if isinstance(x, int) and not isinstance(x, bool)]
        for a, b in zip(nums, nums[1:], strict=False):
            if b < a:
                out.append(("tokens_decrease", f"output tokens went from {a} to {b}"))
                break
    models = summary.get("models") or []
    fams = {model_family(m) for m in models if isinstance(m, str)}
    if len(fams) > 1:
        out.append(("model_changed", " -> ".join(str(m) for m in models)[:300]))
    if isinstance(summary.get("after_done"), int) and summary["after_done"] > 0:
        out.append(("after_done", f"{summary['after_done']} events after the terminal event"))
    for a in summary.get("anomalies") or []:
        if isinstance(a, str) and a not in BENIGN_STREAM_ANOMALIES and a not in {k for k, _ in out}:
            out.append((a, "reported by the decoder"))
    return out


def _known_event(api: str | None, t: str) -> bool:
    if api and api.startswith("anthropic"):
        return t in ANTHROPIC_EVENTS
    if api == "openai.responses":
        return t.startswith("response.") or t == "error"
    if api == "openai.chat":
        return t in CHAT_EVENTS
    return True
