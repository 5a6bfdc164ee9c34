"""A Go agent's plaintext without a key log or proxy: uprobes on crypto/tls (*Conn).Write/Read.

One collector (one BPF compile) sees a real Go client (tests/fixtures/goclient) talk to the loopback
router zoo: HTTP/1.1 and HTTP/2 (ALPN), streamed and not, a symtab build and a stripped build
(functions found through .gopclntab), both exec'd after the collector started (found from their exec
records). A binary claiming Go 1.16 (stack ABI) is refused, logged and counted. Running processes'
executables are found by `candidate_paths` (tests/collector/ebpf/test_go_binaries.py)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from collector.live.procnet import TCP_LISTEN, read_tcp
from collector.store import Store
from tests.collector.live.conftest import needs_ebpf
from tests.support.fixtures import pki_dir, zoo  # noqa: F401
from tests.support.goclient import API_KEY, goclient_cmd, goclient_env, goclients, parse_lines  # noqa: F401

pytestmark = [pytest.mark.ebpf, needs_ebpf]


def _wait_for(pred, timeout: float = 30.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def _old_go(src: Path, dest: Path) -> Path:
    """The client with its buildinfo version rewritten to go1.16.9: a binary the probes must refuse."""
    data = src.read_bytes()
    old = b"go1.19."
    i = data.index(b"\xff Go buildinf:")
    j = data.index(old, i)
    dest.write_bytes(data[:j] + b"go1.16." + data[j + len(old):])
    dest.chmod(0o755)
    return dest


def _exec_and_attach(c, binary: Path, url: str, env: dict, wait: Path, **kw) -> list[dict]:  # noqa: ANN001
    """Start a Go client that blocks before its first request, wait until the collector has probed its
    executable (found from the exec record), then let it run."""
    p = subprocess.Popen(goclient_cmd(binary, url, wait=wait, **kw), env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: f"Go TLS uprobes attached: {binary}" in c.output()), c.output()
        wait.touch()
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    return parse_lines(out)


def closing_done(port: int, timeout: float = 30.0) -> None:
    """Wait until no connection to `port` is open any more (TIME_WAIT and CLOSE are done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [t for t in read_tcp() if port in (t[1], t[3]) and t[4] not in (TCP_LISTEN, "06", "07")]
        if not left:
            return
        time.sleep(0.1)
    raise AssertionError(f"connections to port {port} still open after {timeout} s: {left}")


def test_go_client_plaintext_from_uprobes(live, zoo, goclients, tmp_path):  # noqa: F811
    # paced SSE events: the client's Read calls block in the netpoller between events, so goroutines
    # park and resume (possibly on another thread) inside the probed calls
    router = zoo("inject", alpn=("h2", "http/1.1"), stream_delay=0.02)
    env = goclient_env(router.ca_path)
    old = _old_go(goclients["symtab"], tmp_path / "goclient-go116")
    c = live("--no-capture", "--interval", "1", "--max-delay", "1", "--ssl-lib", str(old))
    assert "Go TLS uprobes refused" in c.output() and "stack ABI" in c.output(), c.output()
    # both binaries exec'd after the collector started: attached from their exec records
    runs = [_exec_and_attach(c, goclients["symtab"], router.url, env, tmp_path / "go1", proto="h1"),
            _exec_and_attach(c, goclients["stripped"], router.url, env, tmp_path / "go2", proto="h2", calls=2)]
    # now both files are probed: every protocol x stream x binary combination
    for binary in ("symtab", "stripped"):
        for proto in ("h1", "h2"):
            for stream in (False, True):
                r = subprocess.run(goclient_cmd(goclients[binary], router.url, proto=proto, stream=stream), env=env,
                                   capture_output=True, text=True, timeout=60)
                assert r.returncode == 0, r.stderr
                runs.append(parse_lines(r.stdout))
    # the clients are gone, but a socket is destroyed (its flow row written) only once the router has
    # closed its side too: stopping before that would leave flows unwritten (a test race, not a loss)
    closing_done(router.port)
    assert c.stop() == 0, c.output()

    with Store.open(str(c.store), read_only=True) as s:
        rows = s.sql("SELECT e.exchange_id, e.pid, e.api, e.model_requested, e.streamed, e.flow_uid, f.pid, "
                     "f.dst_port, h.http_version, e.stream_events FROM llm_exchanges e LEFT JOIN flows f ON f.flow_uid = e.flow_uid "
                     "LEFT JOIN http h ON h.exchange_id = e.exchange_id WHERE e.source = 'uprobe'").fetchall()
        calls = dict(s.sql("SELECT exchange_id, arguments FROM tool_calls WHERE direction = 'response'").fetchall())
        secrets = s.sql("SELECT count(*) FROM secrets_seen WHERE last4 = ?", [API_KEY[-4:]]).fetchone()[0]
        detail = json.loads(s.sql("SELECT detail FROM collector_stats ORDER BY ts DESC LIMIT 1").fetchone()[0])
    by_pid: dict[int, list] = {}
    for r in rows:
        by_pid.setdefault(r[1], []).append(r)
    summary = [(ls[0]["pid"], ls[0]["proto"], ls[0]["stream"], len(ls), len(by_pid.get(ls[0]["pid"], [])))
               for ls in runs]
    assert all(want == got for *_, want, got in summary), (summary, detail, c.output())
    for lines in runs:
        pid = lines[0]["pid"]
        mine = by_pid.get(pid, [])
        assert len(mine) == len(lines), (lines, mine, detail, c.output())  # every call, on its one flow
        flows = {m[5] for m in mine}
        assert len(flows) == 1 and None not in flows, mine
        for line, (eid, _pid, api, model, streamed, _uid, flow_pid, dport, hv, events) in zip(lines, sorted(mine),
                                                                                             strict=True):
            assert api == "openai.chat" and model == "gpt-4o" and bool(streamed) == line["stream"]
            assert ("2" in hv) == (line["proto"] == "HTTP/2.0"), (hv, line)
            if line["stream"]:  # every SSE event the client read was seen, none cut
                summary = json.loads(events)
                assert summary["types"]["chat.completion.chunk"] == line["events"] and summary["done"], (summary, line)
            assert flow_pid == pid and dport == router.port  # linked to its flow and process
            assert json.loads(calls[eid])["command"] == json.loads(line["arguments"])["command"]
    assert secrets >= 1  # the bearer key became a fingerprint
    # >= : the collector is host-wide, other Go programs exec'd meanwhile (e.g. the go tool) are probed too
    assert detail["go_tls_binaries"] >= 2 and detail["go_tls_refused"] >= 1, (detail, c.output())
    assert detail["plaintext_decode_errors"] == 0, detail
