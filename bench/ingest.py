"""Ingest throughput vs tshark's field pass, in the same run, on a generated capture.

    .venv/bin/python bench/ingest.py [--packets 500000] [--capture FILE] [--repeat 1]

Peer: `tshark -r F -T fields` extracting the same fields (time, 5-tuple, SNI, DNS name), one row per
packet, output discarded. Ours: the whole `routerwatch ingest` command (flows with TCP state and
history, DNS messages with answers, TLS with JA4, all committed), into a new store (created and
migrated inside the timing) and into an existing one (the usual case). Both are
timed as wall clock and CPU (user+sys of the child processes); the ratio is printed for both,
because on a shared machine wall time moves with other load.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as `python bench/ingest.py`: the repo root, for tests.support
BIN = Path(sys.executable).parent

from tests.support.gen_capture import generate  # noqa: E402

TSHARK_FIELDS = ["frame.time_epoch", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "ip.proto", "tcp.srcport",
                 "tcp.dstport", "udp.srcport", "udp.dstport", "tls.handshake.extensions_server_name", "dns.qry.name"]


def timed(cmd: list[str], **kw) -> tuple[float, float, subprocess.CompletedProcess]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    p = subprocess.run(cmd, **kw)
    wall = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({p.returncode}): {getattr(p, 'stderr', '')}")
    return wall, cpu, p


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=500_000)
    ap.add_argument("--capture", help="use this capture instead of generating one")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each; the best is reported")
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="rw-bench-"))
    try:
        cap = Path(a.capture) if a.capture else work / "bench.pcap"
        if not a.capture:
            t = time.monotonic()
            info = generate(str(cap), a.packets)
            print(f"generated {cap.name}: {info['packets']:,} packets, {info['tcp_flows']:,} TLS connections with "
                  f"distinct SNI, {info['udp_flows']:,} DNS exchanges, {cap.stat().st_size / 1e6:.0f} MB "
                  f"in {time.monotonic() - t:.1f} s")
        packets = None
        best: dict[str, tuple[float, float]] = {}

        def keep(key: str, wall: float, cpu: float) -> None:
            if key not in best or wall < best[key][0]:
                best[key] = (wall, cpu)

        env = dict(os.environ, ROUTERWATCH_HOST_ID="bench")
        for i in range(a.repeat):
            fresh, existing = work / f"fresh{i}", work / f"existing{i}"
            wall, cpu, p = timed([str(BIN / "routerwatch"), "ingest", "--store", str(fresh), str(cap)],
                                 capture_output=True, text=True, env=env)
            print(f"routerwatch ingest: {p.stdout.strip()}")
            keep("fresh", wall, cpu)
            # the usual case: the store already exists (created and migrated, outside the timing)
            subprocess.run([str(BIN / "python"), "-c", f"from collector.store import Store; Store.open({str(existing)!r}).close()"],
                           check=True)
            wall, cpu, p = timed([str(BIN / "routerwatch"), "ingest", "--store", str(existing), str(cap)],
                                 capture_output=True, text=True, env=env)
            keep("existing", wall, cpu)
            tcmd = ["tshark", "-n", "-r", str(cap), "-T", "fields"] + [x for f in TSHARK_FIELDS for x in ("-e", f)]
            with open(os.devnull, "wb") as null:
                wall_t, cpu_t, _ = timed(tcmd, stdout=null, stderr=subprocess.DEVNULL)
            keep("tshark", wall_t, cpu_t)
            shutil.rmtree(fresh, ignore_errors=True)
            shutil.rmtree(existing, ignore_errors=True)
        out = subprocess.run(["capinfos", "-c", "-M", str(cap)], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if "Number of packets" in line:
                packets = int(line.split(":")[1].strip())
        assert packets
        rows = [("routerwatch ingest, new store", best["fresh"]), ("routerwatch ingest, existing store", best["existing"]),
                ("tshark -T fields (time, 5-tuple, SNI, DNS)", best["tshark"])]
        print(f"\n{'method':<44} {'wall s':>8} {'cpu s':>8} {'packets/s (wall)':>18}")
        for label, (w, c) in rows:
            print(f"{label:<44} {w:>8.2f} {c:>8.2f} {packets / w:>18,.0f}")
        tw, tc = best["tshark"]
        for label, key in (("new store", "fresh"), ("existing store", "existing")):
            w, c = best[key]
            print(f"ratio vs tshark, {label:<15} wall {tw / w:.1f}x   cpu {tc / c:.1f}x   (floor 1x, target 5x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
