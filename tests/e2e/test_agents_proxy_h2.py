"""HTTP/2 agents through `routerwatch wrap --proxy`: the demo agent on the real openai and anthropic
SDKs with an h2 httpx2 client, against the router zoo in h2 mode (hypercorn), streamed and not.
Every model call is decoded into the store from HTTP/2 on both legs, with its tool calls, and the
bodies the store digests are the bytes the router sent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from collector.store import Store
from tests.conftest import BIN, REPO
from tests.support.fixtures import pki_dir, zoo  # noqa: F401


def _q(store: Path, sql: str) -> list[dict]:
    with Store.open(str(store), read_only=True) as st:
        cur = st.sql(sql)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


@pytest.mark.parametrize(("api", "stream"), [("openai", False), ("openai", True), ("anthropic", True)])
def test_sdk_agent_over_h2_through_wrap_proxy(tmp_path: Path, zoo, api: str, stream: bool) -> None:  # noqa: ANN001, F811
    router = zoo("honest")  # offers h2 and http/1.1
    store = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME", "ROUTERWATCH_HOST_ID")}
    # the agent trusts the zoo's CA; wrap turns that into the proxy bundle, and trusts it upstream
    env.update(SSL_CERT_FILE=str(router.ca_path), ROUTERWATCH_PROXY_CA_DIR=str(tmp_path / "proxy-ca"),
               ROUTERWATCH_DEMO_API_KEY="sk-proj-h2e2e" + "Q" * 40)
    cmd = [sys.executable, "-m", "analyzer.demo.agent", "--base-url", router.url, "--api", api, "--calls", "2",
           "--no-exec", *(["--stream"] if stream else [])]
    p = subprocess.run([str(BIN / "routerwatch"), "wrap", "--proxy", "--store", str(store), "--", *cmd],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    summary = next(x["summary"] for x in lines if "summary" in x)
    assert summary["model_calls"] == 4 and summary["errors"] == 0, summary
    assert set(summary["http_versions"]) == {"HTTP/2"}, summary  # the agent spoke h2 to the proxy
    assert {e["http_version"] for e in router.log} == {"2"}  # and the proxy h2 to the router

    http = _q(store, "SELECT * FROM http WHERE path LIKE '/v1/%' ORDER BY ts")
    assert len(http) == 4 and {h["http_version"] for h in http} == {"HTTP/2"}
    assert all(h["source"] == "proxy" and h["status"] == 200 and h["stream_id"] for h in http)
    ex = _q(store, "SELECT * FROM llm_exchanges ORDER BY ts")
    want_api = "openai.chat" if api == "openai" else "anthropic.messages"
    assert len(ex) == 4 and {e["api"] for e in ex} == {want_api} and {e["streamed"] for e in ex} == {stream}
    assert all(e["pid"] and e["model_returned"] for e in ex)
    calls = _q(store, "SELECT * FROM tool_calls WHERE direction = 'response'")
    assert len(calls) == summary["tool_calls"] >= 2
    tls = _q(store, "SELECT * FROM tls")
    assert tls and {t["alpn_selected"] for t in tls} == {"h2"} and {t["alpn"] for t in tls} == {"h2,http/1.1"}
    # the API key left the host only as a fingerprint
    assert "Q" * 40 not in json.dumps(_q(store, "SELECT * FROM http"), default=str)
    assert _q(store, "SELECT count(*) AS n FROM secrets_seen WHERE direction = 'request'")[0]["n"] >= 1


def test_codex_over_h2_through_proxy(tmp_path: Path, zoo) -> None:  # noqa: ANN001, F811
    """The real Codex CLI (reqwest + rustls) offers h2: against a router that offers it too, both legs
    of `wrap --proxy` are HTTP/2, and its Responses stream is decoded as over HTTP/1.1 (AC-1 included)."""
    from tests.e2e.test_agents_proxy import _agent, _assert_decoded, _clean_env

    codex = _agent("codex")
    router = zoo("inject")  # h2 and http/1.1
    store = tmp_path / "store"
    codex_home = tmp_path / "codex-home"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(
        'model_provider = "zoo"\nmodel = "gpt-5-codex"\nsandbox_mode = "read-only"\n'
        f'[model_providers.zoo]\nname = "Zoo"\nbase_url = "{router.url}/v1"\nenv_key = "ZOO_API_KEY"\n'
        'wire_api = "responses"\n')
    env = _clean_env(tmp_path)
    env.update(CODEX_HOME=str(codex_home), ZOO_API_KEY="sk-zoo-" + "e2eTestKey0" * 3, SSL_CERT_FILE=str(router.ca_path))
    work = tmp_path / "work"
    work.mkdir()
    p = subprocess.run(
        [str(BIN / "routerwatch"), "wrap", "--proxy", "--store", str(store), "--", str(codex), "exec",
         "--skip-git-repo-check", "--ephemeral", "-s", "read-only", "--disable", "shell_tool",
         "--disable", "unified_exec", "--json", "run: ls /tmp"],
        cwd=work, env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr[-3000:]
    assert {h["http_version"] for h in _q(store, "SELECT http_version FROM http")} == {"HTTP/2"}
    assert {t["alpn_selected"] for t in _q(store, "SELECT alpn_selected FROM tls")} == {"h2"}
    assert {e["http_version"] for e in router.log} == {"2"}
    _assert_decoded(store, "openai.responses", router)
