"""An agent that writes no key log still yields its LLM exchange: libssl uprobes -> decoders.

The agent is the demo agent on the real openai SDK, talking to the demo router (analyzer/demo/zoo.py)
over TLS on loopback, with SSLKEYLOGFILE unset."""

from __future__ import annotations

import json
import signal as _signal
import subprocess as _subprocess
import sys as _sys
import textwrap as _textwrap
import time as _time

import numpy as np
import pytest

from collector.ebpf import events as ev
from collector.live.ebpf_rows import RowBuilder
from collector.live.plaintext import _HDR, PlaintextAssembler
from collector.processes import ProcessTable
from collector.secrets import Fingerprinter
from collector.store import Store
from tests.collector.live.conftest import needs_ebpf
from tests.collector.protocols.wire import h1_request, h1_response, h2_connection, openai_chat_stream
from tests.support.clients import collect_agent, start_agent
from tests.support.fixtures import pki_dir, zoo  # noqa: F401


@pytest.mark.ebpf
@needs_ebpf
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


@pytest.mark.ebpf
@needs_ebpf
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


# -- open connections: finished exchanges leave before the connection ends (no eBPF needed) --------
# Real HTTP/1.1 and HTTP/2 bytes go through the real assembler, decoders and flow-row builder as the
# probes would report them (SSL records, the socket's `socks` entry while open, its destroy record).




HOST = "host-keepalive"
CLOCK = ev.Clock(mono_offset_ns=1_700_000_000 * 10**9, boot_epoch=1_699_990_000.0)
SK, SSL, TGID, COOKIE = 0xFFFF888012345678, 0x55550000AAAA, 4242, (1 << 63) | (777 << 8)
KEY = "sk-proj-" + "a1B2c3D4" * 6  # an OpenAI-style key: secrets_seen rows come with every exchange


class Conn:
    """One client TLS connection as the probes report it."""

    def __init__(self, sk: int = SK) -> None:
        self.sk = sk
        self.ts = 5_000_000_000  # kernel ns
        self.opened = self.ts
        self.rows = RowBuilder(HOST, ProcessTable(HOST, Fingerprinter(b"k" * 32), btime=CLOCK.boot_epoch), CLOCK)

    def _io(self, data: bytes, direction: int) -> list[bytes]:
        self.ts += 10_000_000
        return [_HDR.pack(ev.T_SSL, len(data[o : o + 4096]), SSL, self.sk, self.ts, TGID, len(data), o, direction, 0)
                + data[o : o + 4096] for o in range(0, len(data), 4096)]

    def twin(self) -> Conn:
        """The same connection for a second assembler (its destroy record comes after these bytes)."""
        other = Conn(self.sk)
        other.ts, other.opened = self.ts, self.opened
        return other

    def write(self, data: bytes) -> list[bytes]:
        return self._io(data, 0)

    def read(self, data: bytes) -> list[bytes]:
        return self._io(data, 1)

    def _fill(self, a: np.ndarray) -> None:
        a["tgid"], a["ppid"], a["start_ns"], a["comm"] = TGID, 1, 3_000_000_000, b"agent"
        a["outbound"] = a["established"] = a["owned"] = 1
        a["ts_first"], a["ts_established"] = self.opened, self.opened + 1000
        a["sport"], a["dport"] = 40000, 443
        a["saddr"] = np.void(bytes([127, 0, 0, 2]) + bytes(12))
        a["daddr"] = np.void(bytes([127, 0, 0, 9]) + bytes(12))

    def state(self) -> bytes:
        """Its `socks` entry (probes.bpf.c struct sock_state) while it is open."""
        a = np.zeros(1, dtype=ev.SOCK_STATE)
        self._fill(a)
        a["family"], a["cookie"] = 2, COOKIE
        return a.tobytes()

    def live_flow(self, sk: int, first_ts: int) -> dict | None:
        return self.rows.live_flow(self.state(), sk, self.ts, opened_by=first_ts) if sk == self.sk else None

    def destroy(self):
        """Its tcp_destroy_sock record -> (conns, flows) as the collector hands them to `closed()`."""
        a = np.zeros(1, dtype=ev.CONN)
        self._fill(a)
        a["type"], a["family"], a["sk"], a["cookie"], a["ts_end"] = ev.T_CONN, 4, self.sk, COOKIE, self.ts + 1
        flows, arr = self.rows.flows([a.tobytes()])
        return arr, flows


