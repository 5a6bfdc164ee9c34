"""What the probes cost a TLS client like an SDK agent: keep-alive HTTPS requests, probes on vs off.

A loopback HTTPS server (Python's ssl, so OpenSSL) answers small JSON POSTs; a client (http.client
over OpenSSL, as the openai SDK's stack ends up) makes --requests of them over one kept-alive
connection. The collector's probes are loaded once in this process, as `routerwatch collect` loads
them (tracepoints, getaddrinfo, the libssl uprobes on the libssl both processes map), and every
probe is detached and attached in turn, alternated --pairs times (order swapped every pair). The
workload (client and server) is pinned to CPU 0; this process drains the ring on the other CPU
while a round runs, as the collector does (a ring left full would make the probes look cheaper:
a failed reserve costs less than a copied record). Reported: requests/s and workload CPU per
request, the attached/detached ratio per pair (median, quartiles, range), and the kernel's BPF time
and runs per request and program from its run-time statistics, taken in --stats-rounds attached rounds
after the pairs (until 2026-12-06 the statistics were on during the pairs, which added two clock
reads to each of the ~30 program runs a request to the attached rounds; the collector never turns
them on).

    sudo .venv/bin/python bench/tls_probe_cost.py [--requests 10000] [--pairs 16] [--client-only] [--no-dns-send]

--client-only runs the server on a Python with its own, statically linked OpenSSL
(.cache/static-ssl-python, built by `deploy/deps.sh --test`; `--server-python` names another), which
the probes loaded here do not cover: only the client pays for them, as on an agent host, where the
TLS server (the router) is another machine.

--profile K splits the cost of one probe hit instead (the per-call profile): K rounds of each of
five variants, order rotated every round: detached; a do-nothing BPF program (two instructions) on
the entries of the exported SSL_read/SSL_write and _ex functions (where the collector probed until
2026-12-06); the same program on the entries the collector probes now (collector/ebpf/ssl_entry.py:
OpenSSL's internal read/write functions where found); on those entries and their returns; the
collector's own programs. The differences in workload CPU per request, divided by the SSL calls per
request, give what one uprobe hit costs the kernel at each place, and what the programs add.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python bench/X.py`: the repo root

from bench.live import BpfStats, cpu_seconds, pinned, run_child, spread  # noqa: E402
from collector.ebpf import bpfsys  # noqa: E402
from collector.ebpf.loader import SSL_FUNCS, ProbeOptions, Probes, uprobe_targets  # noqa: E402
from collector.ebpf.ssl_entry import probe_points  # noqa: E402

SERVER = r"""
import http.server, json, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b'{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"}}]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"""

CLIENT = r"""
import http.client, json, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.check_hostname = False
c = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=ctx, timeout=30)
body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}).encode()
n = int(sys.argv[3])
t0 = time.perf_counter()
for _ in range(n):
    c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"})
    r = c.getresponse()
    r.read()
print(time.perf_counter() - t0)
"""


def self_signed(d: Path) -> tuple[str, str]:
    key, cert = d / "key.pem", d / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True)
    return str(cert), str(key)


class Drainer:
    """Drain the ring continuously while a round runs (the collector's job), counting records."""

    def __init__(self, probes: Probes) -> None:
        self.probes, self.records, self._stop = probes, 0, threading.Event()
        self._t: threading.Thread | None = None

    def __enter__(self) -> Drainer:
        self._stop.clear()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.records += sum(len(v) for v in self.probes.drain().values())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.records += sum(len(v) for v in self.probes.drain().values())


def noop_program() -> int:
    """A kprobe-type BPF program that does nothing (r0 = 0; exit): a probe hit's cost without any
    work in BPF."""
    insns = bytes.fromhex("b700000000000000" "9500000000000000")
    lic = ctypes.create_string_buffer(b"GPL")
    code = ctypes.create_string_buffer(insns)
    # bpf_attr for BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, log_level, log_size, log_buf, kern_version
    attr = ctypes.create_string_buffer(struct.pack("<IIQQIIQI", 2, len(insns) // 8, ctypes.addressof(code),
                                                   ctypes.addressof(lic), 0, 0, 0, 0) + bytes(64))
    return bpfsys.bpf(5, attr, "load of a no-op kprobe program")  # BPF_PROG_LOAD


def attach_noop(prog: int, libs: list[str], where: str, returns: bool = False) -> list[int]:
    """The no-op program on the entries (and returns) of the SSL functions: `where` is "exported"
    (SSL_read/SSL_write and their _ex forms) or "collector" (the points the collector probes)."""
    fds = []
    for lib in libs:
        offs = uprobe_targets(lib, [sym for sym, _fn in SSL_FUNCS])
        points = list(offs.values()) if where == "exported" else [p.offset for p in probe_points(lib, offs)]
        for off in points:
            fds.append(bpfsys.attach_uprobe(lib, off, prog))
            if returns:
                fds.append(bpfsys.attach_uprobe(lib, off, prog, retprobe=True))
    return fds


