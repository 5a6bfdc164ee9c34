"""What the Go crypto/tls uprobes cost a Go program: wall time per TLS call, without and with them.

Builds the test Go agent (tests/fixtures/goclient), runs its `-echo N` mode (a TLS client and server
in one process on 127.0.0.1: 64-byte write, read back; four crypto/tls Read/Write calls per round
trip, each an entry uprobe + a RET uprobe) alternately without and with the collector's probes
attached to it, and prints the median ns per round trip of each and the difference per call. With
kernel.bpf_stats_enabled (restored after) it also prints the BPF programs' own ns per run: the rest
of the difference is the uprobe trap itself (int3, single-step, return to user).

    sudo .venv/bin/python bench/go_tls_cost.py [--n 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python bench/X.py`: the repo root

from collector.ebpf.bpfsys import prog_run_stats  # noqa: E402
from collector.ebpf.loader import ProbeOptions, Probes  # noqa: E402
from tests.support.goclient import build_goclient  # noqa: E402

STATS = Path("/proc/sys/kernel/bpf_stats_enabled")
PROGS = ("go_tls_write_enter", "go_tls_read_enter", "go_tls_return")


def _run(binary: Path, n: int) -> int:
    out = subprocess.run([str(binary), "-echo", str(n)], capture_output=True, text=True, check=True).stdout
    return int(json.loads(out)["ns_per_roundtrip"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        binary = build_goclient(Path(d))
        base = [_run(binary, args.n)]
        probes = Probes(ProbeOptions(dns=False, discover_ssl=False, ssl_libraries=[str(binary)]))
        assert probes.go is not None and probes.go.attached, probes.attached
        orig = STATS.read_text().strip()
        STATS.write_text("1")
        probed: list[int] = []
        try:
            for _ in range(args.rounds):
                probed.append(_run(binary, args.n))
                probes.drain()  # keep the ring buffer empty, as the collector would
            runs = {}
            for name in PROGS:
                runs[name] = prog_run_stats(probes.programs[name])
        finally:
            STATS.write_text(orig)
            probes.close()
        for _ in range(args.rounds - 1):
            base.append(_run(binary, args.n))
    b, p = statistics.median(base), statistics.median(probed)
    print(f"round trip (4 crypto/tls calls): {b:.0f} ns without probes, {p:.0f} ns with (medians of "
          f"{len(base)}/{len(probed)} runs of {args.n})")
    print(f"added per Read/Write call (entry + RET uprobe): {(p - b) / 4:.0f} ns")
    for name, (ns, cnt) in runs.items():
        print(f"  BPF {name}: {ns / max(cnt, 1):.0f} ns/run over {cnt} runs")


if __name__ == "__main__":
    main()
