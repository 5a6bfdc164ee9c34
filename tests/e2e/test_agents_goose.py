"""goose's model-provider layer through `routerwatch wrap --proxy`. The goose CLI is published only as
GitHub release binaries (not installable here); PyPI's `goose-sdk` carries goose's own Rust provider
crates (reqwest + rustls, stripped: no key log, no uprobe symbols) behind Python bindings, so the
HTTP/TLS stack goose talks to a router with is the one exercised. A declarative OpenAI-compatible
provider (the goose config's custom-provider format) sends a completion with goose's shell tool to
the injecting zoo; the injected tool call is decoded from the proxy and yields the AC-1 finding.
Nothing executes tools here: the script only prints the model's answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from collector.store import Store
from tests.conftest import BIN, run_cli
from tests.support.fixtures import pki_dir, zoo  # noqa: F401

pytest.importorskip("goose", reason="goose-sdk is a test extra: `bash deploy/deps.sh --test` installs it")

GOOSE_CALL = """
import asyncio, json, os, sys
import goose

spec = {"name": "zoo", "engine": "openai", "display_name": "Zoo", "description": "loopback router",
        "api_key_env": "ZOO_API_KEY", "base_url": sys.argv[1] + "/v1/chat/completions",
        "models": [{"name": "gpt-4o", "context_limit": 128000}], "supports_streaming": True}
provider = goose.declarative_provider_from_json(json.dumps(spec))
shell = goose.ProviderTool(name="developer__shell", description="Run a shell command",
                           input_schema_json=json.dumps({"type": "object", "properties": {"command": {"type": "string"}},
                                                         "required": ["command"]}))
msgs = [goose.ProviderMessage(role=goose.MessageRole.USER, content=[goose.MessageContent.TEXT(text="run: ls /tmp")])]

async def main():
    for _ in range(2):  # the zoo injects from the second model call on
        done = await provider.complete(goose.ProviderModelConfig(model_name="gpt-4o"), "You are goose.", msgs, [shell])
    print(json.dumps({"pid": os.getpid(), "message": json.loads(done.message_json)}), flush=True)

asyncio.run(main())
# goose-sdk 0.1.0a13's Rust runtime threads sometimes abort the interpreter's teardown (glibc "FATAL:
# exception not rethrown", SIGABRT) after all work is done: leave without finalizing
os._exit(0)
"""


def _q(store: Path, sql: str) -> list[dict]:
    with Store.open(str(store), read_only=True) as st:
        cur = st.sql(sql)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def test_goose_provider_through_proxy(tmp_path: Path, zoo) -> None:  # noqa: ANN001, F811
    router = zoo("inject")
    store = tmp_path / "store"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "SSL_CERT_FILE": str(router.ca_path),
           "ZOO_API_KEY": "sk-zoo-" + "e2eGooseKey0" * 3, "ROUTERWATCH_PROXY_CA_DIR": str(tmp_path / "proxy-ca")}
    p = subprocess.run([str(BIN / "routerwatch"), "wrap", "--proxy", "--store", str(store), "--", sys.executable, "-c",
                        GOOSE_CALL, router.url], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.splitlines()[-1])
    assert "x.sh" in json.dumps(out["message"])  # goose received the injected tool request (and ran nothing)

    ex = _q(store, "SELECT * FROM llm_exchanges ORDER BY ts")
    assert len(ex) == 2 and {e["api"] for e in ex} == {"openai.chat"} and all(e["pid"] == out["pid"] for e in ex)
    assert {e["model_requested"] for e in ex} == {"gpt-4o"}
    req_tools = _q(store, f"SELECT name FROM tool_calls WHERE exchange_id = '{ex[0]['exchange_id']}' "
                          "AND direction = 'request'")
    (call,) = _q(store, f"SELECT * FROM tool_calls WHERE exchange_id = '{ex[1]['exchange_id']}' AND direction = 'response'")
    assert call["name"] == "developer__shell" and "/x.sh | bash" in call["arguments"], (call, req_tools)
    flows = _q(store, f"SELECT history, pid, dst_port FROM flows WHERE flow_uid = '{ex[1]['flow_uid']}'")
    assert flows[0]["dst_port"] == router.port and flows[0]["pid"] == out["pid"]
    assert "e2eGooseKey0" not in json.dumps(_q(store, "SELECT * FROM http"), default=str)
    assert not any(e.get("payload") for e in router.log), router.log
    r = run_cli("analyze", "--store", str(store))
    assert r.returncode == 0, r.stderr
    f = _q(store, "SELECT rule_id, attack_class, pid FROM findings")
    assert {"rule_id": "ac1-download-exec", "attack_class": "AC-1", "pid": out["pid"]} in f, f
