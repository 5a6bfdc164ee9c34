"""The live collector, for real: root, bcc, loopback traffic of known sizes, a real process chain
(python -> sh -> curl), SIGTERM flush and kill -9 durability."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from collector.store import Store
from tests.collector.live.conftest import SizedServer, needs_ebpf

pytestmark = [pytest.mark.ebpf, needs_ebpf]

REQ, RESP = 12_345, 54_321
HTTP_BODY = 7_777
HTTP_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % HTTP_BODY) + b"b" * HTTP_BODY

DRIVER = textwrap.dedent("""
    import json, os, socket, subprocess, sys
    p1, p2, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    if len(sys.argv) > 4:  # a refused connect (non-blocking connects return EINPROGRESS first)
        r = socket.socket(); r.setblocking(False); r.connect_ex(("127.0.0.1", int(sys.argv[4])))
        import select; select.select([], [r], [], 5); r.close()
    c = socket.create_connection(("127.0.0.1", p1))
    c.sendall(b"q" * n)
    got = 0
    while True:
        d = c.recv(65536)
        if not d:
            break
        got += len(d)
    c.close()
    sh = subprocess.Popen(["sh", "-c", f"curl -s -o /dev/null http://127.0.0.1:{p2}/file; true"])
    sh.wait()
    print(json.dumps({"pid": os.getpid(), "sh": sh.pid, "got": got}))
