"""Router fingerprint headers: which response headers identify the software between agent and model.

The analyzer's catalog (collector/catalog/catalog.yaml `software`) names router software by header
globs too; this list decides what the collector keeps in `llm_exchanges.router_headers` (values
redacted) and gives a first guess of the software in `llm_exchanges.router`.
"""

from __future__ import annotations

import re
from fnmatch import translate

# kept (lower-case globs): router software, provider identity, proxies and CDNs on the way
KEEP = (
    "x-oneapi-*", "x-new-api-*", "x-litellm-*", "x-openrouter-*", "openrouter-*", "helicone-*", "x-portkey-*",
    "x-sub2api-*", "x-one-hub-*", "x-aiproxy-*", "x-kong-*", "x-envoy-*", "x-bifrost-*",
    "server", "via", "x-powered-by", "x-request-id", "request-id", "x-generation-id",
    "openai-*", "anthropic-*", "x-ratelimit-*", "cf-ray", "x-amzn-requestid", "x-cloud-trace-context",
    "x-goog-*", "x-served-by",
)  # fmt: skip

# software name -> header globs that prove it (checked in order: new-api also sends x-oneapi-request-id)
SOFTWARE = (
    ("new-api", ("x-new-api-*",)),
    ("one-api", ("x-oneapi-*",)),
    ("litellm", ("x-litellm-*",)),
    ("openrouter", ("x-openrouter-*", "openrouter-*")),
    ("helicone", ("helicone-*",)),
    ("portkey", ("x-portkey-*",)),
    ("sub2api", ("x-sub2api-*",)),
)


_KEEP_RX = re.compile("|".join(f"(?:{translate(g)})" for g in KEEP))


def router_headers(headers: list[tuple[str, str]]) -> dict[str, str]:
    """The fingerprint-relevant response headers (lower-case names; repeated headers joined by ', ')."""
    out: dict[str, str] = {}
    for k, v in headers:
        lk = k.lower()
        if _KEEP_RX.match(lk):
            out[lk] = f"{out[lk]}, {v}" if lk in out else v
    return out


_SOFTWARE_RX = [(name, re.compile("|".join(f"(?:{translate(g)})" for g in globs))) for name, globs in SOFTWARE]


def router_software(kept: dict[str, str]) -> str | None:
    if not kept:
        return None
    for name, rx in _SOFTWARE_RX:
        if any(rx.match(k) for k in kept):
            return name
    return None
