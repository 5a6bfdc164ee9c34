"""Capture drops are read from dumpcap's packet socket while it runs, not only when it stops.

dumpcap is frozen (SIGSTOP) so its kernel ring overflows under a loopback UDP burst: the drops must
show in `counters()` before dumpcap exits, and with no traffic after that read the total at exit must
equal it (a drop counted both live and in dumpcap's exit report would double it). On `lo` the kernel
offers each packet twice (outgoing and incoming; libpcap discards the outgoing copy), so drops lie
between sent - captured and twice that.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from collector.live.capture import CaptureRing
from collector.store import Store

needs_root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("dumpcap"),
                                reason="live capture needs root (CAP_NET_RAW, CAP_SYS_PTRACE) and dumpcap")


@needs_root
def test_drops_are_counted_live_and_once(tmp_path):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    port = rx.getsockname()[1]
    ring = CaptureRing(tmp_path / "cap", iface="lo", bpf_filter=f"udp and dst port {port}")
    ring.start()
    assert ring.live_drops, "dumpcap's packet socket was not found"
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = b"x" * 1200
    sent = 0
    os.kill(ring.proc.pid, signal.SIGSTOP)
    try:
        for _ in range(20_000):  # ~24 MB against dumpcap's 2 MB kernel buffer
            try:
                tx.sendto(payload, ("127.0.0.1", port))
                sent += 1
            except BlockingIOError:
                pass
        time.sleep(0.5)  # loopback packets still in the backlog reach (or drop at) the frozen socket first
        live = ring.counters()["capture_drops"]
    finally:
        os.kill(ring.proc.pid, signal.SIGCONT)
    assert live > 0, "no drops seen while dumpcap was frozen"
    ring.close()
    assert ring.drops == live, (ring.drops, live)
    captured = 0
    for _, seg in ring.segments():
        out = subprocess.run(["tcpdump", "-nr", str(seg)], capture_output=True, text=True, check=True).stdout
        captured += out.count("\n")
    assert sent - captured <= ring.drops <= 2 * (sent - captured), (captured, ring.drops, sent)
    tx.close()
    rx.close()


@needs_root
def test_collector_stats_reports_drops_while_running(live, tmp_path):
    """`routerwatch collect` writes capture_drops in the interval rows, before it stops."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    port = rx.getsockname()[1]
    cap = tmp_path / "cap"
    c = live("--no-ebpf", "--iface", "lo", "--capture-dir", str(cap), "--capture-filter",
             f"udp and dst port {port}", "--interval", "0.5", "--max-delay", "0.5")
    dumpcap = int(next(p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _is_dumpcap_of(p, cap)))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    os.kill(dumpcap, signal.SIGSTOP)
    try:
        for _ in range(20_000):
            try:
                tx.sendto(b"x" * 1200, ("127.0.0.1", port))
            except BlockingIOError:
                pass
        deadline = time.monotonic() + 20
        running_drops = 0
        while time.monotonic() < deadline and not running_drops:
            time.sleep(0.5)
            with Store.open(str(c.store), read_only=True) as s:
                running_drops = s.sql("SELECT coalesce(sum(capture_drops), 0) FROM collector_stats").fetchone()[0]
    finally:
        os.kill(dumpcap, signal.SIGCONT)
    assert running_drops > 0, c.output()
    assert c.stop() == 0, c.output()
    with Store.open(str(c.store), read_only=True) as s:
        total, last = s.sql("SELECT sum(capture_drops), max_by(json_extract(detail, '$.capture_drops'), ts) "
                            "FROM collector_stats").fetchone()
    assert total == int(last) >= running_drops
    tx.close()
    rx.close()


def _is_dumpcap_of(proc: Path, capture_dir: Path) -> bool:
    try:
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"dumpcap") and str(capture_dir / "seg.pcap").encode() in argv