def chat_request(n: int, pad: int = 0) -> bytes:
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{n} " + "x" * pad}],
                        "tools": [{"type": "function", "function": {"name": "bash"}}]}).encode()
    return h1_request("POST", "/v1/chat/completions", "router.test", body,
                      headers=[("Authorization", f"Bearer {KEY}"), ("Content-Type", "application/json")])


def chat_response(n: int) -> bytes:
    body = json.dumps({"id": f"c{n}", "object": "chat.completion", "model": "gpt-4o-mini", "choices": [{
        "index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{n}", "type": "function", "function": {"name": "bash", "arguments": f'{{"cmd": "ls {n}"}}'}}]}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7}}).encode()
    return h1_response(200, body, headers=[("Content-Type", "application/json")])


def assembler(conn: Conn, live: bool = True, **kw) -> PlaintextAssembler:
    return PlaintextAssembler(HOST, Fingerprinter(b"k" * 32), CLOCK, settle_s=kw.pop("settle_s", 0.0),
                              live_flow=conn.live_flow if live else None, **kw)


def drive(asm: PlaintextAssembler, conn: Conn, script) -> list[dict[str, list[dict]]]:
    """script: records to add, 'poll', or 'close' (the destroy record, then a poll)."""
    out = []
    for step in script:
        if step == "close":
            asm.closed(*conn.destroy())
        if step in ("poll", "close"):
            out.append(dict(asm.poll()))
        else:
            asm.add(step)
    return out


def flat(polls: list[dict[str, list[dict]]]) -> dict[str, list[dict]]:
    """Every table's rows over all polls, in a stable order (row dicts compared whole)."""
    out: dict[str, list[dict]] = {}
    for p in polls:
        for t, rows in p.items():
            out.setdefault(t, []).extend(rows)
    return {t: sorted(rows, key=repr) for t, rows in sorted(out.items())}


def paths(poll: dict[str, list[dict]]) -> list[str]:
    return [json.loads(r["request_body"])["messages"][0]["content"].split()[0] for r in poll.get("llm_exchanges", [])]


def test_keepalive_exchange_is_emitted_before_close_and_rows_equal_the_close_only_path():
    conn = Conn()
    resp2 = chat_response(2)
    script = [conn.write(chat_request(1)), conn.read(chat_response(1)), "poll",
              conn.write(chat_request(2)), conn.read(resp2[:-20]), "poll",  # response 2 still arriving
              conn.read(resp2[-20:]), "close"]
    asm = assembler(conn)
    polls = drive(asm, conn, script)
    assert paths(polls[0]) == ["q1"]  # exchange 1 while the connection is open
    assert paths(polls[1]) == []  # exchange 2's body is incomplete: not yet
    assert paths(polls[2]) == ["q2"]  # at close: only what was not emitted
    assert {t for t, r in polls[0].items() if r} == {"http", "llm_exchanges", "tool_calls", "secrets_seen"}
    assert asm.counts["plaintext_early_exchanges"] == 1 and asm.counts["plaintext_bytes_released"] > 0
    early = flat(polls)
    ids = [r["exchange_id"] for r in early["http"]]
    assert len(ids) == len(set(ids)) == 2
    # the same bytes through the close-only path: the same rows, byte for byte
    ref = conn.twin()
    assert flat(drive(assembler(ref, live=False), ref, script)) == early
    assert all(r["flow_uid"] == conn.destroy()[1]["flow_uid"][0].as_py() for r in early["llm_exchanges"])
    assert {t: len(r) for t, r in early.items()} == {"http": 2, "llm_exchanges": 2, "secrets_seen": 2, "tool_calls": 2}