VARIANTS = ("detached", "noop exported entries", "noop collector entries", "noop collector entries+returns",
            "collector")


def profile(probes: Probes, libs: list[str], tracepoints: list[tuple[str, str]], client: list[str], work,
            server_pid: int, rounds: int, requests: int) -> dict:
    """The per-call profile (see the module docstring): workload CPU per request for each variant,
    and the cost per hit derived from their differences."""
    prog = noop_program()
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    calls = 0.0
    try:
        for r in range(rounds):
            k = r % len(VARIANTS)
            for variant in VARIANTS[k:] + VARIANTS[:k]:
                set_attached(probes, libs, tracepoints, variant == "collector")
                fds = [] if not variant.startswith("noop") else attach_noop(
                    prog, libs, "exported" if "exported" in variant else "collector", returns=variant.endswith("returns"))
                srv0 = cpu_seconds(server_pid)
                before = probes.program_stats()["ssl_return_probe"][1]  # runs: every call, data or not
                with Drainer(probes):
                    _out, c = run_child(client, work)
                cpu[variant].append((c + cpu_seconds(server_pid) - srv0) / requests * 1e6)
                if variant == "collector":
                    calls += (probes.program_stats()["ssl_return_probe"][1] - before) / requests
                for fd in fds:
                    bpfsys.detach(fd)
                print(f"round {r + 1}/{rounds} {variant}: {cpu[variant][-1]:.1f} us/request", file=sys.stderr, flush=True)
    finally:
        os.close(prog)
        set_attached(probes, libs, tracepoints, False)
    med = {v: statistics.median(xs) for v, xs in cpu.items()}
    per_req = calls / rounds  # SSL calls per request (client and/or server)
    return {
        "workload_cpu_us_per_request": {v: spread(xs, 1) for v, xs in cpu.items()},
        "ssl_calls_per_request": round(per_req, 2),
        "us_per_hit_exported_entry": round((med["noop exported entries"] - med["detached"]) / per_req, 2),
        "us_per_hit_collector_entry": round((med["noop collector entries"] - med["detached"]) / per_req, 2),
        "us_per_hit_collector_return": round(
            (med["noop collector entries+returns"] - med["noop collector entries"]) / per_req, 2),
        "us_programs_add_per_call": round((med["collector"] - med["noop collector entries+returns"]) / per_req, 2),
        "us_collector_per_call": round((med["collector"] - med["detached"]) / per_req, 2),
    }


