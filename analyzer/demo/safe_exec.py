""""Execute" a tool call's shell command without a shell: parse it, and touch loopback only.

The demo agent must behave like a real one (a tool call that says `curl URL` makes a connection right
after the response, which is what post-response egress rules look for) without ever running what a
malicious router sent. So: shlex-parse the command, and for curl/wget fetch the URL with Python only if
its host is a loopback IP literal (or `localhost`); everything else, pipes into interpreters included,
is refused and recorded. No subprocess, no DNS, no write to disk.
"""

from __future__ import annotations

import ipaddress
import shlex
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

MAX_BODY = 1 << 20
INTERPRETERS = {"sh", "bash", "zsh", "dash", "python", "python3", "perl", "ruby", "node", "eval", "source", "."}


def is_loopback_host(host: str | None) -> bool:
    """True only for loopback IP literals and `localhost` (no DNS: a resolver could lie)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _segments(command: str) -> list[tuple[str, list[str]]]:
    """Split into (operator before, argv) segments on |, &&, ||, ; — the shell syntax an agent would see."""
    lex = shlex.shlex(command, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    out: list[tuple[str, list[str]]] = []
    op, argv = "", []
    for tok in lex:
        if tok in ("|", "&&", "||", ";", "&"):
            out.append((op, argv))
            op, argv = tok, []
        else:
            argv.append(tok)
    out.append((op, argv))
    return [(o, a) for o, a in out if a]


def fetch(url: str, cafile: str | None, timeout: float = 10.0) -> dict[str, Any]:
    """GET a loopback URL over HTTP/1.1 (TLS verified against `cafile` for https). Returns a record."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https"):
        return {"kind": "refused", "url": url, "reason": f"scheme {parts.scheme!r} not allowed"}
    if not is_loopback_host(host):
        return {"kind": "refused", "url": url, "reason": "not a loopback address"}
    addr = "127.0.0.1" if host.lower() == "localhost" else host
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    authority = f"[{addr}]" if ":" in addr else addr
    if parts.port:
        authority += f":{port}"
    request = (f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: routerwatch-demo-agent\r\n"
               f"Accept: */*\r\nConnection: close\r\n\r\n").encode()
    rec: dict[str, Any] = {"kind": "fetch", "url": url, "status": None, "bytes": 0}
    try:
        with socket.create_connection((addr, port), timeout=timeout) as raw:
            rec["local_port"] = raw.getsockname()[1]
            sock: socket.socket = raw
            if parts.scheme == "https":
                # create_default_context() honours SSLKEYLOGFILE, so this fetch is decryptable too.
                ctx = ssl.create_default_context(cafile=cafile)
                sock = ctx.wrap_socket(raw, server_hostname=host)
            sock.sendall(request)
            data = b""
            while len(data) <= MAX_BODY:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            if sock is not raw:
                sock.close()
    except (OSError, ssl.SSLError) as exc:
        rec.update(kind="error", error=f"{type(exc).__name__}: {exc}")
        return rec
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        rec["status"] = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        pass
    rec["bytes"] = len(body)
    rec["body"] = body[:2000].decode("utf-8", "replace")
    return rec


def run(command: str, cafile: str | None = None) -> dict[str, Any]:
    """What the demo agent does with a run_shell tool call. Never spawns a process."""
    try:
        segs = _segments(command)
    except ValueError as exc:
        return {"command": command, "actions": [{"kind": "refused", "reason": f"unparsable: {exc}"}], "output": ""}
    actions: list[dict[str, Any]] = []
    outputs: list[str] = []
    for op, argv in segs:
        prog = argv[0].rsplit("/", 1)[-1]
        if op == "|" and prog in INTERPRETERS:
            actions.append({"kind": "refused", "reason": f"pipe into {prog}: never executed"})
            continue
        if prog in ("curl", "wget"):
            for url in (a for a in argv[1:] if a.startswith(("http://", "https://"))):
                rec = fetch(url, cafile)
                actions.append(rec)
                outputs.append(rec.get("body", "") if rec["kind"] == "fetch" else f"[{rec['kind']}: {url}]")
        elif prog in ("pip", "pip3", "npm", "uv") or argv[:3] in (["python", "-m", "pip"], ["python3", "-m", "pip"]):
            pkgs = [a for a in argv[1:] if not a.startswith("-") and a not in ("install", "i", "add", "pip", "-m")]
            actions.append({"kind": "install", "manager": prog, "packages": pkgs, "installed": False})
            outputs.append(f"(demo) would install {' '.join(pkgs)}")
        else:
            actions.append({"kind": "skipped", "argv0": prog})
            outputs.append(f"(demo) not executed: {prog}")
    return {"command": command, "actions": actions, "output": "\n".join(outputs)[:4000]}
