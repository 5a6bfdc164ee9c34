"""Ground truth from tshark for captured loopback traffic: what it decrypts with a key log.

Tests use it to prove a capture really holds decryptable exchanges (independently of routerwatch's own
decoder), e.g. that the SDK spoke HTTP/2 over TLS 1.3 and sent POST /v1/chat/completions.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

TLS_VERSIONS = {"0x0303": "1.2", "0x0304": "1.3"}


def _fields(pcap: str | os.PathLike, keylog: str | os.PathLike | None, display: str, fields: list[str],
            ports: tuple[int, ...] = ()) -> list[list[str]]:
    cmd = ["tshark", "-n", "-r", str(pcap), "-Y", display, "-T", "fields", "-E", "separator=\t",
           "-E", "occurrence=a", "-E", "aggregator=|"]
    if keylog is not None:
        cmd += ["-o", f"tls.keylog_file:{Path(keylog)}"]
    for p in ports:  # routers on random ports: tell tshark it is TLS
        cmd += ["-d", f"tcp.port=={p},tls"]
    for f in fields:
        cmd += ["-e", f]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError(f"tshark failed: {p.stderr.strip()[:500]}")
    return [line.split("\t") for line in p.stdout.splitlines() if line.strip()]


def decrypted_requests(pcap: str | os.PathLike, keylog: str | os.PathLike, ports: tuple[int, ...] = ()) -> list[dict[str, str]]:
    """Every decrypted HTTP/1.1 and HTTP/2 request: {'version': '1.1'|'2', 'method', 'path', 'stream'}."""
    out: list[dict[str, str]] = []
    for method, uri in _fields(pcap, keylog, "http.request", ["http.request.method", "http.request.uri"], ports):
        out.append({"version": "1.1", "method": method, "path": uri})
    rows = _fields(pcap, keylog, "http2.type == 1 && http2.headers.method",
                   ["http2.headers.method", "http2.headers.path", "http2.streamid"], ports)
    for methods, paths, sids in rows:
        # One packet may carry several HEADERS frames: fields come aggregated with '|'.
        for m, p, s in zip(methods.split("|"), paths.split("|"), sids.split("|")[-len(methods.split("|")):], strict=False):
            out.append({"version": "2", "method": m, "path": p, "stream": s})
    return out


def handshakes(pcap: str | os.PathLike, keylog: str | os.PathLike | None, ports: tuple[int, ...] = ()) -> list[dict[str, str]]:
    """Per server handshake: negotiated TLS version and ALPN (TLS 1.3 hides ALPN in EncryptedExtensions,
    which tshark reads only with the key log)."""
    rows = _fields(pcap, keylog, "tls.handshake.type == 2 || tls.handshake.type == 8",
                   ["tcp.stream", "tls.handshake.type", "tls.handshake.version",
                    "tls.handshake.extensions.supported_version", "tls.handshake.extensions_alpn_str"], ports)
    by_stream: dict[str, dict[str, str]] = {}
    for stream, types, version, supported, alpn in rows:
        h = by_stream.setdefault(stream, {"stream": stream, "version": "", "alpn": ""})
        if "2" in types.split("|"):
            sv = supported.split("|")[0] if supported else ""
            h["version"] = TLS_VERSIONS.get(sv or version.split("|")[0], sv or version)
        if alpn:
            h["alpn"] = alpn.split("|")[-1]
    return list(by_stream.values())


def conversations(pcap: str | os.PathLike) -> int:
    """TCP + UDP conversations tshark finds in a capture (one read; a capture cut short still counts
    what precedes the cut, tshark then exits 2 after printing)."""
    p = subprocess.run(["tshark", "-n", "-r", str(pcap), "-q", "-z", "conv,tcp", "-z", "conv,udp"],
                       capture_output=True, text=True, timeout=120)
    if p.returncode not in (0, 2) or "Conversations" not in p.stdout:
        raise RuntimeError(f"tshark failed: {p.stderr.strip()[:500]}")
    return sum(1 for line in p.stdout.splitlines() if "<->" in line)
