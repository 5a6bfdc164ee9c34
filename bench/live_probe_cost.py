"""Which probes fire per loopback connection, and what each costs (the kernel's BPF run-time stats).

Loads the collector's probes (no SSL uprobes), runs the compiled connect+reset workload of
bench/live.py (C_CONN) pinned to CPU 0, and prints per BPF program: calls per connection, ns per
call, ns per connection. Nobody drains the ring here, so keep --n below ~80k (the ring holds ~90k
connection records). Probes are system-wide: other processes' activity is counted too.

    sudo .venv/bin/python -m bench.live_probe_cost [--n 20000]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
from pathlib import Path

from bench.live import C_CONN, BpfStats, compile_c, pinned
from collector.ebpf.loader import ProbeOptions, Probes


def snapshot(probes: Probes) -> dict[str, tuple[int, int]]:
    out = {}
    for name, f in probes.bpf.funcs.items():
        info = Path(f"/proc/self/fdinfo/{f.fd}").read_text()
        out[name.decode()] = (int(re.search(r"run_time_ns:\s*(\d+)", info).group(1)),
                              int(re.search(r"run_cnt:\s*(\d+)", info).group(1)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    n = ap.parse_args().n
    cpus = {0} if len(os.sched_getaffinity(0)) >= 2 else None
    with tempfile.TemporaryDirectory() as d:
        conn = compile_c(Path(d), "conn", C_CONN)
        if conn is None:
            raise SystemExit("needs a C compiler (cc)")
        server = subprocess.Popen([conn, "serve"], stdout=subprocess.PIPE, text=True, preexec_fn=pinned(cpus))
        port = server.stdout.readline().strip()
        probes = Probes(ProbeOptions(ssl=False))
        try:
            with BpfStats():
                subprocess.run([conn, "storm", port, "2000"], check=True, capture_output=True,
                               preexec_fn=pinned(cpus))
                a = snapshot(probes)
                subprocess.run([conn, "storm", port, str(n)], check=True, capture_output=True,
                               preexec_fn=pinned(cpus))
                b = snapshot(probes)
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


if __name__ == "__main__":
    main()
