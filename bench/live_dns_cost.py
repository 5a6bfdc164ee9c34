"""Kernel time of the DNS send-call probes on traffic that is NOT DNS (what every host pays).

Loads the collector's probes (no SSL, no getaddrinfo uprobes), turns kernel.bpf_stats_enabled on
(restored after), makes N `send()`s of 64-byte UDP datagrams on a connected loopback socket and
N/10 open/close pairs, and prints each syscall probe's mean ns per call from its fdinfo. The probes
are system-wide, so other processes' calls on the machine are counted too.

    sudo .venv/bin/python bench/live_dns_cost.py [--n 100000]
"""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

from collector.ebpf.bpfsys import prog_run_stats
from collector.ebpf.loader import ProbeOptions, Probes

STATS = Path("/proc/sys/kernel/bpf_stats_enabled")
PROGS = ("sendto", "sendmsg", "close", "connect")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    n = ap.parse_args().n
    probes = Probes(ProbeOptions(ssl=False, dns=False))
    orig = STATS.read_text().strip()
    STATS.write_text("1")
    try:
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", 0))
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.connect(rx.getsockname())
        for _ in range(n):
            tx.send(b"x" * 64)
            try:
                rx.recv(100, socket.MSG_DONTWAIT)
            except BlockingIOError:
                pass
        for _ in range(n // 10):
            os.close(os.open("/dev/null", os.O_RDONLY))
        for name in PROGS:
            fd = probes.programs.get(f"tracepoint__syscalls__sys_enter_{name}")
            if fd is None:
                continue
            ns, cnt = prog_run_stats(fd)
            print(f"sys_enter_{name}: {ns / max(cnt, 1):.0f} ns/call over {cnt} calls")
    finally:
        STATS.write_text(orig)
        probes.close()


if __name__ == "__main__":
    main()
