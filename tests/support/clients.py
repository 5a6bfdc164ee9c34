"""Real clients for loopback routers, each writing a TLS key log: the demo agent (openai/anthropic SDKs),
curl and Node 20 fetch. Key-log files are created 0600 before any client writes to them.

Why these environment variables:
- Python: `SSLKEYLOGFILE` is honoured by ssl.create_default_context(); the SDKs' httpx2 client calls it
  only when `SSL_CERT_FILE` (or SSL_CERT_DIR) is set, so both are set, SSL_CERT_FILE to the demo CA.
- curl (OpenSSL build): `SSLKEYLOGFILE`.
- Node: `--tls-keylog=FILE` (Node ignores SSLKEYLOGFILE) and `NODE_EXTRA_CA_CERTS` for the CA.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzer.demo import agent as demo_agent

REPO = Path(__file__).resolve().parents[2]


def new_keylog(path: str | os.PathLike) -> Path:
    """Create an empty key-log file readable by its owner only (key logs are as secret as private keys)."""
    return Path(demo_agent.new_keylog(path))


# SSL_CERT_FILE = CA, SSLKEYLOGFILE = key log (created 0600): for Python clients and curl alike.
keylog_env = demo_agent.process_env


@dataclass
class AgentRun:
    """The demo agent's result: its JSON lines (one per model call) and the final summary."""

    returncode: int
    pid: int
    turns: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    stderr: str = ""

    @property
    def tool_calls(self) -> list[dict[str, str]]:
        return [c for t in self.turns for c in t.get("tool_calls", [])]


agent_cmd = demo_agent.command


def start_agent(base_url: str, api: str, *, ca: str | os.PathLike, keylog: str | os.PathLike | None,
                env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen:
    """Start the agent as its own process (for tests that need its PID while it runs)."""
    return demo_agent.spawn(base_url, api, ca=ca, keylog=keylog, env=env, cwd=REPO, **kw)


def collect_agent(proc: subprocess.Popen, timeout: float = 120) -> AgentRun:
    out, err = proc.communicate(timeout=timeout)
    turns, summary = demo_agent.parse_output(out)
    return AgentRun(proc.returncode, proc.pid, turns, summary, stderr=err)


def run_agent(base_url: str, api: str, *, ca: str | os.PathLike, keylog: str | os.PathLike | None,
              timeout: float = 120, env: dict[str, str] | None = None, **kw: Any) -> AgentRun:
    """Run `python -m analyzer.demo.agent` to completion with SSLKEYLOGFILE + SSL_CERT_FILE set.

    kw: stream, calls, http1, extra (more agent flags, e.g. ["--api-key", K, "--task", T])."""
    return collect_agent(start_agent(base_url, api, ca=ca, keylog=keylog, env=env, **kw), timeout)


@dataclass
class HttpResult:
    status: int
    http_version: str
    body: str
    returncode: int
    stderr: str


def run_curl(url: str, *, ca: str | os.PathLike, keylog: str | os.PathLike | None = None, tls_max: str = "1.3",
             http: str = "2", method: str | None = None, json_body: Any = None,
             headers: dict[str, str] | None = None, timeout: float = 30) -> HttpResult:
    """curl with --cacert, --tls-max, --http1.1/--http2 and SSLKEYLOGFILE."""
    trailer = "\n__routerwatch__%{http_version} %{response_code}"
    cmd = ["curl", "-sS", "--cacert", str(ca), "--tls-max", tls_max, "--http1.1" if http == "1.1" else "--http2",
           "-w", trailer, "--max-time", str(timeout)]
    if method:
        cmd += ["-X", method]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    if json_body is not None:
        cmd += ["-H", "content-type: application/json", "--data-binary", json.dumps(json_body, ensure_ascii=False)]
    cmd.append(url)
    env = keylog_env(ca, keylog)
    p = subprocess.run(cmd, capture_output=True, env=env, timeout=timeout + 10)
    out = p.stdout.decode("utf-8", "replace")
    body, _, tail = out.rpartition("\n__routerwatch__")
    ver, _, code = tail.partition(" ")
    return HttpResult(int(code or 0), ver, body, p.returncode, p.stderr.decode("utf-8", "replace"))


NODE_FETCH = r"""
const [url, method, body, headers] = process.argv.slice(1);
(async () => {
  const r = await fetch(url, {method, headers: JSON.parse(headers), body: body === "" ? undefined : body});
  const text = await r.text();
  process.stdout.write(JSON.stringify({status: r.status, body: text}));
})().catch(e => { process.stderr.write(String(e && e.cause || e)); process.exit(1); });
"""


def run_node_fetch(url: str, *, ca: str | os.PathLike, keylog: str | os.PathLike | None = None,
                   method: str = "GET", json_body: Any = None, headers: dict[str, str] | None = None,
                   timeout: float = 30) -> HttpResult:
    """Node 20's built-in fetch (undici, HTTP/1.1) with --tls-keylog and NODE_EXTRA_CA_CERTS."""
    env = dict(os.environ)
    env["NODE_EXTRA_CA_CERTS"] = str(ca)
    h = dict(headers or {})
    body = ""
    if json_body is not None:
        h.setdefault("content-type", "application/json")
        body = json.dumps(json_body, ensure_ascii=False)
    cmd = ["node"]
    if keylog is not None:
        cmd.append(f"--tls-keylog={new_keylog(keylog)}")
    cmd += ["-e", NODE_FETCH, url, method, body, json.dumps(h)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if p.returncode != 0:
        return HttpResult(0, "", "", p.returncode, p.stderr)
    out = json.loads(p.stdout)
    return HttpResult(out["status"], "1.1", out["body"], 0, p.stderr)
