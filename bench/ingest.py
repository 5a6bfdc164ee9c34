"""Ingest vs tshark, Suricata and nfstream, in the same run, alternated, on a generated capture.

    .venv/bin/python bench/ingest.py [--packets 500000] [--capture FILE] [--repeat 1]
                                     [--peers tshark,suricata,nfstream]

The peers are installed for the bench only (the product needs none of them):
`sudo bash bench/install_peers.sh` unpacks Suricata 7 from Debian's bookworm-backports into
bench/.peers/suricata (private apt lists; backports is not enabled system-wide) and pip-installs
nfstream into .venv (ROUTERWATCH_BENCH_SURICATA_DIR names another unpacked Suricata). A peer that is
missing is reported in one line with the command that installs it, and the bench goes on with the
others.

Ours: the whole `routerwatch ingest` command (flows with TCP state and history, DNS messages with
answers, TLS with JA4, all committed), into a new store (created and migrated inside the timing) and
into an existing one (the usual case). Peers, each on the same file:
- tshark: `tshark -r F -T fields` with time, 5-tuple, SNI, DNS name, one row per packet, discarded.
- Suricata: no rules, EVE flow/tls/dns, stream and reassembly memcaps raised (its default 256 MB
  reassembly memcap silently left 8.6% of the flows of the 500k-packet capture without app-layer
  data), `--runmode autofp -k none`, TLS events extended (with the SNI and version, as routerwatch's
  tls rows have them); its YAML is written into a temp dir. Its flow and TLS event counts, and its
  TLS events with an SNI, are checked against routerwatch's store (flows, tls) for the same capture.
- nfstream: NFStreamer with its default nDPI dissection (SNI, DNS name), flows iterated in Python;
  its flow count and flows with a server name are printed.

Every tool is timed as wall clock, CPU (user+sys of the child and its descendants, from wait4) and
peak RSS (ru_maxrss of the child: the largest single process of its tree, not a sum, which matters
for nfstream's meter processes). Each tool is also run once on a tiny capture (a few flows of the
same generator); "own peak" is the peak on the capture minus the peak on the tiny one, i.e. what the
tool needs for the data beyond its interpreter, imports, store setup and startup. Rounds alternate
the tools' order (forward, then reversed) so that drift in the machine's load falls on all of them.
The best wall time of each is reported; ratios are peer time / ingest time (above 1: ingest faster).
On a shared machine wall time moves with other load: prefer the CPU ratios there.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as `python bench/ingest.py`: the repo root, for tests.support
BIN = Path(sys.executable).parent

from tests.support.gen_capture import generate  # noqa: E402

TSHARK_FIELDS = ["frame.time_epoch", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "ip.proto", "tcp.srcport",
                 "tcp.dstport", "udp.srcport", "udp.dstport", "tls.handshake.extensions_server_name", "dns.qry.name"]
PEERS = ("tshark", "suricata", "nfstream")
SURICATA_DIR = Path(os.environ.get("ROUTERWATCH_BENCH_SURICATA_DIR") or HERE / ".peers" / "suricata")  # where install_peers.sh unpacks it
INSTALL = "sudo bash bench/install_peers.sh"
TINY_PACKETS = 120  # a few flows: startup, imports and store setup, almost no data

# Suricata: no rules, EVE flow/tls/dns only, memcaps raised so that no flow loses its app-layer data.
# TLS extended: the basic TLS record is an empty object (subject, issuer and resumption only, none of
# which a ClientHello carries); extended adds the SNI and version. Its time did not move (500k capture,
# 6 alternated runs each: median 1.252 s basic, 1.26 s extended): the hello is parsed either way
SURICATA_YAML = """%YAML 1.1
---
default-log-dir: {log}
classification-file: /dev/null
reference-config-file: /dev/null
stats:
  enabled: no
outputs:
  - eve-log:
      enabled: yes
      filetype: regular
      filename: eve.json
      types:
        - flow
        - tls:
            extended: yes
        - dns
logging:
  default-log-level: notice
  outputs:
    - console:
        enabled: yes
