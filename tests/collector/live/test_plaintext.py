"""An agent that writes no key log still yields its LLM exchange: libssl uprobes -> decoders.

The agent is the demo agent on the real openai SDK, talking to the demo router (analyzer/demo/zoo.py)
over TLS on loopback, with SSLKEYLOGFILE unset."""

from __future__ import annotations

import json

import pytest

from collector.store import Store
from tests.collector.live.conftest import needs_ebpf
from tests.support.clients import collect_agent, start_agent
from tests.support.fixtures import pki_dir, zoo  # noqa: F401

pytestmark = [pytest.mark.ebpf, needs_ebpf]


@pytest.mark.parametrize(("stream", "alpn"), [(False, ("http/1.1",)), (True, ("h2", "http/1.1"))])
def test_agent_without_keylog_is_decoded_from_uprobes(live, zoo, stream, alpn):  # noqa: F811
    router = zoo("honest", alpn=alpn)
    c = live("--no-capture", "--interval", "1", "--max-delay", "1")
    proc = start_agent(router.url, "openai", ca=router.ca_path, keylog=None, stream=stream, extra=["--no-exec"])
    run = collect_agent(proc, timeout=120)
    assert run.returncode == 0, run.stderr
    assert c.stop() == 0, c.output()
    with Store.open(str(c.store), read_only=True) as s:
        ex = s.sql("SELECT e.exchange_id, e.flow_uid, e.pid, e.api, e.model_requested, e.streamed, e.source, "
                   "f.pid, f.dst_port FROM llm_exchanges e LEFT JOIN flows f ON f.flow_uid = e.flow_uid "
                   "WHERE e.source = 'uprobe'").fetchall()
        stats = json.loads(s.sql("SELECT detail FROM collector_stats ORDER BY ts DESC LIMIT 1").fetchone()[0])
        proc_row = s.sql("SELECT exe FROM processes WHERE pid = ?", [run.pid]).fetchall()
    mine = [r for r in ex if r[2] == run.pid]
    assert mine, (ex, stats, c.output())
    _eid, flow_uid, pid, api, model, streamed, source, flow_pid, dport = mine[0]
    assert api == "openai.chat" and source == "uprobe" and bool(streamed) == stream
    assert flow_uid and flow_pid == run.pid and dport == router.port  # linked to its flow and process
    assert proc_row and "python" in proc_row[0][0]
    assert stats["plaintext_decode_errors"] == 0


def test_node_fetch_without_keylog_is_decoded_from_uprobes_on_the_node_binary(live, zoo):  # noqa: F811
    """Node links OpenSSL statically and writes through a memory BIO: the probes on the `node` binary
    still tie its plaintext to the connection (the socket write that follows SSL_write)."""
    import shutil

    if not shutil.which("node"):
        pytest.skip("node is not installed (deploy/deps.sh --test installs it)")
    from tests.support.clients import run_node_fetch

    router = zoo("honest", alpn=("http/1.1",))
    c = live("--no-capture", "--interval", "1", "--max-delay", "1")
    assert "@" in c.banner and "node" in c.banner, c.banner
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello from node"}]}
    r = run_node_fetch(f"{router.url}/v1/chat/completions", ca=router.ca_path, method="POST", json_body=body,
                       headers={"authorization": "Bearer sk-test-node-000000000000000000000000"})
    assert r.status == 200, r
    assert c.stop() == 0, c.output()
    with Store.open(str(c.store), read_only=True) as s:
        rows = s.sql("SELECT e.api, e.model_requested, f.dst_port, p.exe FROM llm_exchanges e "
                     "JOIN flows f ON f.flow_uid = e.flow_uid "
                     "JOIN processes p ON p.pid = f.pid AND p.start_time = f.process_start "
                     "WHERE e.source = 'uprobe' AND f.dst_port = ?", [router.port]).fetchall()
        secrets = s.sql("SELECT count(*) FROM secrets_seen WHERE last4 = '0000'").fetchone()[0]
        detail = s.sql("SELECT detail FROM collector_stats ORDER BY ts DESC LIMIT 1").fetchone()[0]
        uprobe = s.sql("SELECT flow_uid, pid, api FROM llm_exchanges WHERE source = 'uprobe'").fetchall()
    assert rows, (c.output(), detail, uprobe)
    api, model, _port, exe = rows[0]
    assert api == "openai.chat" and model == "gpt-4o-mini" and "node" in exe
    assert secrets >= 1  # the bearer key became a fingerprint, never stored in clear
