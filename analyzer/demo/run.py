"""`routerwatch demo`: a loopback router zoo, a scripted agent on the real SDKs, capture, ingest,
analyze, dashboard. A newcomer sees real findings from real (local) traffic in one command.

Everything stays on loopback: the routers listen on 127.0.0.1, their payload hosts on 127.0.0.2, and
the agent "executes" tool calls through `safe_exec` (parse only, loopback fetches only, never a shell).
Capture is tcpdump on `lo` with the agents' TLS key log, then `ingest` (the offline path every user
has; the live collector can watch the same traffic when it runs).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# mode -> how the scripted agent talks to that router (api, streamed, tasks)
PLAN: dict[str, dict[str, Any]] = {
    "honest": {"api": "openai", "stream": False, "calls": 3},
    "inject": {"api": "anthropic", "stream": True, "calls": 1},
    "typosquat": {"api": "openai", "stream": True, "calls": 2},
    "conditional": {"api": "openai", "stream": False, "calls": 4},
    "secret-keeping": {"api": "anthropic", "stream": False, "calls": 1},
    "model-swap": {"api": "responses", "stream": False, "calls": 1},
    "stream-anomaly": {"api": "anthropic", "stream": True, "calls": 1},
}
# The demo's story for the fingerprint-mismatch rule: this router answers on a name the catalog says is
# OpenAI's (what a poisoned DNS entry or hosts file does), with LiteLLM headers.
IMPERSONATED_PROVIDER = "conditional"
INJECT_AFTER = 2
DEMO_OPENAI_KEY_ENV = "ROUTERWATCH_DEMO_API_KEY"


@dataclass
class DemoResult:
    store: Path
    workdir: Path
    routers: dict[str, dict[str, Any]]  # mode -> {url, port, host, payload_url, name}
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)  # mode -> agent summary
    findings: list[dict] = field(default_factory=list)
    capture: Path | None = None
    keylog: Path | None = None
    canary_id: str | None = None
    notes: list[str] = field(default_factory=list)


def demo_catalog(routers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The catalog the demo writes beside its store: the zoo's routers are declared (so the honest one
    is a known router, not a stranger), one of them stands in for an OpenAI endpoint, and loopback is
    not blanket-allowlisted (the payload hosts live there)."""
    declared = [{"name": f"zoo-{m}", "hosts": [f"{r['host']}:{r['port']}"]}
                for m, r in routers.items() if m != IMPERSONATED_PROVIDER]
    cat: dict[str, Any] = {"declared_routers": declared, "allowlist": {"allow_loopback": False}}
    if IMPERSONATED_PROVIDER in routers:
        r = routers[IMPERSONATED_PROVIDER]
        cat["providers"] = [{"name": "openai-demo-endpoint", "provider": "openai", "hosts": [f"{r['host']}:{r['port']}"]}]
    return cat


def _fake_openai_key() -> str:
    import secrets
    import string

    alpha = string.ascii_letters + string.digits
    return "sk-proj-" + "".join(secrets.choice(alpha) for _ in range(40)) + "T3BlbkFJ" + "".join(
        secrets.choice(alpha) for _ in range(40))


