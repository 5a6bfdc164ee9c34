"""The real Gemini CLI (Node) against a loopback Gemini-API router, three ways: key log
(`NODE_OPTIONS=--tls-keylog` from `routerwatch wrap`) + a loopback capture, the intercepting proxy
(`wrap --proxy`), and the live collector's uprobes on the `node` binary (no key log at all).

The router answers the first turn with a `run_shell_command` function call; the CLI runs in
`--approval-mode plan` (read-only tools only), so nothing is executed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from collector.ebpf.targets import ssl_binaries
from collector.proxy.ca import CertificateAuthority
from collector.store import Store
from collector.tls.pipeline import decode_capture
from tests.collector.live.conftest import ebpf_skip_reason, live  # noqa: F401
from tests.collector.proxy.tls_router import Router
from tests.conftest import BIN, REPO
from tests.support.capture import capture_loopback, capture_tool

GEMINI = Path(os.environ.get("ROUTERWATCH_AGENTS_DIR", REPO / ".cache" / "agents")) / "node_modules" / ".bin" / "gemini"
pytestmark = pytest.mark.skipif(not GEMINI.exists(),
                                reason=f"{GEMINI} is missing: `bash deploy/deps.sh --test` installs the agent CLIs")
KEY = "AIzaSyA1234567890abcdefghijklmnopqrstuv"


@pytest.fixture
def router(tmp_path: Path):  # noqa: ANN201
    r = Router(CertificateAuthority(tmp_path / "router-ca"))
    yield r
    r.stop()


def _env(tmp_path: Path, router: Router) -> dict[str, str]:
    home = tmp_path / "home"
    (home / ".gemini").mkdir(parents=True)
    (home / ".gemini" / "settings.json").write_text(json.dumps({
        "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": False}},
        "privacy": {"usageStatisticsEnabled": False}, "telemetry": {"enabled": False}}))
    return {"PATH": os.environ["PATH"], "HOME": str(home), "GOOGLE_GEMINI_BASE_URL": router.url, "GEMINI_API_KEY": KEY,
            "NODE_EXTRA_CA_CERTS": str(router.ca.cert_path), "ROUTERWATCH_PROXY_CA_DIR": str(tmp_path / "proxy-ca"),
            "NO_COLOR": "1"}


def _gemini(tmp_path: Path, env: dict[str, str], wrap: list[str] | None) -> dict:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    cmd = [str(GEMINI), "-p", "list the files in /tmp", "--approval-mode", "plan", "-o", "json"]
    if wrap is not None:
        cmd = [str(BIN / "routerwatch"), "wrap", *wrap, "--", *cmd]
    p = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout[p.stdout.index("{"):])
    assert out["stats"]["tools"]["totalSuccess"] == 0  # the function call was refused, nothing ran
    return out


def _check(llm: list[dict], calls: list[dict]) -> None:
    assert len(llm) >= 2 and {e["api"] for e in llm} == {"gemini.generate"}
    assert all(e["streamed"] and e["model_requested"] == e["model_returned"] for e in llm)
    first = min(llm, key=lambda e: e["ts"])
    assert first["tool_call_count"] == 1
    (call,) = [c for c in calls if c["exchange_id"] == first["exchange_id"] and c["direction"] == "response"]
    assert call["name"] == "run_shell_command" and json.loads(call["arguments"]) == {"command": "ls -la /tmp"}


def _rows(store: Path, sql: str) -> list[dict]:
    with Store.open(str(store), read_only=True) as st:
        cur = st.sql(sql)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def test_gemini_cli_through_proxy(tmp_path: Path, router: Router) -> None:
    store = tmp_path / "store"
    _gemini(tmp_path, _env(tmp_path, router), ["--proxy", "--store", str(store)])
    llm = _rows(store, "SELECT * FROM llm_exchanges")
    _check(llm, _rows(store, "SELECT * FROM tool_calls"))
    assert all(e["source"] == "proxy" and e["pid"] for e in llm)
    sec = _rows(store, "SELECT kind, direction FROM secrets_seen")
    assert {"kind": "google_api_key", "direction": "request"} in sec, sec


@pytest.mark.skipif(capture_tool() is None or shutil.which("tshark") is None, reason="needs tcpdump/dumpcap and tshark")
def test_gemini_cli_key_log(tmp_path: Path, router: Router) -> None:
    env = _env(tmp_path, router)
    kd = tmp_path / "keys"
    for _ in range(3):  # tcpdump on lo occasionally misses a segment: such a run is repeated
        shutil.rmtree(kd, ignore_errors=True)
        with capture_loopback(tmp_path / "cap.pcap", ports=[router.port]) as cap:
            _gemini(tmp_path, env, ["--keylog-dir", str(kd), "--keep-keys"])
        (keylog,) = kd.glob("wrap-*.keylog")
        res = decode_capture(cap.path, keylog, host_id="h", secret_key=b"k" * 32, run_id="r")
        if res.stats.get("capture_gaps", 0) == 0:
            break
    assert res.stats["undecrypted_flows"] == 0, res.stats
    _check(res.tables["llm_exchanges"], res.tables["tool_calls"])


@pytest.mark.ebpf
@pytest.mark.skipif(ebpf_skip_reason() is not None, reason=ebpf_skip_reason() or "")
def test_gemini_cli_node_uprobes(tmp_path: Path, router: Router, live) -> None:  # noqa: ANN001, F811
    node = [t.path for t in ssl_binaries([shutil.which("node") or "node"]) if t.kind == "node"]
    if not node:
        pytest.skip("this node binary does not export SSL_* symbols")
    c = live("--no-capture", "--interval", "1", "--max-delay", "1", "--ssl-lib", node[0])
    _gemini(tmp_path, _env(tmp_path, router), None)  # no wrap, no key log
    assert c.stop() == 0, c.output()
    llm = _rows(c.store, f"SELECT * FROM llm_exchanges WHERE source = 'uprobe' AND path LIKE '%GenerateContent%'"
                         f" AND host LIKE '%:{router.port}'")
    _check(llm, _rows(c.store, "SELECT * FROM tool_calls"))
