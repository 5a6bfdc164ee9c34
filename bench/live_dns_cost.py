"""Kernel time of the DNS-query reader on traffic that is NOT DNS (what every host pays).

Loads the collector's probes (no SSL, no getaddrinfo uprobes), turns kernel.bpf_stats_enabled on
(restored after), makes N `send()`s of 64-byte UDP datagrams on a connected loopback socket and
prints the mean ns per call of the socket-send program (sock:sock_send_length, where DNS queries
are read since 2026-12-06: every UDP send pays the check for port 53), with and without the reader
compiled in (`--no-dns-send`). The probes are system-wide, so other sends on the machine count too.

    sudo .venv/bin/python bench/live_dns_cost.py [--n 100000]
"""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

from collector.ebpf.bpfsys import prog_run_stats
from collector.ebpf.loader import ProbeOptions, Probes

STATS = Path("/proc/sys/kernel/bpf_stats_enabled")
PROG = "raw_tracepoint__sock_send_length"


def udp_sends(n: int) -> None:
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
    rx.close()
    tx.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    n = ap.parse_args().n
    orig = STATS.read_text().strip()
    STATS.write_text("1")
    try:
        for dns_send in (True, False):
            probes = Probes(ProbeOptions(ssl=False, dns=False, dns_send=dns_send))
            try:
                ns0, cnt0 = prog_run_stats(probes.programs[PROG])
                udp_sends(n)
                ns, cnt = prog_run_stats(probes.programs[PROG])
                print(f"sock_send_length {'with' if dns_send else 'without'} the DNS reader: "
                      f"{(ns - ns0) / max(cnt - cnt0, 1):.0f} ns/call over {cnt - cnt0} calls")
            finally:
                probes.close()
    finally:
        STATS.write_text(orig)


if __name__ == "__main__":
    main()