""")


def q(store: Path, sql: str, params: list | None = None) -> list[tuple]:
    with Store.open(str(store), read_only=True) as s:
        return s.sql(sql, params).fetchall()


def test_flows_carry_pid_exe_parent_chain_and_exact_bytes(live, tmp_path):
    if not shutil.which("curl"):
        pytest.skip("curl is not installed (deploy/deps.sh installs it)")
    s1 = SizedServer(REQ, b"r" * RESP)
    s2 = SizedServer(None, HTTP_RESPONSE, http=True)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connects to it are refused
    c = live("--no-capture", "--interval", "1", "--max-delay", "1")
    out = subprocess.run([sys.executable, "-c", DRIVER, str(s1.port), str(s2.port), str(REQ),
                          str(closed.getsockname()[1])],
                         capture_output=True, text=True, timeout=60, check=True)
    info = json.loads(out.stdout)
    assert info["got"] == RESP
    time.sleep(0.5)
    assert c.stop() == 0, c.output()
    s1.close()
    s2.close()

    # the Python program's own connection: right pid, exact application bytes each way
    rows = q(c.store, "SELECT pid, bytes_out, bytes_in, source, tcp_state, process_start, community_id FROM flows "
             "WHERE dst_port = ? AND direction = 'outbound'", [s1.port])
    assert len(rows) == 1, rows
    pid, bout, bin_, source, state, pstart, cid = rows[0]
    assert (pid, bout, bin_, source, state) == (info["pid"], REQ, RESP, "ebpf", "SF")
    # the accepted side is the same connection (same community id), owned by this test process
    inbound = q(c.store, "SELECT pid, bytes_out, bytes_in, community_id FROM flows WHERE dst_port = ? "
                "AND direction = 'inbound'", [s1.port])
    assert inbound and inbound[0][1:] == (REQ, RESP, cid)
    proc = q(c.store, "SELECT exe, ppid FROM processes WHERE pid = ? AND start_time = ?", [pid, pstart])
    assert proc and Path(proc[0][0]).name.startswith("python"), proc

    # python -> sh -> curl: the flow belongs to curl, whose parent is sh, whose parent is the driver
    rows = q(c.store, "SELECT pid, process_start, bytes_out, bytes_in FROM flows WHERE dst_port = ? "
             "AND direction = 'outbound'", [s2.port])
    assert len(rows) == 1, rows
    curl_pid, curl_start, bout, bin_ = rows[0]
    assert bout == s2.received[0] and bin_ == len(HTTP_RESPONSE)
    chain = q(c.store, """
        WITH RECURSIVE up(pid, ppid, exe, start_time, depth) AS (
            SELECT pid, ppid, exe, start_time, 0 FROM processes WHERE pid = ? AND start_time = ?
            UNION ALL
            SELECT p.pid, p.ppid, p.exe, p.start_time, up.depth + 1
            FROM up JOIN (SELECT DISTINCT ON (pid) * FROM processes ORDER BY pid, ts DESC) p ON p.pid = up.ppid
            WHERE up.depth < 3)
        SELECT pid, exe FROM up ORDER BY depth""", [curl_pid, curl_start])
    assert [Path(e).name for _p, e in chain[:1]] == ["curl"], chain
    assert chain[1][0] == info["sh"] and Path(chain[1][1]).name in ("dash", "sh", "bash"), chain
    assert chain[2][0] == info["pid"], chain

    # the refused non-blocking connect: one REJ flow of the driver
    rej = q(c.store, "SELECT pid, tcp_state, bytes_out FROM flows WHERE dst_port = ?", [closed.getsockname()[1]])
    closed.close()
    assert rej == [(info["pid"], "REJ", 0)], rej

    stats = q(c.store, "SELECT mode, detail FROM collector_stats ORDER BY ts DESC LIMIT 1")
    assert stats[0][0] == "ebpf"
    assert json.loads(stats[0][1])["lost"] == 0


def test_sigterm_flushes_everything(live):
    """A long max-delay and interval: only the SIGTERM path can have written the flow."""
    s1 = SizedServer(100, b"z" * 200)
    c = live("--no-capture", "--interval", "3600", "--max-delay", "5", "--poll", "0.5")
    subprocess.run([sys.executable, "-c", DRIVER.split("sh = subprocess")[0], str(s1.port), "0", "100"],
                   check=True, timeout=30)
    assert c.stop(signal.SIGTERM) == 0, c.output()
    s1.close()
    rows = q(c.store, "SELECT bytes_out, bytes_in FROM flows WHERE dst_port = ? AND direction = 'outbound'", [s1.port])
    assert rows == [(100, 200)]
    assert q(c.store, "SELECT count(*) FROM collector_stats")[0][0] >= 1


def test_kill_9_keeps_every_committed_batch(live):
    s1 = SizedServer(10, b"k" * 10)
    c = live("--no-capture", "--interval", "1", "--max-delay", "0.5", "--poll", "0.1")
    loop = textwrap.dedent("""
        import socket, sys, time
        end = time.time() + float(sys.argv[2])
        while time.time() < end:
            s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); s.sendall(b"x" * 10)
            while s.recv(100): pass
            s.close(); time.sleep(0.01)
    """)
    gen = subprocess.Popen([sys.executable, "-c", loop, str(s1.port), "6"])
    time.sleep(4)
    committed = q(c.store, "SELECT count(*) FROM flows WHERE dst_port = ?", [s1.port])[0][0]
    assert committed > 0, c.output()
    c.stop(signal.SIGKILL)
    gen.wait(timeout=30)
    s1.close()
    after = q(c.store, "SELECT count(*) FROM flows WHERE dst_port = ?", [s1.port])[0][0]
    assert after >= committed
    assert q(c.store, "SELECT count(*) FROM collector_stats")[0][0] >= 1


def test_exec_command_line_secrets_are_redacted_at_the_source(live):
    """A process gone before /proc can be read is known from its eBPF exec record only: the value of its
    --secret (40 random characters, no credential shape) is stored as a fingerprint, never in clear."""
    secret = "Zq3xV9pL2mN8bT4wR7yK1cH6jD5fG0sA3eU8iO2q"
    c = live("--no-capture", "--interval", "1", "--max-delay", "0.5", "--poll", "0.1")
    out = subprocess.run(["/bin/sh", "-c", "echo $$", "agent", "--secret", secret, f"DB_PASSWORD={secret}"],
                         capture_output=True, text=True, check=True, timeout=30)
    pid = int(out.stdout)
    time.sleep(1.5)
    assert c.stop() == 0, c.output()
    with Store.open(str(c.store), read_only=True) as s:
        fp = s.secret_key()
        rows = s.sql("SELECT cmdline FROM processes WHERE pid = ?", [pid]).fetchall()
        secrets = s.sql("SELECT kind, fingerprint, last4, direction FROM secrets_seen WHERE pid = ? ORDER BY kind",
                        [pid]).fetchall()
        dump = {t: s.sql(f'SELECT * FROM "{t}"').fetchall() for t in s.tables()}
    from collector.secrets import Fingerprinter

    f = Fingerprinter(fp).fingerprint(secret)
    assert rows and all(r[0] == f"/bin/sh -c echo $$ agent --secret [REDACTED:secret:{f[:12]}] "
                        f"DB_PASSWORD=[REDACTED:password:{f[:12]}]" for r in rows), rows
    assert set(secrets) == {("secret", f, secret[-4:], "cmdline"), ("password", f, secret[-4:], "cmdline")}
    assert secret not in repr(dump)
