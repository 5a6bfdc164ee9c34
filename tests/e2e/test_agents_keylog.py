"""Key-log mode end to end: a Python agent (the real openai SDK, whose httpx2 client ignores
SSLKEYLOGFILE) and a Node client (fetch) run under `routerwatch wrap`, captured on loopback, and
the capture decrypted with the key log wrap wrote: the injecting router's tool call is decoded.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from collector.tls.pipeline import decode_capture
from tests.conftest import run_cli
from tests.support.capture import capture_loopback, capture_tool
from tests.support.fixtures import pki_dir, zoo  # noqa: F401

pytestmark = pytest.mark.skipif(capture_tool() is None or shutil.which("tshark") is None,
                                reason="needs tcpdump/dumpcap and tshark (CI has both)")

SDK_AGENT = """
import openai, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)   # like httpx2: no SSLKEYLOGFILE support of its own
ctx.load_verify_locations(sys.argv[2])
c = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="sk-e2e-keylog-0000000000000000",
                  http_client=openai.DefaultHttpxClient(verify=ctx))
tools = [{"type": "function", "function": {"name": "run_shell", "parameters": {"type": "object",
          "properties": {"command": {"type": "string"}}}}}]
r = c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "run: ls"}], tools=tools)
print(r.choices[0].message.tool_calls[0].function.arguments)
"""

NODE_AGENT = """
const [url, ca] = process.argv.slice(1);
fetch(url + '/v1/chat/completions', {method: 'POST', headers: {'content-type': 'application/json',
  authorization: 'Bearer sk-e2e-node-00000000000000000000'}, body: JSON.stringify({model: 'gpt-4o',
  messages: [{role: 'user', content: 'run: ls'}], tools: [{type: 'function', function: {name: 'run_shell',
  parameters: {type: 'object', properties: {command: {type: 'string'}}}}}]})})
  .then(r => r.json()).then(j => console.log(j.choices[0].message.tool_calls[0].function.arguments));
"""


def _run_wrapped(tmp_path: Path, router, cmd: list[str], env: dict[str, str] | None = None):  # noqa: ANN001, ANN202
    kd = tmp_path / "keys"
    for _ in range(3):  # tcpdump on lo occasionally misses a segment: such a run is repeated
        shutil.rmtree(kd, ignore_errors=True)
        with capture_loopback(tmp_path / "cap.pcap", ports=[router.port]) as cap:
            r = run_cli("wrap", "--keylog-dir", str(kd), "--keep-keys", "--", *cmd, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        (keylog,) = kd.glob("wrap-*.keylog")
        res = decode_capture(cap.path, keylog, host_id="h", secret_key=b"k" * 32, run_id="r")
        if res.stats.get("capture_gaps", 0) == 0:
            return r, res
    raise AssertionError(f"capture missed segments three times: {res.stats}")


def _assert_injected(r, res, router) -> None:  # noqa: ANN001
    assert res.stats["undecrypted_flows"] == 0, res.stats
    (ex,) = res.tables["llm_exchanges"]
    assert ex["api"] == "openai.chat" and ex["model_requested"] == "gpt-4o" and ex["tool_call_count"] == 1
    (call,) = [t for t in res.tables["tool_calls"] if t["direction"] == "response"]
    assert call["name"] == "run_shell"
    command = json.loads(call["arguments"])["command"]
    assert command.startswith("curl -s http://127.0.0.2:") and command.endswith("| bash")
    assert json.loads(r.stdout)["command"] == command  # exactly what the agent received


def test_python_sdk_agent_keylog(tmp_path: Path, zoo) -> None:  # noqa: ANN001, F811
    router = zoo("inject", alpn=("http/1.1",))
    r, res = _run_wrapped(tmp_path, router, [sys.executable, "-c", SDK_AGENT, router.url, str(router.ca_path)])
    _assert_injected(r, res, router)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (deploy/deps.sh --test installs it)")
def test_node_agent_tls_keylog(tmp_path: Path, zoo) -> None:  # noqa: ANN001, F811
    router = zoo("inject", alpn=("http/1.1",))
    r, res = _run_wrapped(tmp_path, router, ["node", "-e", NODE_AGENT, router.url],
                          env={"NODE_EXTRA_CA_CERTS": str(router.ca_path)})
    _assert_injected(r, res, router)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (deploy/deps.sh --test installs it)")
def test_node_fetch_ignores_https_proxy(zoo) -> None:  # noqa: ANN001, F811
    """The coverage matrix's 'proxy: no' for Node's built-in fetch: with HTTPS_PROXY pointing at a dead
    port, fetch still reaches the router directly (Node < 24 without NODE_USE_ENV_PROXY), so key-log
    mode or uprobes are the ways to see it. If this fails, Node honours the proxy now: update the matrix."""
    import os
    import subprocess

    router = zoo("honest", alpn=("http/1.1",))
    env = dict(os.environ, HTTPS_PROXY="http://127.0.0.1:1", NODE_EXTRA_CA_CERTS=str(router.ca_path))
    env.pop("NODE_USE_ENV_PROXY", None)
    js = "fetch(process.argv[1] + '/data.json').then(r => console.log(r.status)).catch(e => console.log('proxied'))"
    p = subprocess.run(["node", "-e", js, router.url], capture_output=True, text=True, env=env, timeout=60)
    assert p.stdout.strip() == "200", p.stdout + p.stderr
