"""Live collector cost and capacity, measured against the same workload without it in the same run.

1. Connect-heavy workload (compiled loopback connect + server reset, C_CONN below): connections/s
   without the collector and with it, in alternated pairs (order swapped every pair), the workload
   pinned to CPU 0 and the collector to CPU 1; the ratio per pair, median and spread. Also the
   workload's own CPU per connection (client + server) and the kernel's count of nanoseconds spent in
   the probes per connection (kernel.bpf_stats_enabled), which do not depend on how busy the machine is.
2. Sustained connection records: P processes making refused loopback connects (one per-connection
   record each) for S seconds with the collector running; records drained per second and lost, from
   the kernel's own counters (collector_stats.detail).
3. Sustained DNS-query records: compiled generators sendto() small DNS queries to 127.0.0.x:53 at
   fixed rates (--dns-rates); generated vs kernel-seen vs lost vs `dns` rows stored.
4. Memory: the collector's RSS (eBPF and a capture on lo) --rss-settle seconds after it is ready, then
   under --rss-load seconds of a TLS keep-alive workload whose plaintext the libssl probes decode into
   exchanges (bench/tls_probe_cost.py's client and server), and --rss-settle seconds after it.

    sudo .venv/bin/python bench/live.py [--connections 20000] [--rounds 10] [--seconds 10] [--procs 2]
                                        [--dns-rates 50000,60000,80000] [--only connect|sustained|dns|rss]
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
sys.path.insert(0, str(REPO))  # run as `python bench/live.py`: bench.tls_probe_cost's workload is imported
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
C_CONN = r"""
// connect-heavy loopback workload: `conn serve` prints its port, accepts and resets each connection
// (SO_LINGER 0: no TIME_WAIT piles up across rounds); `conn storm PORT N` makes N connections, each
// waiting for the server's close, and prints the seconds they took
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
    struct sockaddr_in a = {0};
    socklen_t al = sizeof a;
    a.sin_family = AF_INET; a.sin_addr.s_addr = htonl(0x7f000001);
    if (argv[1][1] == 'e') {  // serve
        int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        struct linger lg = {1, 0};
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 4096)) { perror("listen"); return 1; }
        getsockname(s, (struct sockaddr *)&a, &al);
        printf("%d\n", ntohs(a.sin_port)); fflush(stdout);
        for (;;) {
            int c = accept(s, 0, 0);
            if (c < 0) continue;
            setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            close(c);
        }
    }
    a.sin_port = htons(atoi(argv[2]));
    long n = atol(argv[3]);
    char b;
    double t0 = now();
    for (long i = 0; i < n; i++) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c, (struct sockaddr *)&a, sizeof a) == 0 || errno == ECONNRESET) (void)!recv(c, &b, 1, 0);
        else { perror("connect"); return 1; }
        close(c);
    }
    printf("%.6f\n", now() - t0);
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


def pinned(cpus: set[int] | None):
    """preexec_fn pinning a child to `cpus` (None: no pinning)."""
    return (lambda: os.sched_setaffinity(0, cpus)) if cpus else None


COLLECTOR_ARGS: list[str] = []  # options every collector the bench starts gets (--ring-mb)


def start_collector(store: Path, *extra: str, cpus: set[int] | None = None, capture: bool = False) -> subprocess.Popen:
    log = open(store.parent / f"collect-{time.time_ns()}.log", "w+")
    cap = ["--capture-dir", str(store.parent / "capture"), "--iface", "lo"] if capture else ["--no-capture"]
    p = subprocess.Popen([str(BIN / "routerwatch"), "collect", "--store", str(store), *cap, "-q",
                          "--interval", "1", *COLLECTOR_ARGS, *extra], stdout=log, stderr=log, preexec_fn=pinned(cpus))
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