app-layer:
  protocols:
    tls:
      enabled: yes
      detection-ports:
        dp: 443
    dns:
      tcp:
        enabled: yes
      udp:
        enabled: yes
flow:
  memcap: 2gb
stream:
  memcap: 2gb
  checksum-validation: no
  reassembly:
    memcap: 4gb
    depth: 1mb
"""

# nfstream in a child of its own (timed like the others): nDPI dissection on (its default)
NFSTREAM_SCRIPT = """
import sys
from nfstream import NFStreamer
n = named = 0
for f in NFStreamer(source=sys.argv[1], statistical_analysis=False):
    n += 1
    named += bool(f.requested_server_name)
print(n, named)
"""


@dataclass
class Run:
    wall: float
    cpu: float
    rss: int  # bytes, ru_maxrss of the child
    stdout: str


def run_child(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> Run:
    """Run cmd with stdout to a file and stderr kept; wait4 gives this child's own CPU and peak RSS."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.monotonic()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if p.returncode != 0:
            raise SystemExit(f"{Path(cmd[0]).name} failed ({p.returncode}): {err.read()[-2000:].strip()}")
        return Run(wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024, out.read())


@dataclass
class Tool:
    key: str
    label: str
    missing: Callable[[], str | None]  # None when it can run, else one line saying how to install it
    run: Callable[[Path, Path], Run]  # (capture, scratch dir) -> Run
    counts: Callable[[Run, Path], dict] = lambda run, scratch: {}
    best: Run | None = None
    tiny: Run | None = None
    seen: dict = field(default_factory=dict)


def suricata_bin() -> tuple[Path, dict] | None:
    exe = SURICATA_DIR / "usr" / "bin" / "suricata"
    if exe.exists():
        return exe, dict(os.environ, LD_LIBRARY_PATH=str(SURICATA_DIR / "usr" / "lib" / "x86_64-linux-gnu"))
    found = shutil.which("suricata")
    return (Path(found), dict(os.environ)) if found else None


def suricata_missing() -> str | None:
    found = suricata_bin()
    if not found:
        return f"suricata: not installed; install it for the bench with `{INSTALL} suricata`"
    exe, env = found
    v = subprocess.run([str(exe), "-V"], capture_output=True, text=True, env=env)
    if v.returncode != 0 or "version 7." not in v.stdout:
        return f"suricata: {exe} does not run as Suricata 7 ({(v.stdout + v.stderr).strip()[:200]}); `{INSTALL} suricata`"
    return None


def run_suricata(cap: Path, scratch: Path) -> Run:
    exe, env = suricata_bin()  # type: ignore[misc]
    log = scratch / "suricata"
    shutil.rmtree(log, ignore_errors=True)
    log.mkdir(parents=True)
    (log / "suricata.yaml").write_text(SURICATA_YAML.format(log=log))
    return run_child([str(exe), "-c", str(log / "suricata.yaml"), "-S", "/dev/null", "-l", str(log), "-r", str(cap),
                      "--runmode", "autofp", "-k", "none"], env=env)


def suricata_counts(_: Run, scratch: Path) -> dict:
    """Flow events, TLS events and TLS events that name a server (SNI), from its eve.json."""
    flows = tls = tls_sni = 0
    with open(scratch / "suricata" / "eve.json", "rb") as f:
        for line in f:
            event = json.loads(line)
            kind = event.get("event_type")
            flows += kind == "flow"
            if kind == "tls":
                tls += 1
                tls_sni += bool((event.get("tls") or {}).get("sni"))
    return {"flows": flows, "tls": tls, "tls_sni": tls_sni}


def nfstream_missing() -> str | None:
    ok = subprocess.run([str(BIN / "python"), "-c", "import nfstream"], capture_output=True).returncode == 0
    return None if ok else f"nfstream: not installed in .venv; install it for the bench with `{INSTALL} nfstream`"


def nfstream_counts(run: Run, _: Path) -> dict:
    flows, named = run.stdout.split()
    return {"flows": int(flows), "with SNI/DNS name": int(named)}


def tshark_missing() -> str | None:
    return None if shutil.which("tshark") else "tshark: not installed; `apt-get install tshark`"


