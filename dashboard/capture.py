"""Packet drill-down for one flow: find its retained capture, dissect its packets with pyshark.

pyshark (tshark underneath) is slow for bulk work but gives the full protocol tree, which is what a
person looking at one flow wants. Where the packets are:
- an ingested capture: `flows.capture_id` = `ingest_runs.run_id`, whose `file` is still on disk;
- the live collector's capture ring (its segments under the capture directory,
  `$ROUTERWATCH_CAPTURE_DIR` or the collector's default), the segments overlapping the flow.
Nothing retained means a clear note, not an error. Shown field values pass through the collector's
secret detectors (a plaintext HTTP flow can carry a key): matches are replaced by their kind.
TLS payloads are not decrypted here (no key log is ever read by the dashboard).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dashboard.queries import Reader

CAPTURE_DIR_ENV = "ROUTERWATCH_CAPTURE_DIR"
_CREDENTIAL_FIELDS = ("authorization", "cookie", "api_key", "api-key", "x_api_key", "token")


@dataclass
class CaptureLookup:
    paths: list[Path] = field(default_factory=list)
    note: str = ""


def capture_paths(r: Reader, flow: pd.Series) -> CaptureLookup:
    """Where this flow's packets are retained, if anywhere (see the module docstring)."""
    cid = flow.get("capture_id")
    if cid is not None and not pd.isna(cid) and r.has("ingest_runs", "run_id", "file"):
        files = r.df("SELECT file FROM ingest_runs WHERE run_id = ? AND file IS NOT NULL LIMIT 1", [str(cid)])
        if not files.empty:
            p = Path(str(files.iat[0, 0]))
            if p.is_file() and os.access(p, os.R_OK):
                return CaptureLookup([p])
            return CaptureLookup([], f"the capture this flow was ingested from ({p}) is no longer readable here")
    ring = _ring_dir()
    start, end = flow.get("ts_start"), flow.get("ts_end")
    if ring is not None and start is not None and not pd.isna(start):
        segs = _covering(ring, _epoch(start), _epoch(end if end is not None and not pd.isna(end) else start))
        if segs:
            return CaptureLookup(segs)
        return CaptureLookup([], f"no capture segment in {ring} covers this flow (the ring keeps a bounded window)")
    return CaptureLookup([], "no capture is retained for this flow (offline-only store, or the live capture ring "
                             "is off or not readable by the dashboard user)")


def _epoch(ts) -> float:
    t = pd.Timestamp(ts).to_pydatetime()
    return t.replace(tzinfo=dt.UTC).timestamp() if t.tzinfo is None else t.timestamp()


def _ring_dir() -> Path | None:
    env = os.environ.get(CAPTURE_DIR_ENV)
    if env:
        d = Path(env)
    else:
        try:
            from collector.live.capture import default_capture_dir
        except ImportError:
            return None
        d = default_capture_dir()
    return d if d.is_dir() and os.access(d, os.R_OK | os.X_OK) else None


def _covering(directory: Path, start: float, end: float) -> list[Path]:
    """The collector's own rule for which ring segments may hold a time range."""
    try:
        from collector.live.capture import CaptureRing
    except ImportError:
        return []
    return CaptureRing(directory).covering(start, end)


def display_filter(flow: pd.Series) -> str:
    """A tshark display filter for the flow's 5-tuple (both directions)."""
    proto = str(flow.get("proto") or "tcp").lower()
    if proto not in ("tcp", "udp"):
        proto = "tcp"
    parts = []
    for col in ("src_ip", "dst_ip"):
        ip = flow.get(col)
        if ip is not None and not pd.isna(ip):
            addr = ipaddress.ip_address(str(ip))  # validates: nothing else reaches the filter
            parts.append(f"{'ipv6' if addr.version == 6 else 'ip'}.addr == {addr}")
    for col in ("src_port", "dst_port"):
        port = flow.get(col)
        if port is not None and not pd.isna(port):
            parts.append(f"{proto}.port == {int(port)}")
    return " && ".join(parts) or proto


def _clean(name: str, text: str) -> str:
    from collector.secrets import detect

    if any(c in name.lower() for c in _CREDENTIAL_FIELDS):
        label = text.split(":", 1)[0] if ":" in text else name
        return f"{label}: [REDACTED:{name}]"
    found = detect(text)
    for m in sorted(found, key=lambda m: m.start, reverse=True):
        text = text[: m.start] + f"[REDACTED:{m.kind}]" + text[m.end:]
    return text


def packets(paths: list[Path], flow: pd.Series, limit: int = 200, timeout: float = 60) -> list[dict]:
    """The flow's packets (at most `limit`), each with its protocol tree as {layer: [lines]}."""
    import asyncio
    import gc

    import pyshark

    flt = display_filter(flow)
    out: list[dict] = []
    for path in paths:
        loop = asyncio.new_event_loop()
        cap = pyshark.FileCapture(str(path), display_filter=flt, keep_packets=False, eventloop=loop)
        try:
            for pkt in cap:
                tree = {}
                for layer in pkt.layers:
                    lines = []
                    for name in layer.field_names:
                        f = layer.get_field(name)
                        shown = getattr(f, "showname", None) or f"{name}: {f}"
                        if shown:
                            lines.append(_clean(name, str(shown)))
                    tree[layer.layer_name] = lines
                out.append({"no": int(pkt.number), "time": pkt.sniff_time, "protocol": pkt.highest_layer,
                            "length": int(pkt.length), "file": path.name, "layers": tree})
                if len(out) >= limit:
                    return out
        finally:
            cap.close()
            del cap
            gc.collect()  # let tshark's subprocess transport go while its loop is still open
            loop.close()
    return out