def run_child(cmd: list[str], cpus: set[int] | None = None) -> tuple[str, float]:
    """stdout and CPU seconds (user + sys) of one child process."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, preexec_fn=pinned(cpus))
    out = p.stdout.read()
    _pid, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{cmd} failed")
    return out, ru.ru_utime + ru.ru_stime


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
    """The kernel's per-program run-time accounting on for the duration. Through the bpf(2)
    BPF_ENABLE_STATS command, which is reference-counted and held by an fd (others toggling the
    kernel.bpf_stats_enabled sysctl on a shared machine cannot switch it off under us); the sysctl
    where the command is unavailable."""

    PATH = Path("/proc/sys/kernel/bpf_stats_enabled")
    _NR_BPF = {"x86_64": 321, "aarch64": 280}
    _BPF_ENABLE_STATS, _BPF_STATS_RUN_TIME = 32, 0

    def __enter__(self) -> BpfStats:
        import ctypes
        import platform

        self.fd, self.old = -1, None
        nr = self._NR_BPF.get(platform.machine())
        if nr is not None:
            attr = ctypes.create_string_buffer(self._BPF_STATS_RUN_TIME.to_bytes(4, "little") + bytes(4))
            self.fd = ctypes.CDLL(None, use_errno=True).syscall(nr, self._BPF_ENABLE_STATS, attr, 8)
        if self.fd < 0:
            self.old = self.PATH.read_text().strip()
            self.PATH.write_text("1")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        if self.old is not None:
            self.PATH.write_text(self.old)


def cpu_seconds(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def spread(xs: list[float], nd: int = 3) -> dict:
    """median, quartiles and range of a sample (the ratio's noise, reported next to it)."""
    q = statistics.quantiles(xs, n=4) if len(xs) >= 2 else [xs[0]] * 3
    return {"median": round(statistics.median(xs), nd), "q1": round(q[0], nd), "q3": round(q[2], nd),
            "min": round(min(xs), nd), "max": round(max(xs), nd)}


def connect_ratio(n: int, rounds: int, tmp: Path) -> dict:
    """Connections/s of the compiled connect+reset workload without and with the collector, in
    alternated pairs (the order swapped every pair). The workload (client and server) is pinned to
    CPU 0 and the collector to CPU 1, so the probes' cost lands on the workload's CPU (they run in its
    context) while the collector's own draining does not compete with it: the setting in which
    "per-connection events only go to userspace". Ratio per adjacent pair; median and spread."""
    conn = compile_c(tmp, "conn", C_CONN)
    if conn is None:
        raise SystemExit("the connect workload needs a C compiler (cc)")
    ncpu = len(os.sched_getaffinity(0))
    work_cpus, coll_cpus = ({0}, {1}) if ncpu >= 2 else (None, None)
    server = subprocess.Popen([conn, "serve"], stdout=subprocess.PIPE, text=True, preexec_fn=pinned(work_cpus))
    port = server.stdout.readline().strip()
    pairs: list[tuple[float, float]] = []
    cpu_off, cpu_on, bpf_ns = [], [], []

    def round_(with_collector: bool) -> float:
        c = start_collector(tmp / f"store-ratio-{time.time_ns()}", "--no-ssl", cpus=coll_cpus) \
            if with_collector else None
        try:
            time.sleep(0.5)
            ns0 = bpf_run_ns(c.pid) if c is not None else 0
            srv0 = cpu_seconds(server.pid)
            out, cpu = run_child([conn, "storm", port, str(n)], work_cpus)
            # workload CPU per connection: the client and the server (both ends of each connection)
            per = (cpu + cpu_seconds(server.pid) - srv0) / n * 1e6
            (cpu_on if c is not None else cpu_off).append(per)
            if c is not None:
                bpf_ns.append((bpf_run_ns(c.pid) - ns0) / n)
            return n / float(out)
        finally:
            if c is not None:
                stop(c)

    try:
        run_child([conn, "storm", port, "2000"], work_cpus)  # warm-up
        for r in range(rounds):
            if r % 2 == 0:
                off = round_(False)
                on = round_(True)
            else:
                on = round_(True)
                off = round_(False)
            pairs.append((off, on))
    finally:
        server.kill()
        server.wait()
    ratios = [on / off for off, on in pairs]
    return {"connections_per_round": n, "rounds": rounds, "pinned": ncpu >= 2,
            "connects_per_s_without": spread([p[0] for p in pairs], 0),
            "connects_per_s_with": spread([p[1] for p in pairs], 0),
            "ratio_with_over_without": spread(ratios),
            "slowdown_pct_median": round(100 * (1 - statistics.median(ratios)), 1),
            "workload_cpu_us_per_connect_without": spread(cpu_off, 2),
            "workload_cpu_us_per_connect_with": spread(cpu_on, 2),
            # both sockets of each connection (client and accepted), every probe, as the kernel counts it
            "bpf_ns_per_connection": spread(bpf_ns, 0),
            "pairs": [[round(a), round(b)] for a, b in pairs],
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


def rss_kb(pid: int) -> int:
    """Resident memory of one process (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def idle_rss(tmp: Path, settle: float, load_s: float) -> dict:
    """The collector's resident memory with eBPF and a capture on lo: idle `settle` seconds after it
    is ready (probes attached, first collector_stats row stored), then during `load_s` seconds of a
    TLS keep-alive workload (every request decoded into an exchange: the busiest path an agent host
    gives it), then `settle` seconds after. Helper processes (the capture) apart. RSS does not depend
    on how busy the machine is; what the workload makes of it does."""
    store = tmp / "rss-store"
    p = start_collector(store, "--buffer-dir", str(tmp / "rss-buffer"), capture=True)
    try:
        time.sleep(settle)
        kids = subprocess.run(["ps", "-o", "pid=,comm=", "--ppid", str(p.pid)], capture_output=True,
                              text=True).stdout.split()
        children = {f"{kids[i + 1]}[{kids[i]}]": rss_kb(int(kids[i])) for i in range(0, len(kids), 2)}
        res = {"collector_rss_mb": round(rss_kb(p.pid) / 1024, 1),
               "children_rss_mb": {k: round(v / 1024, 1) for k, v in children.items()},
               "settle_s": settle, "loadavg": os.getloadavg()[0]}
        if load_s > 0:
            res.update(loaded_rss(p.pid, tmp, load_s))
            time.sleep(settle)
            res["after_load_rss_mb"] = round(rss_kb(p.pid) / 1024, 1)
    finally:
        stop(p)
    if load_s > 0:
        from collector.store import Store

        with Store.open(str(store), read_only=True) as s:
            res["exchanges_stored"] = s.sql("SELECT count(*) FROM llm_exchanges").fetchone()[0]
    return res


def loaded_rss(pid: int, tmp: Path, seconds: float) -> dict:
    """Sample the collector's RSS every 0.5 s while keep-alive HTTPS clients (2,000 requests each)
    run against one loopback server for `seconds`."""
    from bench.tls_probe_cost import CLIENT, SERVER, self_signed

    cert, key = self_signed(tmp)
    server = subprocess.Popen([sys.executable, "-c", SERVER, cert, key], stdout=subprocess.PIPE, text=True)
    port = server.stdout.readline().strip()
    samples: list[float] = []
    requests = 0
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            client = subprocess.Popen([sys.executable, "-c", CLIENT, port, cert, "2000"], stdout=subprocess.DEVNULL)
            while client.poll() is None:
                samples.append(rss_kb(pid) / 1024)
                time.sleep(0.5)
            requests += 2000 if client.returncode == 0 else 0
    finally:
        server.kill()
        server.wait()
    return {"load_s": seconds, "load_requests": requests, "load_rss_mb_median": round(statistics.median(samples), 1),
            "load_rss_mb_max": round(max(samples), 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--dns-rates", default="50000,60000,80000", help="queries/s for the DNS phase, comma-separated")
    ap.add_argument("--only", choices=["connect", "sustained", "dns", "rss"], help="run one phase")
    ap.add_argument("--rss-settle", type=float, default=20, help="seconds the collector idles before its RSS is read")
    ap.add_argument("--rss-load", type=float, default=30,
                    help="seconds of a TLS keep-alive workload after the idle reading (0: none)")
    ap.add_argument("--ring-mb", type=int, help="the collector's --ring-mb in every phase (default: its own)")
    a = ap.parse_args()
    if a.ring_mb:
        COLLECTOR_ARGS.extend(["--ring-mb", str(a.ring_mb)])
    if os.geteuid() != 0:
        raise SystemExit("bench/live.py needs root (eBPF)")
    with tempfile.TemporaryDirectory(prefix="rw-bench-live-") as d:
        tmp = Path(d)
        res = {}
        if a.only in (None, "rss"):
            res["idle_rss"] = idle_rss(tmp, a.rss_settle, a.rss_load)
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
