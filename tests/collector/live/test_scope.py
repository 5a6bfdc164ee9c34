"""`routerwatch collect --netns`: a collector records only its own namespace's connections, DNS
lookups and processes (filtered in the kernel), and its capture ring runs inside that namespace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from collector.live.scope import ScopeError, resolve
from collector.store import Store
from tests.collector.live.conftest import needs_ebpf
from tests.conftest import run_cli
from tests.support.netns import Netns, netns_skip_reason

# in one namespace: a server, N connections to it (sizes known), a getaddrinfo of a name unique to
# this namespace, and an exec'd child
DRIVER = textwrap.dedent("""
    import json, os, socket, subprocess, sys, threading
    port, n, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port)); srv.listen(64)
    def serve():
        for _ in range(n):
            c, _a = srv.accept()
            with c:
                c.recv(100); c.sendall(b"y" * 200)
    t = threading.Thread(target=serve); t.start()
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port)); s.sendall(b"x" * 100)
        while s.recv(4096): pass
        s.close()
    t.join()
    socket.getaddrinfo(name, port)
    child = subprocess.run(["true"])
    print(json.dumps({"pid": os.getpid()}))
""")


def q(store: Path, sql: str, params: list | None = None) -> list[tuple]:
    with Store.open(str(store), read_only=True) as s:
        return s.sql(sql, params).fetchall()


def test_scope_names_are_checked():
    with pytest.raises(ScopeError, match="no-such-ns"):
        resolve(netns="no-such-ns-rw")
    with pytest.raises(ScopeError, match="not a network namespace"):
        resolve(netns="/etc/hostname")
    with pytest.raises(ScopeError, match="not under"):
        resolve(cgroup="/tmp")
    own = resolve(netns=f"pid:{os.getpid()}")
    assert own.netns_inum == os.stat("/proc/self/ns/net").st_ino
    assert resolve().whole_host


def test_collect_refuses_an_unknown_namespace_in_one_line(tmp_path):
    r = run_cli("collect", "--store", str(tmp_path / "s"), "--netns", "no-such-ns-rw", "--duration", "1")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "no-such-ns-rw" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.ebpf
@needs_ebpf
@pytest.mark.skipif(netns_skip_reason() is not None, reason=netns_skip_reason() or "")
def test_collector_scoped_to_a_namespace_records_only_its_traffic(live, tmp_path):
    n = 5
    with Netns() as a, Netns() as b:
        cap = tmp_path / "capture"
        c = live("--netns", a.name, "--interval", "1", "--max-delay", "1", "--capture-dir", str(cap),
                 "--capture-filter", "tcp")
        assert f"net:[{a.inum}]" in c.banner, c.banner
        # the capture ring's dumpcap runs inside namespace a
        dumpcap = int((cap / ".dumpcap.pid").read_text())
        assert os.stat(f"/proc/{dumpcap}/ns/net").st_ino == a.inum
        runs = {}
        for ns, port, name in ((a, 18101, "127.0.10.1"), (b, 18102, "127.0.20.1"), (None, None, "127.0.30.1")):
            if ns is None:  # the collector's own namespace: out of scope as well
                import socket
                with socket.socket() as s:
                    s.bind(("127.0.0.1", 0))
                    port = s.getsockname()[1]
                cmd = [sys.executable, "-c", DRIVER, str(port), str(n), name]
            else:
                cmd = ns.argv(sys.executable, "-c", DRIVER, str(port), str(n), name)
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
            runs[name] = (port, json.loads(out.stdout)["pid"])
        time.sleep(1.5)
        assert c.stop() == 0, c.output()

    (pa, pid_a), (pb, pid_b), (pr, pid_r) = runs.values()
    flows = q(c.store, "SELECT dst_port, direction, pid, bytes_out, bytes_in FROM flows WHERE source LIKE 'ebpf%' "
              "AND dst_port IN (?, ?, ?)", [pa, pb, pr])
    out = sorted(f for f in flows if f[1] == "outbound")
    inb = [f for f in flows if f[1] == "inbound"]
    assert out == [(pa, "outbound", pid_a, 100, 200)] * n, flows
    assert len(inb) == n and {f[0] for f in inb} == {pa}, flows
    dns = q(c.store, "SELECT query, pid FROM dns WHERE source = 'ebpf-getaddrinfo' AND query IN "
            "('127.0.10.1', '127.0.20.1', '127.0.30.1')")
    assert dns == [("127.0.10.1", pid_a)], dns
    pids = {r[0] for r in q(c.store, "SELECT DISTINCT pid FROM processes")}
    assert pid_a in pids and pid_b not in pids and pid_r not in pids
    # the ring holds namespace a's packets only
    from scapy.all import TCP, rdpcap

    ports = set()
    for seg in sorted(cap.glob("seg_*.pcap")):
        for p in rdpcap(str(seg)):
            if TCP in p:
                ports |= {p[TCP].sport, p[TCP].dport}
    assert pa in ports and pb not in ports and pr not in ports


@pytest.mark.ebpf
@needs_ebpf
def test_collector_scoped_to_a_cgroup_records_only_its_processes(live, tmp_path):
    from collector.live.scope import cgroup2_root

    root = cgroup2_root()
    if root is None:
        pytest.skip("no cgroup v2 hierarchy mounted (the kernel's cgroup ids live there)")
    cg = root / f"rwtest-{os.getpid()}"
    cg.mkdir()
    try:
        c = live("--cgroup", str(cg), "--no-capture", "--interval", "1", "--max-delay", "1")
        ports = []
        for inside in (True, False):
            with __import__("socket").socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            ports.append(port)
            py = f"{sys.executable} -c '{DRIVER}' {port} 3 127.0.{40 if inside else 50}.1"
            cmd = f"echo $$ > {cg}/cgroup.procs && exec {py}" if inside else f"exec {py}"
            subprocess.run(["sh", "-c", cmd], check=True, timeout=60, capture_output=True)
        time.sleep(1.5)
        assert c.stop() == 0, c.output()
    finally:
        cg.rmdir()
    flows = q(c.store, "SELECT dst_port, direction FROM flows WHERE dst_port IN (?, ?)", ports)
    assert sorted(flows) == sorted([(ports[0], "outbound")] * 3 + [(ports[0], "inbound")] * 3), flows
    dns = q(c.store, "SELECT query FROM dns WHERE query IN ('127.0.40.1', '127.0.50.1')")
    assert dns == [("127.0.40.1",)]