def test_streaming_response_is_emitted_only_once_complete():
    conn = Conn()
    stream = h1_response(200, openai_chat_stream("gpt-4o-mini", [("bash", '{"cmd": "make test"}')], text="ok"),
                         headers=[("Content-Type", "text/event-stream")], chunked=True, pieces=6)
    cut = stream.index(b"\r\n\r\n") + 200
    script = [conn.write(chat_request(1)), conn.read(stream[:cut]), "poll", "poll",
              conn.read(stream[cut:]), "poll", conn.write(chat_request(2)), "poll", "close"]
    asm = assembler(conn)
    polls = drive(asm, conn, script)
    assert [paths(p) for p in polls] == [[], [], ["q1"], [], ["q2"]]
    row = polls[2]["llm_exchanges"][0]
    assert row["streamed"] and not row["truncated"] and row["output_tokens"] == 20
    assert polls[4]["llm_exchanges"][0]["truncated"]  # exchange 2 never answered: at close, as before
    ref = conn.twin()
    assert flat(drive(assembler(ref, live=False), ref, script)) == flat(polls)


def test_h2_connection_emits_finished_streams_early_and_keeps_its_bytes():
    def ex(n: int):
        body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{n}"}]}).encode()
        return ([(":method", "POST"), (":path", "/v1/chat/completions"), (":scheme", "https"),
                 (":authority", "router.test"), ("authorization", f"Bearer {KEY}"), ("content-type", "application/json")],
                body, [(":status", "200"), ("content-type", "application/json")],
                json.dumps({"id": f"c{n}", "model": "gpt-4o-mini", "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": f"a{n}" * 50}}]}).encode())

    one, two = h2_connection([ex(1)]), h2_connection([ex(1), ex(2)])
    assert two[: len(one)] == one  # the two-exchange conversation starts with the one-exchange one
    conn = Conn()
    steps = [conn.write(d) if c else conn.read(d) for c, d in two]
    script = [*steps[: len(one)], "poll", *steps[len(one) : -1], "poll", steps[-1], "close"]
    asm = assembler(conn)
    polls = drive(asm, conn, script)
    assert [paths(p) for p in polls] == [["q1"], [], ["q2"]]  # the last DATA frame carries END_STREAM
    assert polls[0]["http"][0]["http_version"] == "HTTP/2" and asm.counts["plaintext_bytes_released"] == 0
    ref = conn.twin()
    assert flat(drive(assembler(ref, live=False), ref, script)) == flat(polls)


def test_long_keepalive_connection_never_reaches_the_byte_bound_from_history():
    """40 exchanges of ~9 KB on one connection under a 64 KiB per-connection bound: all of them are
    whole (bytes of emitted HTTP/1.1 exchanges are dropped), numbered as one connection would be."""
    conn = Conn()
    script = []
    for n in range(40):
        script += [conn.write(chat_request(n, pad=8000)), conn.read(chat_response(n)), "poll"]
    script.append("close")
    asm = assembler(conn, max_conn_bytes=64 << 10)
    polls = drive(asm, conn, script)
    got = flat(polls)
    assert len(got["llm_exchanges"]) == 40 and not any(r["truncated"] for r in got["llm_exchanges"])
    assert asm.counts["ssl_bytes_dropped"] == 0 and asm.counts["plaintext_early_exchanges"] == 40
    assert polls[-1] == {} and asm._total == 0
    ref = conn.twin()
    assert flat(drive(assembler(ref, live=False), ref, script)) == got  # unbounded close-only: same rows
    capped = conn.twin()
    cut = flat(drive(assembler(capped, live=False, max_conn_bytes=64 << 10), capped, script))
    assert len(cut["llm_exchanges"]) < 40  # what the bound did before: later exchanges lost


