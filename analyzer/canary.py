"""Canary credentials: realistic-looking fakes, printed once, registered only by fingerprint.

Plant one where an agent (and so a router) can see it; if it ever shows up in traffic, rule
`canary-seen` fires. The fingerprint is the store's own (collector.secrets: HMAC with the store
key over the detector's canonical value), so it matches `secrets_seen.fingerprint`.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import string
import zlib
from dataclasses import dataclass

from collector.secrets import Fingerprinter, canonical, detect

KINDS = ("aws", "openai", "anthropic", "github", "eth")
_B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_ALNUM = string.ascii_letters + string.digits


@dataclass
class Canary:
    canary_id: str
    kind: str
    text: str  # what to plant (printed once; never stored)
    parts: list[tuple[str, str]]  # (detector kind, value) registered by fingerprint


def _rand(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def _b62(n: int, width: int) -> str:
    out = ""
    while n:
        n, r = divmod(n, 62)
        out = _B62[r] + out
    return out.rjust(width, "0")


def generate(kind: str) -> tuple[str, list[str]]:
    """(text to plant, the secret values inside it) in the provider's real format."""
    if kind == "aws":
        key_id = "AKIA" + _rand(string.ascii_uppercase + "234567", 16)
        secret = base64.b64encode(secrets.token_bytes(30)).decode()[:40]
        text = f"[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
        return text, [key_id, secret]
    if kind == "openai":
        url = string.ascii_letters + string.digits + "-_"
        key = "sk-proj-" + _rand(url, 74) + "T3BlbkFJ" + _rand(url, 74)
        return key, [key]
    if kind == "anthropic":
        key = "sk-ant-api03-" + _rand(string.ascii_letters + string.digits + "-_", 93) + "AA"
        return key, [key]
    if kind == "github":
        body = _rand(_ALNUM, 30)
        key = "ghp_" + body + _b62(zlib.crc32(body.encode()), 6)  # GitHub's checksummed format
        return key, [key]
    if kind == "eth":
        key = "0x" + secrets.token_hex(32)
        return key, [key]
    raise ValueError(f"unknown canary kind {kind!r} (one of {', '.join(KINDS)})")


def create(kind: str, fp: Fingerprinter, label: str | None = None, host_id: str | None = None) -> tuple[Canary, list[dict]]:
    """A new canary and its `canaries` rows (fingerprints only). Each value is fingerprinted the way
    the collector will see it: as the detector's match, in canonical form."""
    text, values = generate(kind)
    canary_id = "cn-" + secrets.token_hex(4)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    parts: list[tuple[str, str]] = []
    matches = detect(text)
    for v in values:
        m = next((m for m in matches if m.value == v or v in m.value), None)
        skind = m.kind if m else "canary"
        parts.append((skind, canonical(skind, m.value if m else v)))
    rows = [
        {"ts": now, "host_id": host_id, "canary_id": canary_id, "kind": kind, "secret_kind": sk,
         "fingerprint": fp.fingerprint(val), "last4": val[-4:], "label": label}
        for sk, val in parts
    ]
    return Canary(canary_id, kind, text, parts), rows
