"""Live collector cost and capacity, measured against the same workload without it in the same run.

1. Connect-heavy workload (loopback connect + server reset, tests/collector/live/load.py): connections/s
   without the collector and with it, alternated (order swapped every round) so machine noise hits
   both; the ratio is the slowdown. Also the workload's own CPU per connection and the kernel's
   count of nanoseconds spent in the probes per connection (kernel.bpf_stats_enabled), which do not
   depend on how busy the shared machine is.
2. Sustained events/s: P processes making refused loopback connects (one per-connection record each)
   for S seconds with the collector running; events drained per second and events lost, from the
   kernel's own counters (collector_stats.detail).

    sudo .venv/bin/python bench/live.py [--connections 20000] [--seconds 10] [--procs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOAD = REPO / "tests/collector/live/load.py"
BIN = Path(sys.executable).parent
C_REFUSED = r"""
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    double secs = atof(argv[1]);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET; a.sin_port = htons(1); a.sin_addr.s_addr = htonl(0x7f000001);
    struct timespec t0, t; clock_gettime(CLOCK_MONOTONIC, &t0);
    long n = 0;
    for (;;) {
        for (int i = 0; i < 1000; i++) {
            int s = socket(AF_INET, SOCK_STREAM, 0);
            connect(s, (struct sockaddr *)&a, sizeof a);
            close(s);
        }
        n += 1000;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 >= secs) break;
    }
    printf("%ld\n", n);
    return 0;
}
"""
C_DNS = r"""
// sendto() of small DNS queries to 127.0.0.X:53 on an unconnected UDP socket at a fixed rate
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
    double rate = atof(argv[1]), secs = atof(argv[2]);
    int idx = argc > 3 ? atoi(argv[3]) : 0;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET; a.sin_port = htons(53); a.sin_addr.s_addr = htonl(0x7f000000 | (10 + idx));
    int sink = socket(AF_INET, SOCK_DGRAM, 0);  // bound, never read: datagrams drop at its queue (no ICMP)
    int one = 1, small = 4096;
    setsockopt(sink, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(sink, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    if (bind(sink, (struct sockaddr *)&a, sizeof a) != 0) { perror("bind"); return 1; }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    unsigned char q[64];
    double t0 = now();
    long n = 0, want = (long)(rate * secs);
    while (n < want) {
        double due = t0 + n / rate, t = now();
        if (due > t) { struct timespec d = {0, (long)((due - t) * 1e9)}; nanosleep(&d, 0); }
        for (int i = 0; i < 64 && n < want; i++, n++) {
            int len = 0;
            q[0] = n >> 8; q[1] = n; q[2] = 1; q[3] = 0; q[4] = 0; q[5] = 1; memset(q + 6, 0, 6); len = 12;
            q[len] = 5; sprintf((char *)q + len + 1, "h%04ld", n % 4096); len += 6;  // 4096 names
            q[len++] = 5; memcpy(q + len, "bench", 5); len += 5;
            q[len++] = 4; memcpy(q + len, "test", 4); len += 4;
            q[len++] = 0; q[len++] = 0; q[len++] = 1; q[len++] = 0; q[len++] = 1;
            if (sendto(s, q, len, 0, (struct sockaddr *)&a, sizeof a) != len) { perror("sendto"); return 1; }
        }
    }
    printf("%ld %.3f\n", n, now() - t0);
    return 0;
}
"""
REFUSED = """
import socket, sys, time
end = time.time() + float(sys.argv[1]); n = 0
while time.time() < end:
    for _ in range(1000):
        s = socket.socket(); s.connect_ex(("127.0.0.1", 1)); s.close()
    n += 1000
print(n)
"""


def start_collector(store: Path, *extra: str) -> subprocess.Popen:
    log = open(store.parent / f"collect-{time.time_ns()}.log", "w+")
    p = subprocess.Popen([str(BIN / "routerwatch"), "collect", "--store", str(store), "--no-capture", "-q",
                          "--interval", "1", *extra], stdout=log, stderr=log)
    p.log = log  # type: ignore[attr-defined]
    # ready when the first collector_stats row is committed (probes attached, loop running)
    from collector.store import Store

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if p.poll() is not None:
            log.seek(0)
            raise SystemExit(f"collector exited: {log.read()}")
        try:
            with Store.open(str(store), read_only=True) as s:
                if s.sql("SELECT count(*) FROM collector_stats").fetchone()[0] > 0:
                    return p
        except Exception:
            pass
        time.sleep(0.5)
    raise SystemExit("collector did not start")


def stop(p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=120)


def run_child(cmd: list[str]) -> tuple[str, float]:
    """stdout and CPU seconds (user + sys) of one child process."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = p.stdout.read()
    _pid, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{cmd} failed")
    return out, ru.ru_utime + ru.ru_stime


def storm(port: int, n: int) -> tuple[float, float]:
    """(connections/s wall, CPU microseconds per connection of the workload process)."""
    out, cpu = run_child([sys.executable, str(LOAD), "storm", str(port), str(n)])
    return n / float(out), cpu / n * 1e6


def bpf_run_ns(pid: int) -> int:
    """Nanoseconds the kernel spent in `pid`'s BPF programs so far (kernel.bpf_stats_enabled=1)."""
    total = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:bpf-prog":
                continue
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue
        for line in info.splitlines():
            if line.startswith("run_time_ns:"):
                total += int(line.split()[1])
    return total


class BpfStats:
    """Switch on the kernel's per-program run-time accounting for the duration (off again after)."""

    PATH = Path("/proc/sys/kernel/bpf_stats_enabled")

    def __enter__(self) -> BpfStats:
        self.old = self.PATH.read_text().strip()
        self.PATH.write_text("1")
        return self

    def __exit__(self, *exc: object) -> None:
        self.PATH.write_text(self.old)


def cpu_seconds(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def connect_ratio(n: int, rounds: int, tmp: Path) -> dict:
    server = subprocess.Popen([sys.executable, str(LOAD), "serve"], stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline())
    off, on, off_cpu, on_cpu, bpf_ns = [], [], [], [], []
    try:
        storm(port, 2000)  # warm-up
        for r in range(rounds):  # alternate (and swap the order every round): noise hits both sides
            for with_collector in ((False, True) if r % 2 == 0 else (True, False)):
                c = start_collector(tmp / f"store-ratio-{r}") if with_collector else None
                time.sleep(1)
                ns0 = bpf_run_ns(c.pid) if c is not None else 0
                rate, cpu = storm(port, n)
                (on if with_collector else off).append(rate)
                (on_cpu if with_collector else off_cpu).append(cpu)
                if c is not None:
                    bpf_ns.append((bpf_run_ns(c.pid) - ns0) / n)
                    stop(c)
    finally:
        server.kill()
        server.wait()
    m_off, m_on = statistics.median(off), statistics.median(on)
    return {"connections_per_round": n, "rounds": rounds,
            "connects_per_s_without": round(m_off), "connects_per_s_with": round(m_on),
            "ratio_with_over_without": round(m_on / m_off, 3), "slowdown_pct": round(100 * (1 - m_on / m_off), 1),
            "workload_cpu_us_per_connect_without": round(statistics.median(off_cpu), 1),
            "workload_cpu_us_per_connect_with": round(statistics.median(on_cpu), 1),
            # both sockets of each connection (client and accepted), every probe, as the kernel counts it
            "bpf_ns_per_connection": round(statistics.median(bpf_ns)),
            "runs_without": [round(x) for x in off], "runs_with": [round(x) for x in on],
            "loadavg": os.getloadavg()[0]}


def compile_c(tmp: Path, name: str, source: str) -> str | None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None
    src, exe = tmp / f"{name}.c", tmp / name
    src.write_text(source)
    return str(exe) if subprocess.run([cc, "-O2", "-o", str(exe), str(src)], capture_output=True).returncode == 0 \
        else None


def sustained_dns(rates: list[int], seconds: float, procs: int, tmp: Path) -> list[dict]:
    """DNS queries sent with sendto() to 127.0.0.x:53 on unconnected UDP sockets (each one T_DNSQ
    record through sys_enter_sendto, parsed and stored as a `dns` row) at fixed rates, one collector
    per rate; generated (the generators' count) vs the kernel's dnsq_seen/dnsq_lost vs rows stored."""
    from collector.store import Store

    gen = compile_c(tmp, "dnsgen", C_DNS)
    if gen is None:
        raise SystemExit("the DNS generator needs a C compiler (cc)")
    out = []
    for rate in rates:
        store = tmp / f"store-dns-{rate}"
        c = start_collector(store, "--no-ssl")
        with Store.open(str(store), read_only=True) as s:
            before = json.loads(s.sql("SELECT detail FROM collector_stats ORDER BY ts DESC LIMIT 1").fetchone()[0])
        cpu0 = cpu_seconds(c.pid)
        gens = [subprocess.Popen([gen, str(rate / procs), str(seconds), str(i)], stdout=subprocess.PIPE, text=True)
                for i in range(procs)]
        res = [g.communicate()[0].split() for g in gens]
        made = sum(int(r[0]) for r in res)
        wall = max(float(r[1]) for r in res)
        time.sleep(1.5)  # one more drain + stats row
        cpu = cpu_seconds(c.pid) - cpu0
        stop(c)
        with Store.open(str(store), read_only=True) as s:
            after = json.loads(s.sql("SELECT detail FROM collector_stats ORDER BY ts DESC LIMIT 1").fetchone()[0])
            rows = s.sql("SELECT count(*), count(DISTINCT trans_id), count(pid) FROM dns WHERE source = 'ebpf-udp53' "
                         "AND query LIKE '%.bench.test'").fetchone()
        seen = after.get("kernel_dnsq_seen", 0) - before.get("kernel_dnsq_seen", 0)
        lost = after["lost"] - before.get("lost", 0)
        out.append({"target_per_s": rate, "generator_procs": procs, "seconds": round(wall, 2), "generated": made,
                    "achieved_per_s": round(made / wall), "kernel_dnsq_seen": seen,
                    "kernel_lost": lost, "dns_rows_stored": rows[0], "rows_with_pid": rows[2],
                    "zero_loss": lost == 0 and rows[0] == made,
                    "collector_cpu_s": round(cpu, 2), "collector_cpu_us_per_record": round(cpu / max(rows[0], 1) * 1e6, 2),
                    "loadavg": os.getloadavg()[0]})
    return out


def generator(tmp: Path) -> list[str]:
    """The refused-connect loop: compiled C when a compiler is here (Python tops out near 25k/s per core)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc and not os.environ.get("BENCH_PY_GENERATOR"):
        src, exe = tmp / "refuse.c", tmp / "refuse"
        src.write_text(C_REFUSED)
        if subprocess.run([cc, "-O2", "-o", str(exe), str(src)], capture_output=True).returncode == 0:
            return [str(exe)]
    return [sys.executable, "-c", REFUSED]


def sustained_events(seconds: float, procs: int, tmp: Path) -> dict:
    from collector.store import Store

    store = tmp / "store-events"
    c = start_collector(store, "--no-ssl")
    with Store.open(str(store), read_only=True) as s:
        before = json.loads(s.sql("SELECT detail FROM collector_stats ORDER BY ts DESC LIMIT 1").fetchone()[0])
    cpu0 = cpu_seconds(c.pid)
    t0 = time.monotonic()
    gen = generator(tmp)
    gens = [subprocess.Popen([*gen, str(seconds)], stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    made = sum(int(g.communicate()[0]) for g in gens)
    wall = time.monotonic() - t0
    time.sleep(1.5)  # one more drain + stats row
    cpu = cpu_seconds(c.pid) - cpu0
    stop(c)
    with Store.open(str(store), read_only=True) as s:
        after = json.loads(s.sql("SELECT detail FROM collector_stats ORDER BY ts DESC LIMIT 1").fetchone()[0])
        flows = s.sql("SELECT count(*) FROM flows WHERE dst_port = 1").fetchone()[0]
    seen = after["kernel_conn_seen"] - before.get("kernel_conn_seen", 0)
    recorded = after["conn_recorded"] - before.get("conn_recorded", 0)
    lost = after["lost"] - before.get("lost", 0)
    return {"generator": Path(gen[0]).name, "generator_procs": procs, "seconds": round(wall, 1), "connections_made": made,
            "events_seen_by_kernel": seen, "events_recorded": recorded, "events_lost": lost,
            "refused_flows_in_store": flows, "events_per_s": round(recorded / wall),
            "collector_cpu_s": round(cpu, 2),
            "events_per_collector_cpu_s": round(recorded / cpu) if cpu else None,
            "loadavg": os.getloadavg()[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=15000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--dns-rates", default="50000,60000,80000", help="queries/s for the DNS phase, comma-separated")
    ap.add_argument("--only", choices=["connect", "sustained", "dns"], help="run one phase")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/live.py needs root (eBPF)")
    with tempfile.TemporaryDirectory(prefix="rw-bench-live-") as d:
        tmp = Path(d)
        res = {}
        if a.only in (None, "connect"):
            with BpfStats():
                res["connect_workload"] = connect_ratio(a.connections, a.rounds, tmp)
        if a.only in (None, "sustained"):
            res["sustained"] = sustained_events(a.seconds, a.procs, tmp)
        if a.only in (None, "dns"):
            res["sustained_dns"] = sustained_dns([int(r) for r in a.dns_rates.split(",")], a.seconds, a.procs, tmp)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