def run_tshark(cap: Path, _: Path) -> Run:
    return run_child(["tshark", "-n", "-r", str(cap), "-T", "fields"] + [x for f in TSHARK_FIELDS for x in ("-e", f)])


def store_counts(store: Path, env: dict) -> dict:
    """Flows, TLS handshakes and those with an SNI in routerwatch's store, read back with `routerwatch sql`."""
    q = ("SELECT (SELECT count(*) FROM flows) AS flows, (SELECT count(*) FROM tls) AS tls, "
         "(SELECT count(sni) FROM tls) AS tls_sni")
    out = subprocess.run([str(BIN / "routerwatch"), "sql", "--store", str(store), "--format", "csv", q],
                         capture_output=True, text=True, env=env, check=True).stdout
    row = next(csv.DictReader(io.StringIO(out)))
    return {"flows": int(row["flows"]), "tls": int(row["tls"]), "tls_sni": int(row["tls_sni"])}


def compile_bytecode(env: dict) -> None:
    """Compile the routerwatch packages the runs import (as `env` resolves them), as an install does:
    with PYTHONDONTWRITEBYTECODE set and no bytecode on disk, every run would compile its modules
    again (0.02-0.19 s, median 0.04 s, of an ingest of the 500k capture), which an install does not
    (deploy/deps.sh compiles it)."""
    subprocess.run([str(BIN / "python"), "-c", "import compileall, os, collector, analyzer\n"
                    "for m in (collector, analyzer): compileall.compile_dir(os.path.dirname(m.__file__), quiet=1)"],
                   check=True, env=env)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog=f"Peers are installed with `{INSTALL}` (Suricata 7 into bench/.peers, "
                                        "nfstream into .venv).")
    ap.add_argument("--packets", type=int, default=500_000)
    ap.add_argument("--capture", help="use this capture instead of generating one")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of all tools, order alternating; the best is reported")
    ap.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, of {', '.join(PEERS)} (default: all)")
    a = ap.parse_args(argv)
    wanted = [p.strip() for p in a.peers.split(",") if p.strip()]
    if bad := [p for p in wanted if p not in PEERS]:
        ap.error(f"unknown peer(s) {', '.join(bad)}: choose from {', '.join(PEERS)}")
    if a.capture and not Path(a.capture).is_file():
        ap.error(f"no capture at {a.capture}")

    env = dict(os.environ, ROUTERWATCH_HOST_ID="bench")
    compile_bytecode(env)
    work = Path(tempfile.mkdtemp(prefix="rw-bench-"))

    def ingest(existing: bool) -> Callable[[Path, Path], Run]:
        def run(cap: Path, scratch: Path) -> Run:
            store = scratch / "store"
            shutil.rmtree(store, ignore_errors=True)
            if existing:  # the usual case: the store already exists (created and migrated, outside the timing)
                subprocess.run([str(BIN / "python"), "-c",
                                f"from collector.store import Store; Store.open({str(store)!r}).close()"],
                               check=True, env=env)
            return run_child([str(BIN / "routerwatch"), "ingest", "--store", str(store), str(cap)], env=env)
        return run

    fresh = Tool("fresh", "routerwatch ingest, new store", lambda: None, ingest(False),
                 lambda run, scratch: store_counts(scratch / "store", env))
    existing = Tool("existing", "routerwatch ingest, existing store", lambda: None, ingest(True))
    catalog = {
        "tshark": Tool("tshark", "tshark -T fields (time, 5-tuple, SNI, DNS)", tshark_missing, run_tshark),
        "suricata": Tool("suricata", "Suricata 7, EVE flow/tls/dns, no rules", suricata_missing, run_suricata,
                         suricata_counts),
        "nfstream": Tool("nfstream", "nfstream, nDPI SNI/DNS dissection", nfstream_missing,
                         lambda cap, _: run_child([str(BIN / "python"), "-c", NFSTREAM_SCRIPT, str(cap)]),
                         nfstream_counts),
    }
    peers = []
    for name in wanted:
        why = catalog[name].missing()
        if why:
            print(f"skipped {why}")
        else:
            peers.append(catalog[name])
    tools = [fresh, existing] + peers
    try:
        cap = Path(a.capture) if a.capture else work / "bench.pcap"
        if not a.capture:
            t = time.monotonic()
            info = generate(str(cap), a.packets)
            print(f"generated {cap.name}: {info['packets']:,} packets, {info['tcp_flows']:,} TLS connections with "
                  f"distinct SNI, {info['udp_flows']:,} DNS exchanges, {cap.stat().st_size / 1e6:.0f} MB "
                  f"in {time.monotonic() - t:.1f} s")
        tiny = work / "tiny.pcap"
        generate(str(tiny), TINY_PACKETS)
        for tool in tools:  # startup baseline, once each
            scratch = work / f"tiny-{tool.key}"
            scratch.mkdir()
            tool.tiny = tool.run(tiny, scratch)
            shutil.rmtree(scratch, ignore_errors=True)
        for i in range(a.repeat):
            order = tools if i % 2 == 0 else tools[::-1]
            for tool in order:
                scratch = work / f"{tool.key}-{i}"
                scratch.mkdir()
                run = tool.run(cap, scratch)
                if tool.key == "fresh":
                    print(f"routerwatch ingest: {run.stdout.strip()}")
                if i == 0:
                    tool.seen = tool.counts(run, scratch)
                if tool.best is None or run.wall < tool.best.wall:
                    tool.best = run
                shutil.rmtree(scratch, ignore_errors=True)
        out = subprocess.run(["capinfos", "-c", "-M", str(cap)], capture_output=True, text=True).stdout
        packets = next(int(line.split(":")[1]) for line in out.splitlines() if "Number of packets" in line)
        report(tools, peers, fresh, packets)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(tools: list[Tool], peers: list[Tool], fresh: Tool, packets: int) -> None:
    mb = 1e6
    print(f"\n{'method':<44} {'wall s':>7} {'cpu s':>7} {'packets/s':>11} {'peak RSS MB':>12} {'tiny-cap MB':>12}"
          f" {'own peak MB':>12}")
    for t in tools:
        b, z = t.best, t.tiny
        print(f"{t.label:<44} {b.wall:>7.2f} {b.cpu:>7.2f} {packets / b.wall:>11,.0f} {b.rss / mb:>12.0f} "
              f"{z.rss / mb:>12.0f} {(b.rss - z.rss) / mb:>12.0f}")
    print(f"(own peak = peak RSS on this capture - peak RSS on a {TINY_PACKETS}-packet capture of the same generator)")
    ours = fresh.seen
    print(f"\nrouterwatch store: {ours['flows']:,} flows, {ours['tls']:,} TLS handshakes, {ours['tls_sni']:,} with SNI")
    for p in peers:
        if p.seen:
            shown = ", ".join(f"{v:,} {k}" for k, v in p.seen.items())
            verdict = ""
            if p.key == "suricata":
                same = all(p.seen[k] == ours[k] for k in ("flows", "tls", "tls_sni"))
                verdict = "  (same as routerwatch)" if same else "  MISMATCH with routerwatch's store"
            print(f"{p.key}: {shown}{verdict}")
    targets = {"tshark": "floor 1x, target 5x", "suricata": "target 1x", "nfstream": ""}
    ours_own = fresh.best.rss - fresh.tiny.rss
    for p in peers:
        for label, t in (("new store", fresh), ("existing store", next(x for x in tools if x.key == "existing"))):
            note = f"   ({targets[p.key]})" if targets[p.key] else ""
            print(f"ratio vs {p.key + ',':<9} {label:<15} wall {p.best.wall / t.best.wall:.2f}x   "
                  f"cpu {p.best.cpu / t.best.cpu:.2f}x{note}")
        own = p.best.rss - p.tiny.rss
        ratio = f"{ours_own / own:.2f}x" if own >= mb else "n/a (the peer's own peak is under 1 MB here)"
        print(f"own peak RSS, ingest (new store) / {p.key}: {ours_own / mb:.0f} / {own / mb:.0f} MB = {ratio}"
              f"   (whole peak {fresh.best.rss / mb:.0f} / {p.best.rss / mb:.0f} MB)")


if __name__ == "__main__":
    sys.exit(main())
