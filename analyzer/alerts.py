"""EVE-style JSON-lines alerts (Suricata's schema, so SIEM pipelines that read EVE read these) and an
optional webhook. One line per finding, `event_type: alert`; plus one `ledger` event per analyze
run carrying the ledger head (an anchor kept outside the store)."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import IO

SEVERITY_EVE = {"critical": 1, "high": 1, "medium": 2, "low": 3, "info": 4}


def signature_id(rule_id: str) -> int:
    """A stable numeric id per rule (EVE's signature_id is an integer): 9,000,000 + crc32 mod 1e6."""
    return 9_000_000 + zlib.crc32(rule_id.encode()) % 1_000_000


def _ts(v: object) -> str | None:
    if isinstance(v, dt.datetime):
        return v.replace(tzinfo=dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "+0000")
    return None if v is None else str(v)


def eve_alert(f: dict) -> dict:
    ev = f.get("evidence")
    if isinstance(ev, str):
        try:
            ev = json.loads(ev)
        except ValueError:
            ev = {"value": ev}
    return {
        "timestamp": _ts(f.get("ts")),
        "event_type": "alert",
        "host": f.get("host_id"),
        "flow_id": f.get("flow_uid"),
        "pid": f.get("pid"),
        "alert": {
            "action": "allowed",
            "signature_id": signature_id(f["rule_id"]),
            "rev": f.get("rule_rev"),
            "signature": f.get("title"),
            "category": f.get("attack_class"),
            "severity": SEVERITY_EVE.get(f.get("severity") or "", 3),
            "metadata": {"rule_id": [f["rule_id"]], "severity": [f.get("severity")]},
        },
        "routerwatch": {
            "finding_id": f.get("finding_id"),
            "rule_id": f["rule_id"],
            "severity": f.get("severity"),
            "attack_class": f.get("attack_class"),
            "exchange_id": f.get("exchange_id"),
            "router": f.get("router"),
            "summary": f.get("summary"),
            "dedup_key": f.get("dedup_key"),
            "evidence": ev,
        },
    }


def eve_ledger(run_id: str, seq: int, head: str, ts: dt.datetime | None = None) -> dict:
    return {
        "timestamp": _ts(ts or dt.datetime.now(dt.UTC).replace(tzinfo=None)),
        "event_type": "ledger",
        "routerwatch": {"run_id": run_id, "ledger_seq": seq, "ledger_head": head},
    }


def write_eve(target: str, events: Iterable[dict]) -> int:
    """Append events as JSON lines to `target` (a path, or '-' for stdout)."""
    lines = [json.dumps(e, default=str, sort_keys=True) for e in events]
    if not lines:
        return 0
    out: IO[str]
    if target == "-":
        out = sys.stdout
        out.write("\n".join(lines) + "\n")
        out.flush()
    else:
        path = Path(target)
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o750)
        # 0640: a log shipper in the file's group may read it; nobody else (docs/security.md "File modes")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        with os.fdopen(fd, "a") as fh:
            fh.write("\n".join(lines) + "\n")
    return len(lines)


def post_webhook(url: str, events: list[dict], timeout: float = 10.0) -> None:
    """POST {"events": [...]} as JSON; raises OSError with a one-line reason on failure."""
    if not events:
        return
    body = json.dumps({"source": "routerwatch", "events": events}, default=str).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json",
                                                                          "User-Agent": "routerwatch"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            if resp.status >= 300:
                raise OSError(f"webhook {url} answered HTTP {resp.status}")
    except urllib.error.HTTPError as exc:
        raise OSError(f"webhook {url} answered HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        raise OSError(f"webhook {url} unreachable: {exc.reason}") from None
