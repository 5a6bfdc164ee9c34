"""collector.ebpf.bpfsys: the raw bpf(2)/perf_event_open(2) calls the collector attaches and reads the
probes with, on the real kernel (root), through programs and maps the compiler child handed over."""

from __future__ import annotations

import os
import subprocess

import pytest

from collector.ebpf import bpfsys
from collector.ebpf import events as ev
from tests.collector.live.conftest import needs_ebpf


@pytest.fixture(scope="module")
def probes():
    if os.geteuid() != 0:
        pytest.skip("eBPF needs root (CI runs as root)")
    from collector.ebpf.loader import ProbeOptions, Probes

    p = Probes(ProbeOptions(ssl=False, dns=False, go_tls=False, ringbuf_pages=256))
    yield p
    p.close()


@needs_ebpf
def test_map_sizes_and_lookups_match_the_c_structs(probes):
    assert bpfsys.map_sizes(probes.maps["socks"]) == (8, ev.SOCK_STATE.itemsize)
    assert bpfsys.map_sizes(probes.maps["counters"]) == (4, 8)
    per_cpu = bpfsys.percpu_array_u64(probes.maps["counters"], 0)
    assert len(per_cpu) == bpfsys.possible_cpus() >= os.cpu_count()
    assert bpfsys.map_lookup(probes.maps["socks"], (0).to_bytes(8, "little"), ev.SOCK_STATE.itemsize) is None
    with pytest.raises(bpfsys.BpfSysError, match="lookup of element"):
        bpfsys.percpu_array_u64(probes.maps["counters"], 10_000)  # past the array: E2BIG/ENOENT, not garbage


@needs_ebpf
def test_closing_a_tracepoint_link_detaches_it_and_attach_restores_it(probes):
    """exec_seen counts every exec on the host while sched_process_exec is attached, and none while
    it is not (other processes' execs included)."""
    key = ("tracepoint", "sched:sched_process_exec")
    assert key in probes.links
    probes.detach(key)
    try:
        before = probes.counters()["exec_seen"]
        for _ in range(3):
            subprocess.run(["/bin/true"], check=True)
        assert probes.counters()["exec_seen"] == before
    finally:
        probes.attach(key)
    before = probes.counters()["exec_seen"]
    for _ in range(3):
        subprocess.run(["/bin/true"], check=True)
    assert probes.counters()["exec_seen"] >= before + 3


@needs_ebpf
def test_refusals_name_what_was_attempted(probes, tmp_path):
    prog = probes.programs["gai_enter"]
    with pytest.raises(bpfsys.BpfSysError, match="tracepoint nosuch:event"):
        bpfsys.attach_tracepoint("nosuch:event", probes.programs["tracepoint__sched__sched_process_exec"])
    with pytest.raises(bpfsys.BpfSysError, match=f"uprobe {tmp_path}/absent\\+0x10"):
        bpfsys.attach_uprobe(str(tmp_path / "absent"), 0x10, prog)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(bpfsys.BpfSysError, match="uretprobe"):
        bpfsys.attach_uprobe(str(empty), 1 << 20, prog, retprobe=True)  # past the end of the file



UNIT_CHILD = r"""
import json, socket, ssl, subprocess, sys, tempfile, threading
from pathlib import Path
from collector.ebpf import bpfsys
from collector.ebpf.loader import ProbeOptions, Probes

said = []
p = Probes(ProbeOptions(discover_ssl=False, go_tls=False, log=said.append))
events = [ln for ln in (bpfsys._uprobe_events() / "uprobe_events").read_text().splitlines()
          if f"/rw_{__import__('os').getpid()}_" in ln]
d = Path(tempfile.mkdtemp())
subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", str(d / "k"), "-out", str(d / "c"), "-days", "1", "-subj", "/CN=x"], check=True,
               capture_output=True)
sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); sctx.load_cert_chain(d / "c", d / "k")
lsock = socket.create_server(("127.0.0.1", 0))
got = []
def serve():
    c, _ = lsock.accept()
    with sctx.wrap_socket(c, server_side=True) as t:
        n = 0
        while n < 200 * 1024:
            n += len(t.recv(65536))
        got.append(n)
th = threading.Thread(target=serve); th.start()
cctx = ssl.create_default_context(); cctx.check_hostname = False; cctx.verify_mode = ssl.CERT_NONE
before = p.counters()
with cctx.wrap_socket(socket.create_connection(lsock.getsockname())) as t:
    t.sendall(b"x" * (200 * 1024))  # one SSL_write_ex of 200 KiB
    th.join(10)
after = p.counters()
p.close()
left = [ln for ln in (bpfsys._uprobe_events() / "uprobe_events").read_text().splitlines()
        if f"/rw_{__import__('os').getpid()}_" in ln]
print(json.dumps({"attached": p.attached, "said": said, "events": len(events), "left": len(left),
                  "ssl_seen": after["ssl_seen"] - before["ssl_seen"],
                  "truncated": after["ssl_truncated"] - before["ssl_truncated"], "got": got}))
"""


@needs_ebpf
def test_uprobes_attach_under_the_collector_units_capabilities():
    """The systemd unit gives uid 0 CAP_BPF and CAP_PERFMON but not CAP_SYS_ADMIN; the uprobe PMU
    refuses every uprobe then (EACCES on 6.18), and the collector had no libssl or getaddrinfo probes
    under the unit. The tracefs way works there, 200 KiB written in one SSL call arrive whole (64
    chunks of 4 KiB, no truncation), and the tracefs events are gone once the probes are closed."""
    import json
    import shutil
    import sys

    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is not installed")
    from tests.conftest import REPO
    from tests.support.units import as_collector_unit

    r = subprocess.run(as_collector_unit([sys.executable, "-c", UNIT_CHILD]), capture_output=True, text=True,
                       timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert not [m for m in out["said"] if "refused" in m], out["said"]
    assert any(a.startswith("getaddrinfo@") for a in out["attached"]), out
    assert any(a.startswith("ssl(") for a in out["attached"]), out
    assert out["events"] >= 6 and out["left"] == 0, out  # made through tracefs (getaddrinfo, ssl), and removed again
    assert out["got"] == [200 * 1024] and out["ssl_seen"] >= 2 and out["truncated"] == 0, out


def test_stale_tracefs_events_of_dead_processes_are_removed():
    """A collector killed with -9 leaves its tracefs uprobe events; the next one removes them, and
    never those of a process that still runs."""
    if os.geteuid() != 0 or bpfsys._uprobe_events() is None:
        pytest.skip("tracefs uprobe_events needs root (CI runs as root)")
    dead = subprocess.Popen(["/bin/true"])
    dead.wait()
    root = bpfsys._uprobe_events()
    libc = "/usr/lib/x86_64-linux-gnu/libc.so.6"
    if not os.path.exists(libc):
        pytest.skip(f"{libc} is not on this machine")
    stale = f"{bpfsys.EVENT_GROUP}/rw_{dead.pid}_0"
    alive = f"{bpfsys.EVENT_GROUP}/rw_{os.getppid()}_900"  # a running process (pytest's parent)
    try:
        bpfsys._write_events(root, f"p:{stale} {libc}:0x0\n")
        bpfsys._write_events(root, f"p:{alive} {libc}:0x0\n")
        assert bpfsys.remove_stale_events() >= 1
        listed = (root / "uprobe_events").read_text()
        assert stale not in listed and alive in listed
    finally:
        bpfsys._remove_event(root, stale)
        bpfsys._remove_event(root, alive)