def test_socket_unknown_to_the_probes_is_decoded_at_close_only():
    conn = Conn()
    script = [conn.write(chat_request(1)), conn.read(chat_response(1)), "poll", "close"]
    conn.opened = conn.ts  # the entry is younger than the plaintext: another socket at this address
    polls = drive(assembler(conn), conn, script)
    assert [paths(p) for p in polls] == [[], ["q1"]]
    late = conn.twin()
    late.opened = Conn().opened  # tracked, but the stream has not been quiet for settle_s yet
    polls = drive(assembler(late, settle_s=60.0), late, script[:3] + ["poll", "close"])
    assert [paths(p) for p in polls] == [[], [], ["q1"]]  # not settled: at close


def test_connection_still_open_when_the_collector_stops_is_named_by_its_live_flow():
    """The agent is gone but its peer has not closed yet (no destroy record) and the stream never
    settled: the final poll names the exchange by the flow the socket has, not by none."""
    conn = Conn()
    asm = assembler(conn, settle_s=60.0)
    drive(asm, conn, [conn.write(chat_request(1)), conn.read(chat_response(1)), "poll"])
    rows = dict(asm.poll(final=True))["llm_exchanges"]
    assert [r["flow_uid"] for r in rows] == [conn.destroy()[1]["flow_uid"][0].as_py()]
    ref = conn.twin()  # probes that do not know the socket: decoded, unnamed, as before
    asm = assembler(ref, live=False, settle_s=60.0)
    drive(asm, ref, [ref.write(chat_request(1)), ref.read(chat_response(1)), "poll"])
    assert [r["flow_uid"] for r in dict(asm.poll(final=True))["llm_exchanges"]] == [None]


def test_live_flow_is_the_flow_row_the_destroy_record_gives():
    conn = Conn()
    live = conn.live_flow(SK, conn.ts)
    closed = conn.destroy()[1].to_pylist()[0]
    for k in ("flow_uid", "community_id", "src_ip", "src_port", "dst_ip", "dst_port", "direction", "pid",
              "process_start", "server_name", "ts_start"):
        assert live[k] == closed[k], k
    assert live["direction"] == "outbound" and live["flow_uid"].endswith(f"{COOKIE:012x}")


# -- live: a keep-alive SDK client against the real collector -----------------------------------------

KEEPALIVE_AGENT = _textwrap.dedent("""
    import sys, openai
    client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="sk-test-keepalive-00000000000000000000",
                           http_client=openai.DefaultHttpxClient(), max_retries=0)
    print("ready", flush=True)
    n = 0
    for line in sys.stdin:
        word, _, pad = line.strip().partition(" ")
        if word != "call":
            break
        n += 1
        content = f"keepalive {n}" + ("." * int(pad) + f" end of prompt {n}" if pad else "")
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": content}])
        print("done", flush=True)
    client.close()
""")


