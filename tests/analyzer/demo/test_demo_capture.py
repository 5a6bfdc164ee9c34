"""The harness end to end: router zoo over real TLS 1.2/1.3 and h1/h2, real clients writing key logs,
a tcpdump capture of lo, and tshark decrypting it. This is what the decryption, analyzer and
agent-coverage acceptance tests stand on."""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from tests.support.capture import capture_loopback, capture_tool
from tests.support.clients import run_agent, run_curl, run_node_fetch
from tests.support.fixtures import pki_dir, zoo  # noqa: F401
from tests.support.tshark import decrypted_requests, handshakes

needs_capture = pytest.mark.skipif(
    capture_tool() is None or shutil.which("tshark") is None or os.geteuid() != 0,
    reason="needs tcpdump/dumpcap, tshark and root (CAP_NET_RAW) to capture lo",
)

MATRIX = [  # (tls, alpn offered by the router, api, stream)
    ("1.3", ("h2", "http/1.1"), "openai", True),
    ("1.3", ("http/1.1",), "anthropic", True),
    ("1.2", ("h2", "http/1.1"), "responses", False),
    ("1.2", ("http/1.1",), "openai", False),
]


@needs_capture
@pytest.mark.parametrize("tls,alpn,api,stream", MATRIX, ids=[f"tls{t}-{a[0]}-{p}-{'stream' if s else 'plain'}"
                                                             for t, a, p, s in MATRIX])
def test_sdk_agent_capture_decrypts(zoo, tmp_path, tls, alpn, api, stream):  # noqa: F811
    router = zoo("inject", tls_version=tls, alpn=alpn, headers_profile="new-api")
    keys = tmp_path / "keys.log"
    with capture_loopback(tmp_path / "cap.pcap", ports=[router.port]) as cap:
        run = run_agent(router.url, api, ca=router.ca_path, keylog=keys, stream=stream, calls=1)
    assert run.returncode == 0, run.stderr
    want_h = "HTTP/2" if alpn[0] == "h2" else "HTTP/1.1"
    assert {t["http_version"] for t in run.turns} == {want_h}
    assert {(t["tls_version"], t["alpn"]) for t in run.turns} == {(f"TLSv{tls}", "h2" if alpn[0] == "h2" else "http/1.1")}
    # The SDK reassembled exactly what the router sent (streamed deltas included, non-ASCII included).
    sent = [e["arguments"] for e in router.log if e.get("turn") == "tool_call"]
    assert [c["arguments"] for c in run.tool_calls] == sent and "🚀" in sent[0]
    assert run.turns[0]["exec"][0]["actions"][0]["kind"] == "fetch"  # the injected URL, on loopback only
    assert run.turns[0]["exec"][0]["actions"][1]["kind"] == "refused"  # ... and never piped into bash
    # Key log: 0600, written by the SDK process.
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert keys.stat().st_size > 0
    assert cap.stats.get("dropped", 0) == 0 and cap.path.stat().st_size > 1000

    shakes = handshakes(cap.path, keys, (router.port,))
    assert shakes and {h["version"] for h in shakes} == {tls}
    assert {h["alpn"] for h in shakes} == {"h2" if alpn[0] == "h2" else "http/1.1"}
    reqs = decrypted_requests(cap.path, keys, (router.port,))
    path = {"openai": "/v1/chat/completions", "responses": "/v1/responses", "anthropic": "/v1/messages"}[api]
    assert [(r["method"], r["path"]) for r in reqs] == [("POST", path)] * 2  # tool call + follow-up
    assert {r["version"] for r in reqs} == {"2" if alpn[0] == "h2" else "1.1"}
    # Without the key log nothing is decrypted.
    assert decrypted_requests(cap.path, None, (router.port,)) == []


@needs_capture
def test_curl_and_node_capture_decrypts(zoo, tmp_path):  # noqa: F811
    router = zoo("honest", headers_profile="litellm")
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "héllo"}], "stream": True,
            "tools": [{"type": "function", "function": {"name": "run_shell"}}]}
    with capture_loopback(tmp_path / "cap.pcap", ports=[router.port]) as cap:
        c2 = run_curl(router.url + "/v1/chat/completions", ca=router.ca_path, keylog=tmp_path / "curl.keys",
                      http="2", tls_max="1.3", json_body=body)
        c1 = run_curl(router.url + "/v1/models", ca=router.ca_path, keylog=tmp_path / "curl.keys",
                      http="1.1", tls_max="1.2")
        nd = run_node_fetch(router.url + "/v1/messages", ca=router.ca_path, keylog=tmp_path / "node.keys",
                            method="POST", json_body={"model": "claude-sonnet-5", "max_tokens": 10,
                                                      "messages": [{"role": "user", "content": "hi"}]})
    assert (c2.returncode, c2.status, c2.http_version) == (0, 200, "2"), c2.stderr
    assert "tool_calls" in c2.body and "data: [DONE]" in c2.body
    assert (c1.returncode, c1.status, c1.http_version) == (0, 200, "1.1"), c1.stderr
    assert nd.returncode == 0 and nd.status == 200, nd.stderr
    assert '"type":"message"' in nd.body
    for f in ("curl.keys", "node.keys"):
        assert stat.S_IMODE((tmp_path / f).stat().st_mode) == 0o600 and (tmp_path / f).stat().st_size > 0
    keys = tmp_path / "all.keys"
    keys.write_bytes((tmp_path / "curl.keys").read_bytes() + (tmp_path / "node.keys").read_bytes())
    reqs = decrypted_requests(cap.path, keys, (router.port,))
    assert sorted((r["version"], r["method"], r["path"]) for r in reqs) == [
        ("1.1", "GET", "/v1/models"), ("1.1", "POST", "/v1/messages"), ("2", "POST", "/v1/chat/completions")]
    assert sorted(h["version"] for h in handshakes(cap.path, keys, (router.port,))) == ["1.2", "1.3", "1.3"]


@needs_capture
def test_capture_probe_and_stats(tmp_path):
    with capture_loopback(tmp_path / "p.pcap", ports=[9], probe=True) as cap:
        pass
    assert cap.stats.get("captured", 0) >= 1
    assert cap.path.stat().st_size > 24


@needs_capture
def test_server_side_keylog_decrypts_a_client_that_writes_none(zoo, tmp_path):  # noqa: F811
    """For agents that ignore SSLKEYLOGFILE (Bun, rustls), the router itself can write the key log."""
    router = zoo("honest", server_keylog=tmp_path / "server.keys", tls_version="1.2")
    with capture_loopback(tmp_path / "cap.pcap", ports=[router.port]) as cap:
        r = run_curl(router.url + "/v1/models", ca=router.ca_path, keylog=None, http="2")
    assert r.status == 200
    assert [(q["method"], q["path"]) for q in decrypted_requests(cap.path, tmp_path / "server.keys", (router.port,))] == [
        ("GET", "/v1/models")]