def set_attached(probes: Probes, libs: list[str], tracepoints: list[tuple[str, str]], on: bool) -> None:
    """All probes on or off: the tracepoints by their links, the uprobes by closing or re-making
    their perf events (bench-only use of the loader's internals). Idempotent like the tracepoints'
    attach: until 2026-12-06 (14:40) an attached round that followed an attached round made the
    uprobes a second time, so every other pair and the second stats round ran each SSL program twice
    a call (the collector attaches once)."""
    for key in tracepoints:
        (probes.attach if on else probes.detach)(key)
    if on:
        if not probes._uprobes:
            for lib in libs:
                probes._attach_ssl(lib)
    else:
        while probes._uprobes:
            bpfsys.detach(probes._uprobes.pop())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10_000, help="requests per round (one kept-alive connection)")
    ap.add_argument("--pairs", type=int, default=16, help="detached/attached pairs, alternated")
    ap.add_argument("--stats-rounds", type=int, default=2,
                    help="attached rounds after the pairs with BPF run-time accounting on (the BPF figures); "
                         "the pairs themselves run without it, as the collector does")
    ap.add_argument("--profile", type=int, default=0, metavar="K",
                    help="instead of pairs: K rounds of four variants, the cost per probe hit (module docstring)")
    ap.add_argument("--client-only", action="store_true",
                    help="server on a Python with its own OpenSSL, unprobed: only the client's SSL calls are probed")
    ap.add_argument("--server-python", default=str(Path(__file__).resolve().parents[1] / ".cache" / "static-ssl-python"
                                                   / "bin" / "python3.11"),
                    help="the server's Python with --client-only (default: .cache/static-ssl-python)")
    ap.add_argument("--no-dns-send", action="store_true",
                    help="load the program as `collect --no-dns-send` does (no syscall tracepoints compiled in)")
    opts = ap.parse_args()
    server_python = opts.server_python if opts.client_only else sys.executable
    if opts.client_only and not os.path.exists(server_python):
        raise SystemExit(f"{server_python} is missing: `bash deploy/deps.sh --test` builds it, or pass --server-python")
    if os.geteuid() != 0:
        raise SystemExit("needs root (eBPF)")
    two = len(os.sched_getaffinity(0)) >= 2
    work, mine = ({0}, {1}) if two else (None, None)
    if mine:
        os.sched_setaffinity(0, mine)
    with tempfile.TemporaryDirectory() as d:
        cert, key = self_signed(Path(d))
        server = subprocess.Popen([server_python, "-c", SERVER, cert, key], stdout=subprocess.PIPE, text=True,
                                  preexec_fn=pinned(work))
        probes: Probes | None = None
        try:  # the server is ended whatever happens, a failed probe load included
            port = server.stdout.readline().strip()
            probes = Probes(ProbeOptions(discover_ssl=False, go_tls=False, dns_send=not opts.no_dns_send))
            libs = [a.split("@", 1)[1] for a in probes.attached if a.startswith("ssl(")]
            if not libs:
                raise SystemExit(f"no libssl uprobes attached: {probes.attached}")
            tracepoints = list(probes.links)
            client = [sys.executable, "-c", CLIENT, port, cert, str(opts.requests)]
            run_child(client[:-1] + ["200"], work)  # warm-up: handshake, imports, page cache
            if opts.profile:
                with BpfStats():
                    out = profile(probes, libs, tracepoints, client, work, server.pid, opts.profile, opts.requests)
                print(json.dumps({"requests_per_round": opts.requests, "rounds": opts.profile,
                                  "dns_send_probes": not opts.no_dns_send,
                                  "probed": "client only" if opts.client_only else "client and server",
                                  **out, "loadavg": os.getloadavg()[0]}, indent=1))
                return
            rates: dict[bool, list[float]] = {False: [], True: []}
            cpu: dict[bool, list[float]] = {False: [], True: []}
            ratios: list[float] = []
            records = 0
            by_program: dict[str, int] = {}  # BPF run time while attached, per program
            runs: dict[str, int] = {}  # and its runs (probe hits)

            def one(on: bool, stats: bool = False) -> float:
                nonlocal records
                set_attached(probes, libs, tracepoints, on)
                before = probes.program_stats()
                srv0 = cpu_seconds(server.pid)
                with Drainer(probes) as dr:
                    out, c = run_child(client, work)
                if not stats:
                    cpu[on].append((c + cpu_seconds(server.pid) - srv0) / opts.requests * 1e6)
                else:
                    records += dr.records
                    for name, (ns, n) in probes.program_stats().items():
                        by_program[name] = by_program.get(name, 0) + ns - before.get(name, (0, 0))[0]
                        runs[name] = runs.get(name, 0) + n - before.get(name, (0, 0))[1]
                rate = opts.requests / float(out)
                if not stats:
                    rates[on].append(rate)
                return rate

            # the pairs run as the collector does, without the kernel's BPF run-time accounting (it
            # adds two clock reads per program run: ~30 runs a request); the BPF figures come from
            # --stats-rounds attached rounds after them, with the accounting on
            for i in range(opts.pairs):
                if i % 2 == 0:
                    off, on = one(False), one(True)
                else:
                    on = one(True)
                    off = one(False)
                ratios.append(on / off)
                print(f"pair {i + 1}/{opts.pairs}: {off:.0f} -> {on:.0f} requests/s ({on / off:.3f})",
                      file=sys.stderr, flush=True)
            with BpfStats():
                for _ in range(opts.stats_rounds):
                    one(True, stats=True)
            lost = probes.counters()
        finally:
            if probes is not None:
                probes.close()
            server.kill()
            server.wait()
    n_on = opts.requests * max(opts.stats_rounds, 1)
    print(json.dumps({
        "requests_per_round": opts.requests, "pairs": opts.pairs, "uprobes_on": libs,
        "dns_send_probes": not opts.no_dns_send,
        "probed": "client only" if opts.client_only else "client and server",
        "requests_per_s_detached": spread(rates[False], 0), "requests_per_s_attached": spread(rates[True], 0),
        "ratio_attached_over_detached": spread(ratios),
        "slowdown_median_pct": round((1 - spread(ratios)["median"]) * 100, 2),
        "workload_cpu_us_per_request_detached": spread(cpu[False], 1),
        "workload_cpu_us_per_request_attached": spread(cpu[True], 1),
        "bpf_ns_per_request": round(sum(by_program.values()) / n_on),
        "bpf_ns_per_request_by_program": {k: round(v / n_on) for k, v in sorted(by_program.items(), key=lambda kv: -kv[1])
                                          if v >= n_on},
        "bpf_runs_per_request_by_program": {k: round(runs[k] / n_on, 2) for k, v in by_program.items() if v >= n_on},
        "ring_records_per_request": round(records / n_on, 2),
        "kernel_counters": lost, "loadavg": os.getloadavg()[0],
    }, indent=1))


if __name__ == "__main__":
    main()