class KeepAliveAgent:
    """The openai SDK on one persistent client (its connection pool), making a call each time it is
    told to; no key log (analyzer.demo.agent.process_env: the CA as SSL_CERT_FILE)."""

    def __init__(self, url: str, ca: str):
        from analyzer.demo.agent import process_env

        self.proc = _subprocess.Popen([_sys.executable, "-c", KEEPALIVE_AGENT, url], stdin=_subprocess.PIPE,
                                      stdout=_subprocess.PIPE, text=True, env=process_env(ca, None))
        assert self.proc.stdout.readline().strip() == "ready"

    def call(self, pad: int = 0) -> None:
        """One call; `pad` bytes more of prompt (then "end of prompt N") make the request that much larger."""
        self.proc.stdin.write(f"call {pad}\n" if pad else "call\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "done"

    def quit(self) -> int:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        return self.proc.wait(timeout=30)


def _q(store, sql: str, params=()):
    with Store.open(str(store), read_only=True) as s:
        return s.sql(sql, list(params)).fetchall()


def _exchanges(store, pid: int):
    return _q(store, "SELECT exchange_id, flow_uid, request_body FROM llm_exchanges "
                     "WHERE source = 'uprobe' AND pid = ? ORDER BY ts", [pid])


def _wait_rows(store, pid: int, n: int, timeout: float = 10.0):
    deadline = _time.monotonic() + timeout
    while True:
        rows = _exchanges(store, pid) if store.exists() else []
        if len(rows) >= n or _time.monotonic() > deadline:
            return rows
        _time.sleep(0.2)


@pytest.mark.ebpf
@needs_ebpf
def test_keepalive_exchanges_reach_the_store_while_open_and_survive_kill_9(live, zoo):  # noqa: F811
    """Three calls on one open connection: each is in the store within seconds (not when the
    connection ends), and a collector killed -9 with the connection still open has lost none."""
    router = zoo("honest", alpn=("http/1.1",))
    c = live("--no-capture", "--interval", "1", "--max-delay", "0.5", "--poll", "0.1")
    agent = KeepAliveAgent(router.url, router.ca_path)
    try:
        for n in (1, 2, 3):
            t0 = _time.monotonic()
            agent.call()
            rows = _wait_rows(c.store, agent.proc.pid, n)
            assert len(rows) == n, (rows, c.output())
            assert _time.monotonic() - t0 < 10
            assert f"keepalive {n}" in rows[-1][2]
            assert len({r[1] for r in rows}) == 1 and rows[0][1]  # one connection, named by its flow
            assert _q(c.store, "SELECT count(*) FROM flows WHERE flow_uid = ?", [rows[0][1]]) == [(0,)]  # still open
        assert c.stop(_signal.SIGKILL) == -_signal.SIGKILL
        rows = _exchanges(c.store, agent.proc.pid)
        assert len(rows) == len({r[0] for r in rows}) == 3
    finally:
        assert agent.quit() == 0


@pytest.mark.ebpf
@needs_ebpf
def test_keepalive_exchanges_emitted_early_name_the_flow_the_connection_gets_at_close(live, zoo):  # noqa: F811
    router = zoo("honest", alpn=("http/1.1",))
    c = live("--no-capture", "--interval", "1", "--max-delay", "0.5", "--poll", "0.1")
    agent = KeepAliveAgent(router.url, router.ca_path)
    agent.call()
    agent.call()
    early = _wait_rows(c.store, agent.proc.pid, 2)
    assert len(early) == 2, c.output()
    pid = agent.proc.pid
    assert agent.quit() == 0  # the connection ends: its flow row comes, the exchanges do not again
    deadline = _time.monotonic() + 15
    while not _q(c.store, "SELECT 1 FROM flows WHERE flow_uid = ?", [early[0][1]]) and _time.monotonic() < deadline:
        _time.sleep(0.2)
    assert c.stop() == 0, c.output()
    flow = _q(c.store, "SELECT pid, dst_port, direction FROM flows WHERE flow_uid = ?", [early[0][1]])
    assert flow == [(pid, router.port, "outbound")]
    assert _exchanges(c.store, pid) == early
    with Store.open(str(c.store), read_only=True) as s:
        stats = json.loads(s.sql("SELECT detail FROM collector_stats ORDER BY ts DESC LIMIT 1").fetchone()[0])
    assert stats["plaintext_early_exchanges"] >= 2 and stats["plaintext_early_flow_mismatch"] == 0


def test_doh_rows_on_an_h2_connection_are_not_written_twice():
    """DoH `dns` rows carry no exchange id: what an open connection wrote early is recognised by content."""
    from scapy.layers.dns import DNS, DNSQR, DNSRR

    def ex(n: int):
        q = DNS(id=n, rd=1, qd=DNSQR(qname=f"host{n}.example.com", qtype="A"))
        r = DNS(id=n, qr=1, rd=1, ra=1, qd=DNSQR(qname=f"host{n}.example.com", qtype="A"),
                an=DNSRR(rrname=f"host{n}.example.com", type="A", rdata=f"192.0.2.{n}"))
        return ([(":method", "POST"), (":path", "/dns-query"), (":scheme", "https"), (":authority", "doh.test"),
                 ("content-type", "application/dns-message"), ("accept", "application/dns-message")],
                bytes(q), [(":status", "200"), ("content-type", "application/dns-message")], bytes(r))

    one, two = h2_connection([ex(1)]), h2_connection([ex(1), ex(2)])
    assert two[: len(one)] == one
    conn = Conn()
    steps = [conn.write(d) if c else conn.read(d) for c, d in two]
    script = [*steps[: len(one)], "poll", *steps[len(one) :], "close"]
    polls = drive(assembler(conn), conn, script)
    assert sorted((r["query"], r["is_response"]) for r in polls[0]["dns"]) == [
        ("host1.example.com", False), ("host1.example.com", True)]
    assert sorted((r["query"], r["is_response"]) for r in polls[1]["dns"]) == [
        ("host2.example.com", False), ("host2.example.com", True)]
    ref = conn.twin()
    assert flat(drive(assembler(ref, live=False), ref, script)) == flat(polls)


def test_ssl_object_reused_on_another_socket_is_not_claimed_by_the_first_sockets_end():
    first = Conn()
    asm = assembler(first, live=False)
    asm.add(first.write(chat_request(1)))  # never answered
    second = Conn(SK + 64)
    second.ts = first.ts
    asm.add(second.write(chat_request(2)))
    asm.add(second.read(chat_response(2)))
    first.ts = second.ts  # the first socket ends after the second one carried plaintext
    asm.closed(*first.destroy())
    assert dict(asm.poll()) == {}
    asm.closed(*second.destroy())
    assert paths(dict(asm.poll())) == ["q2"]


@pytest.mark.ebpf
@needs_ebpf
def test_a_prompt_of_several_hundred_kib_is_captured_whole(live, zoo):  # noqa: F811
    """An SDK hands its whole request body to one SSL_write: a 200 KB prompt (agents send whole
    conversations) is decoded whole, not cut at the probe's per-call limit (it was 64 KiB)."""
    router = zoo("honest", alpn=("http/1.1",))
    c = live("--no-capture", "--interval", "1", "--max-delay", "0.5", "--poll", "0.1")
    agent = KeepAliveAgent(router.url, router.ca_path)
    try:
        agent.call(pad=200_000)
        agent.call()
        rows = _wait_rows(c.store, agent.proc.pid, 2, timeout=20)
        assert len(rows) == 2, c.output()
    finally:
        assert agent.quit() == 0
    assert c.stop() == 0, c.output()
    big = _q(c.store, "SELECT truncated, request_body, json_extract_string(stream_events, '$.errors') "
                      "FROM llm_exchanges WHERE exchange_id = ?", [rows[0][0]])[0]
    # the stored body is capped (body_cap, 256 Ki characters) but the request was parsed whole:
    # the model and the message count come from the JSON, and nothing says it was cut
    assert big[0] is False and big[2] is None, big[::2]
    model, size = _q(c.store, "SELECT e.model_requested, h.request_body_bytes FROM llm_exchanges e "
                              "JOIN http h USING (exchange_id) WHERE e.exchange_id = ?", [rows[0][0]])[0]
    assert model == "gpt-4o-mini" and size > 200_000
    with Store.open(str(c.store), read_only=True) as s:
        stats = json.loads(s.sql("SELECT detail FROM collector_stats ORDER BY ts DESC LIMIT 1").fetchone()[0])
    assert stats.get("ssl_truncated", 0) == 0 and stats.get("kernel_ssl_truncated", 0) == 0, stats