def _start_live(store: Path, workdir: Path, keylog: Path, ports: list[int]) -> subprocess.Popen:
    """`routerwatch collect` on loopback (root): eBPF flows/processes with pids, libssl plaintext, a
    capture ring decrypted with the agents' key log. Returns once it reports its mode."""
    exe = shutil.which("routerwatch") or str(Path(sys.executable).parent / "routerwatch")
    filt = " or ".join(f"tcp port {p}" for p in sorted(set(ports)))
    proc = subprocess.Popen(
        [exe, "collect", "--store", str(store), "--iface", "lo", "--capture-filter", filt, "--keylog", str(keylog),
         "--capture-dir", str(workdir / "capture"), "--interval", "2", "--max-delay", "1",
         "--host-id", "demo-agent-host"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line.strip())
        if "mode=" in line:
            import threading

            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # keep draining
            return proc
    proc.kill()
    proc.wait()
    raise RuntimeError("the live collector did not start: " + " | ".join(lines[-3:]))


def _stop_live(proc: subprocess.Popen, settle: float = 6.0) -> None:
    time.sleep(settle)  # let the collector decrypt and flush the last connections
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def live_available() -> bool:
    """Root and bcc importable: the live collector can run."""
    if os.geteuid() != 0:
        return False
    try:
        import bcc  # noqa: F401
    except Exception:  # bcc missing or broken: capture-only
        return False
    return True


def run_agent(mode: str, router: dict[str, Any], ca: Path, keylog: Path, env_extra: dict[str, str]) -> dict[str, Any]:
    """Run the scripted SDK agent against one router as its own process (key log on)."""
    from analyzer.demo.agent import parse_output, spawn

    plan = PLAN.get(mode, {"api": "openai", "stream": False, "calls": 1})
    proc = spawn(router["url"], plan["api"], ca=ca, keylog=keylog, env=env_extra, stream=plan["stream"],
                 calls=plan["calls"])
    try:
        out, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    try:
        turns, summary = parse_output(out)
    except ValueError:
        turns, summary = [], {}
    return {"returncode": proc.returncode, "summary": summary, "turns": turns, "stderr": err[-2000:]}


def run_demo(store: Path, workdir: Path, *, modes: tuple[str, ...] | None = None, log=print,
             capture: str = "tcpdump") -> DemoResult:
    """Zoo -> agents under capture -> ingest -> analyze. Returns what happened (the store keeps it).
    `capture`: 'tcpdump' (capture, then ingest with the key log) or 'live' (the live collector)."""
    from analyzer.demo.zoo import MODES, start_zoo, stop_zoo
    from analyzer.engine import analyze
    from analyzer.rules import load_rules
    from collector.catalog import load_catalog
    from collector.store import Store

    modes = tuple(modes or MODES)
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    certdir = workdir / "pki"
    pcap, keylog = workdir / "demo.pcap", workdir / "agents.keylog"
    keylog.unlink(missing_ok=True)
    log(f"starting the router zoo ({', '.join(modes)}) on loopback ...")
    zoo = start_zoo(modes, certdir=certdir, inject_after=INJECT_AFTER)
    try:
        routers = {
            m: {"url": h.url, "port": h.port, "host": h.host, "payload_url": h.payload_url,
                "name": "openai-demo-endpoint" if m == IMPERSONATED_PROVIDER else f"zoo-{m}", "ca": str(h.ca_path)}
            for m, h in zoo.items()
        }
        res = DemoResult(store, workdir, routers, capture=pcap, keylog=keylog)
        canary = _register_demo(store, routers)
        res.canary_id = canary.canary_id
        live, have_capture = _run_agents(res, zoo, modes, canary.text, capture, log)
    finally:
        stop_zoo(zoo)
    _load_rows(res, live, have_capture, log)
    log("analyzing ...")
    with Store.open(str(store)) as st:
        run = analyze(st, load_catalog(st.location.root), load_rules())
    res.findings = run.findings
    keylog.unlink(missing_ok=True)  # as sensitive as a private key
    return res


def _register_demo(store: Path, routers: dict[str, dict[str, Any]]):
    """The demo's catalog (its routers) beside the store, and an AWS canary registered in it."""
    from analyzer.canary import create
    from analyzer.engine import insert
    from collector.secrets import Fingerprinter
    from collector.store import Store

    with Store.open(str(store)) as st:
        (st.location.root / "catalog.yaml").write_text(json.dumps(demo_catalog(routers), indent=1))
        canary, rows = create("aws", Fingerprinter(st.secret_key()), "routerwatch demo", None)
        st.write(lambda con: insert(con, "canaries", rows), what="registering the canary")
    return canary


def _run_agents(res: DemoResult, zoo: dict, modes: tuple[str, ...], canary_text: str, capture: str,
                log) -> tuple[subprocess.Popen | None, bool]:
    """One scripted agent per zoo mode, under tcpdump and (capture 'live') the live collector, stopped
    when the agents are done. Returns (the live collector that ran, or None; whether tcpdump ran)."""
    from analyzer.demo.capture import capture_loopback, capture_tool

    routers, keylog = res.routers, res.keylog
    ports = [r["port"] for r in routers.values()]
    ports += [int(r["payload_url"].rsplit(":", 1)[1]) for r in routers.values() if r["payload_url"]]
    live = None
    with ExitStack() as stack:
        if capture == "live":
            from analyzer.demo.agent import new_keylog

            new_keylog(keylog)
            log("starting the live collector (eBPF + capture ring, decrypting with the agents' key log) ...")
            try:
                live = _start_live(res.store, res.workdir, keylog, ports)
                stack.callback(_stop_live, live)
            except RuntimeError as exc:
                log(f"  {exc}; falling back to tcpdump + ingest")
        # tcpdump runs in live mode too, as a safety net: if the live collector decodes no exchange,
        # the capture is ingested instead
        have_capture = capture_tool() is not None
        if have_capture:
            stack.enter_context(capture_loopback(res.capture, ports, settle=0.5))
        elif live is None:
            raise RuntimeError("tcpdump is not installed (apt-get install tcpdump): the demo needs a capture")
        for m in modes:
            extra: dict[str, str] = {}
            if m == "secret-keeping":
                # a real-format OpenAI key and the canary: both must never reach a router
                extra[DEMO_OPENAI_KEY_ENV] = _fake_openai_key()
                extra["ROUTERWATCH_DEMO_PROMPT_SECRET"] = canary_text
            log(f"  agent ({PLAN.get(m, {}).get('api', 'openai')}) -> {m} router at {routers[m]['url']}")
            res.agents[m] = run_agent(m, routers[m], zoo[m].ca_path, keylog, extra)
        if live is not None:
            log("stopping the live collector ...")
    return live, have_capture


def _load_rows(res: DemoResult, live: subprocess.Popen | None, have_capture: bool, log) -> None:
    """The rows the live collector stored, or else the tcpdump capture ingested with the key log."""
    from collector.ingest import ingest
    from collector.store import Store

    if live is not None:
        with Store.open(str(res.store), read_only=True) as st:
            decoded = st.con.execute("SELECT count(*) FROM llm_exchanges").fetchone()[0]
        res.notes.append(f"live collector decoded {decoded} exchange(s)")
        if decoded == 0 and have_capture:
            log("  the live collector decoded no exchange; using the tcpdump capture instead")
            res.notes.append("fell back to the tcpdump capture")
            live = None
    if live is None:
        log(f"ingesting the capture ({res.capture.stat().st_size:,} bytes) with the agents' key log ...")
        ing = ingest(str(res.capture), store=str(res.store), keylog=str(res.keylog), host_id="demo-agent-host")
        for w in getattr(ing, "warnings", []) or []:
            res.notes.append(str(w))


def print_summary(res: DemoResult, out=sys.stdout) -> None:
    by_router: dict[str, list[dict]] = {}
    for f in res.findings:
        by_router.setdefault(f.get("router") or "(host)", []).append(f)
    print(f"\n{len(res.findings)} findings in {res.store}:", file=out)
    for mode, r in res.routers.items():
        fs = by_router.pop(r["name"], [])
        print(f"  {mode:<15} {r['name']:<22} {len(fs):>2} finding(s)" +
              (": " + ", ".join(sorted({f['rule_id'] for f in fs})) if fs else ""), file=out)
    for name, fs in by_router.items():
        print(f"  {'':<15} {name:<22} {len(fs):>2} finding(s): " + ", ".join(sorted({f['rule_id'] for f in fs})), file=out)


def main(store: str | None, workdir: str | None, dashboard: bool, modes: list[str] | None,
         capture: str = "auto") -> int:
    wd = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="routerwatch-demo-"))
    st = Path(store) if store else wd / "store"
    if capture == "auto":
        capture = "live" if live_available() else "tcpdump"
    res = run_demo(st, wd, modes=tuple(modes) if modes else None, capture=capture,
                   log=lambda m: print(m, file=sys.stderr))
    print_summary(res)
    print(f"\nexplore: routerwatch findings --store {st}\n"
          f"         routerwatch report --store {st} --format html -o report.html\n"
          f"         routerwatch sql --store {st} \"SELECT * FROM exchange_classes\"")
    if not dashboard:
        return 0
    from importlib.metadata import entry_points

    if not any(ep.name == "dashboard" for ep in entry_points(group="routerwatch.commands")):
        print("(the dashboard is not installed here; use the commands above)")
        return 0
    print(f"\nopening the dashboard: routerwatch dashboard --store {st}  (Ctrl-C to stop)", file=sys.stderr)
    exe = shutil.which("routerwatch") or str(Path(sys.executable).parent / "routerwatch")
    try:
        return subprocess.call([exe, "dashboard", "--store", str(st)])
    except KeyboardInterrupt:
        return 0
