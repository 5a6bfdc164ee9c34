"""The proxy's recorder on a real store: a connection's two flows with Community IDs, a WebSocket
Responses session recorded as an http row with its frame summary and decoded as an LLM exchange."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from collector.capture.community_id import community_id
from collector.protocols.messages import HttpRequest, HttpResponse
from collector.proxy.decode import ExchangeDecoder
from collector.proxy.server import Endpoint, ProxiedConnection
from collector.proxy.sink import StoreSink
from collector.proxy.tap import Exchange, WebSocketSummary
from collector.secrets import Fingerprinter
from collector.store import Store
from collector.store.schema import RowContractError
from collector.store.writer import BatchWriter


def _conn() -> ProxiedConnection:
    now = time.time()
    return ProxiedConnection(conn_id="c1", client=Endpoint("127.0.0.1", 40000), listen=Endpoint("127.0.0.1", 8888),
                             target_host="api.router.example", target_port=443, scheme="https", ts_start=now,
                             upstream_local=Endpoint("127.0.0.1", 40001), upstream_peer=Endpoint("127.0.0.5", 443),
                             ts_end=now + 1, bytes_out=100, bytes_in=200, tls_version="TLSv1.3",
                             cipher="TLS_AES_128_GCM_SHA256", alpn="http/1.1", pid=4242, process_start=1.5)


def _ws_exchange() -> Exchange:
    t = time.time()
    req = HttpRequest("GET", "api.router.example", "/v1/responses", [("upgrade", "websocket"),
                      ("authorization", "Bearer sk-proj-" + "Zz9Yy8Xx7W" * 5)], b"", t)
    resp = HttpResponse(101, [("upgrade", "websocket"), ("sec-websocket-extensions", "permessage-deflate")], b"", t, t)
    ws = WebSocketSummary(extensions="permessage-deflate", messages_out=1, messages_in=2, bytes_out=80, bytes_in=300)
    ws.text_out.append((t, json.dumps({"type": "response.create", "model": "gpt-5-codex", "input": "hi"})))
    item = {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "shell", "arguments": "{\"command\": [\"ls\"]}"}
    ws.text_in += [
        (t + 0.1, json.dumps({"type": "response.output_item.done", "output_index": 0, "item": item})),
        (t + 0.2, json.dumps({"type": "response.completed", "response": {"id": "r1", "model": "gpt-5-codex",
                                                                          "output": [item], "usage": {"input_tokens": 3, "output_tokens": 4}}})),
    ]
    return Exchange(req, resp, ws)


def test_flows_tls_and_websocket_rows(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "store")) as st:
        w = BatchWriter(st)
        sink = StoreSink(w, ExchangeDecoder(Fingerprinter(st.secret_key())), host_id="h1", threaded=False)
        conn = _conn()
        sink.handle(("exchange", conn, _ws_exchange()))
        sink.handle(("closed", conn))
        sink.close()
        w.close()
        assert (sink.errors, sink.last_error) == (0, None)  # the sink counts errors (a RowContractError too)
        q = lambda sql: st.sql(sql).fetchall()  # noqa: E731
        flows = q("SELECT proxy_leg, community_id, pid, process_start, dst_ip, flow_uid, proxy_scheme, history "
                  "FROM flows ORDER BY proxy_leg")
        assert [f[0] for f in flows] == ["agent", "upstream"]
        # history keeps its Zeek meaning: the proxy sees no TCP flags, so it writes none
        assert [(f[6], f[7]) for f in flows] == [("https", None), ("https", None)]
        assert flows[0][1] == community_id("tcp", "127.0.0.1", 40000, "127.0.0.1", 8888)
        assert flows[1][1] == community_id("tcp", "127.0.0.1", 40001, "127.0.0.5", 443)
        assert all(f[2] == 4242 and f[3] == 1.5 for f in flows)
        (tls,) = q("SELECT version, sni, decrypted, flow_uid FROM tls")
        assert tls[:3] == ("TLS 1.3", "api.router.example", True) and tls[3] == flows[1][5]
        (http,) = q("SELECT status, response_headers, flow_uid, request_headers FROM http")
        assert http[0] == 101 and http[2] == flows[1][5] and "sk-proj-" not in http[3]
        summary = dict(json.loads(http[1]))["x-routerwatch-websocket"]
        assert json.loads(summary)["messages_in"] == 2
        (llm,) = q("SELECT api, model_requested, tool_call_count, pid FROM llm_exchanges")
        assert llm == ("openai.responses", "gpt-5-codex", 1, 4242)
        (call,) = q("SELECT name, arguments FROM tool_calls WHERE direction = 'response'")
        assert call[0] == "shell" and json.loads(call[1]) == {"command": ["ls"]}


def test_a_passed_through_tunnel_is_recorded_as_such(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "store")) as st:
        w = BatchWriter(st)
        sink = StoreSink(w, ExchangeDecoder(Fingerprinter(st.secret_key())), host_id="h1", threaded=False)
        conn = _conn()
        conn.scheme = "tunnel"
        sink.handle(("closed", conn))
        sink.close()
        w.close()
        assert (sink.errors, sink.last_error) == (0, None)
        assert st.sql("SELECT proxy_leg, proxy_scheme, history, source FROM flows ORDER BY proxy_leg").fetchall() == [
            ("agent", "tunnel", None, "proxy"), ("upstream", "tunnel", None, "proxy")]
        assert st.sql("SELECT decrypted FROM tls").fetchall() == [(False,)]


def test_rows_the_store_does_not_declare_are_refused_loudly(tmp_path: Path) -> None:
    """A decoder that builds a row with a misspelt column: the sink keeps relaying (the error is counted
    and reported in a sink-loss event), and nothing of that batch is stored as NULLs."""
    with Store.open(str(tmp_path / "store")) as st:
        w = BatchWriter(st)
        bad = lambda *a, **kw: {"http": [{"host_id": "h1", "stauts": 200}]}  # noqa: E731
        sink = StoreSink(w, bad, host_id="h1", threaded=False)
        sink.handle(("exchange", _conn(), _ws_exchange()))
        assert sink.errors == 1 and sink.last_error.startswith("RowContractError: http: no column(s) stauts")
        with pytest.raises(RowContractError, match=r"^flows\.src_port: string"):  # the writer below it, directly
            w.add("flows", [{"flow_uid": "F1", "src_port": "40000"}])
        sink.close()
        w.close()
        assert st.sql("SELECT count(*) FROM http").fetchone() == (0,)
        (detail,) = st.sql("SELECT detail FROM proxy_events WHERE kind = 'sink-loss'").fetchone()
        assert "no column(s) stauts" in json.loads(detail)["last_error"]


def test_process_rows_of_attributed_agents_have_their_command_line_secrets_redacted(tmp_path: Path) -> None:
    """The proxy's `processes` rows (read from /proc for the pids it attributes connections to) go through
    the same redaction as eBPF exec records: a flag-named secret of no known shape never reaches the store."""
    import subprocess
    import sys

    from collector.processes import ProcessTable, read_proc

    secret = "Zq3xV9pL2mN8bT4wR7yK1cH6jD5fG0sA3eU8iO2q"
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "--secret", secret])
    try:
        deadline = time.monotonic() + 10
        while (info := read_proc(p.pid)) is None or not info.argv or info.argv[-1] != secret:
            assert time.monotonic() < deadline, "the child never showed its argv"
            time.sleep(0.01)
        with Store.open(str(tmp_path / "store")) as st:
            fp = Fingerprinter(st.secret_key())
            w = BatchWriter(st)
            sink = StoreSink(w, ExchangeDecoder(fp), host_id="h1", threaded=False, processes=ProcessTable("h1", fp))
            sink.handle(("proc", info))
            assert sink.errors == 0, sink.last_error
            sink.close()
            w.close()
            (cmd,) = st.sql("SELECT cmdline FROM processes WHERE pid = ?", [p.pid]).fetchone()
            assert cmd.endswith(f"--secret [REDACTED:secret:{fp.fingerprint(secret)[:12]}]"), cmd
            seen = st.sql("SELECT kind, direction, pid, fingerprint FROM secrets_seen").fetchall()
            assert seen == [("secret", "cmdline", p.pid, fp.fingerprint(secret))]
            dump = json.dumps(st.sql("SELECT * FROM processes").fetchall(), default=str)
            assert secret not in dump
    finally:
        p.kill()
        p.wait()


def test_the_recording_process_keeps_what_a_dead_proxy_sent(tmp_path: Path) -> None:
    """ProcessSink in a proxy process that dies without close(): its recorder sees its stdin close,
    writes what it was sent (here an exchange, its connection's flows and an event) and exits; the
    store's address never appears on the recorder's command line."""
    import subprocess
    import sys

    store = str(tmp_path / "store")
    script = (
        "import os, sys, time\n"
        "from tests.collector.proxy.test_sink import _conn, _ws_exchange\n"
        "from collector.proxy.sink import ProcessSink\n"
        f"sink = ProcessSink({store!r}, 'h1')\n"
        "conn = _conn()\n"
        "sink.connection_opened(conn); sink.attribute(conn)\n"
        "sink.exchange(conn, _ws_exchange()); sink.connection_closed(conn)\n"
        "sink.event(None, 'test-event', 'the proxy is about to die')\n"
        "pid = sink._child.proc.pid\n"
        "print(open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\\0', b' ').decode(), flush=True)\n"
        "print(pid, flush=True)\n"
        "while sink._child._outbox.qsize():\n"
        "    time.sleep(0.01)\n"
        "os._exit(9)\n"
    )
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                       cwd=Path(__file__).resolve().parents[3])
    assert p.returncode == 9, p.stderr[-2000:]
    cmdline, recorder = p.stdout.splitlines()[-2], int(p.stdout.split()[-1])
    assert cmdline.endswith(" -m collector.proxy.sink ") and store not in cmdline

    def running() -> bool:
        try:
            return not Path(f"/proc/{recorder}/stat").read_text().rsplit(")", 1)[1].startswith(" Z")
        except OSError:
            return False

    deadline = time.monotonic() + 120
    while running():
        assert time.monotonic() < deadline, "the recorder outlived its proxy"
        time.sleep(0.05)
    with Store.open(store, read_only=True) as st:
        assert st.sql("SELECT kind, detail FROM proxy_events").fetchall() == [("test-event", "the proxy is about to die")]
        assert st.sql("SELECT proxy_leg FROM flows ORDER BY 1").fetchall() == [("agent",), ("upstream",)]
        assert st.sql("SELECT count(*) FROM llm_exchanges").fetchone() == (1,)
