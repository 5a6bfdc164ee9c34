"""Which probes fire per loopback connection, what each costs, and what they cost the workload.

Loads the collector's probes (no SSL uprobes) in this process, runs the compiled connect+reset
workload of bench/live.py (C_CONN) pinned to CPU 0, and prints per BPF program: calls per
connection, ns per call, ns per connection (the kernel's BPF run-time stats). Probes are
system-wide: other processes' activity is counted too.

With --pairs K it then measures the workload with the probes detached and attached, alternated K
times (order swapped every pair), the program loaded once (no 5 s compile per round, so many pairs
fit in a minute) and the ring drained between rounds: connections/s and workload CPU per connection
(client + server), ratio per pair, median and spread. This isolates the probes' cost to the
workload, tracepoint dispatch included, from the collector process's own CPU use (on the other CPU).

    sudo .venv/bin/python bench/live_probe_cost.py [--n 20000] [--pairs 20] [--leave-out syscalls:]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python bench/X.py`: the repo root

from bench.live import C_CONN, BpfStats, compile_c, cpu_seconds, pinned, run_child, spread  # noqa: E402
from collector.ebpf.loader import ProbeOptions, Probes  # noqa: E402


def snapshot(probes: Probes) -> dict[str, tuple[int, int]]:
    return probes.program_stats()


def tracepoint_keys(probes: Probes) -> list[tuple[str, str]]:
    """Every attached tracepoint, classic ("tracepoint", "cat:event") and raw ("raw_tracepoint",
    name), so detaching really detaches every probe the workload hits."""
    return list(probes.links)


def set_attached(probes: Probes, keys: list[tuple[str, str]], on: bool) -> None:
    for key in keys:
        (probes.attach if on else probes.detach)(key)


def attached_ratio(probes: Probes, conn: str, port: str, server_pid: int, n: int, pairs: int,
                   cpus: set[int] | None, leave_out: tuple[str, ...] = ()) -> dict:
    tps = tracepoint_keys(probes)
    out = [k for k in tps if any(k[1].startswith(p) for p in leave_out)]
    set_attached(probes, out, False)  # left out of both phases: the cost of the rest
    tps = [k for k in tps if k not in out]
    rates: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    pair_ratios: list[float] = []

    def one(on: bool) -> float:
        set_attached(probes, tps, on)
        srv0 = cpu_seconds(server_pid)
        out, c = run_child([conn, "storm", port, str(n)], cpus)
        cpu[on].append((c + cpu_seconds(server_pid) - srv0) / n * 1e6)
        probes.drain()
        rate = n / float(out)
        rates[on].append(rate)
        return rate

    for i in range(pairs):
        if i % 2 == 0:
            off = one(False)
            on = one(True)
        else:
            on = one(True)
            off = one(False)
        pair_ratios.append(on / off)
    return {"connections_per_round": n, "pairs": pairs,
            "connects_per_s_detached": spread(rates[False], 0), "connects_per_s_attached": spread(rates[True], 0),
            "ratio_attached_over_detached": spread(pair_ratios),
            "workload_cpu_us_per_connect_detached": spread(cpu[False], 2),
            "workload_cpu_us_per_connect_attached": spread(cpu[True], 2),
            "left_out": sorted(k[1] for k in out), "loadavg": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--pairs", type=int, default=0, help="also measure K detached/attached pairs")
    ap.add_argument("--leave-out", default="", help="tracepoints left detached in both phases, by name prefix, "
                    "comma-separated (e.g. syscalls: for the cost of everything but the DNS send-call probes)")
    ap.add_argument("--no-dns-send", action="store_true",
                    help="load the program as `collect --no-dns-send` does (no syscall tracepoints compiled in)")
    opts = ap.parse_args()
    n = opts.n
    ratio = None
    cpus = {0} if len(os.sched_getaffinity(0)) >= 2 else None
    with tempfile.TemporaryDirectory() as d:
        conn = compile_c(Path(d), "conn", C_CONN)
        if conn is None:
            raise SystemExit("needs a C compiler (cc)")
        server = subprocess.Popen([conn, "serve"], stdout=subprocess.PIPE, text=True, preexec_fn=pinned(cpus))
        port = server.stdout.readline().strip()
        probes = Probes(ProbeOptions(ssl=False, dns_send=not opts.no_dns_send))
        try:
            with BpfStats():
                subprocess.run([conn, "storm", port, "2000"], check=True, capture_output=True,
                               preexec_fn=pinned(cpus))
                a = snapshot(probes)
                subprocess.run([conn, "storm", port, str(n)], check=True, capture_output=True,
                               preexec_fn=pinned(cpus))
                b = snapshot(probes)
            probes.drain()
            if opts.pairs:
                ratio = attached_ratio(probes, conn, port, server.pid, n, opts.pairs, cpus,
                                       tuple(p for p in opts.leave_out.split(",") if p))
        finally:
            probes.close()
            server.kill()
            server.wait()
    total = 0
    for k in sorted(b):
        ns, cnt = b[k][0] - a.get(k, (0, 0))[0], b[k][1] - a.get(k, (0, 0))[1]
        if cnt:
            total += ns
            print(f"{k:48s} calls/conn {cnt / n:5.2f}  ns/call {ns / cnt:6.0f}  ns/conn {ns / n:6.0f}")
    print(f"all probes: {total / n:.0f} ns per connection (both sockets)")
    if ratio is not None:
        print(json.dumps(ratio, indent=1))


if __name__ == "__main__":
    main()
