"""The `routerwatch` command: one entry point, thin subcommands over library calls.

The collector's own commands are registered here; the analyzer and dashboard register theirs
through the `routerwatch.commands` entry-point group, so this package never imports them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from collector import __version__
from collector.store.errors import StoreError


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


def add_store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        metavar="DIR",
        help="store directory or DuckLake catalog URI (default: $ROUTERWATCH_STORE, else "
        "/var/lib/routerwatch as root, else ~/.local/share/routerwatch)",
    )


# -- store maintenance and export ----------------------------------------------------------------
def cmd_store_compact(args: argparse.Namespace) -> int:
    from collector.store.maintenance import compact_isolated

    res = compact_isolated(args.store, expire_older_than_hours=args.expire_hours)
    print(f"compacted: {res['files_before']} -> {res['files_after']} data files")
    return 0


def cmd_store_maintain(args: argparse.Namespace) -> int:
    import signal

    from collector.store import maintainer

    if args.every is not None and args.every <= 0:
        raise UserError("--every must be positive")
    stopped = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.append(1))
    return maintainer.run(args.store, every_s=args.every, expire_hours=args.expire_hours,
                          log=lambda m: print(f"routerwatch store maintain: {m}", file=sys.stderr, flush=True),
                          stop=lambda: bool(stopped))


def cmd_store_info(args: argparse.Namespace) -> int:
    from collector.store import Store

    with Store.open(args.store, read_only=True) as store:
        print(f"store: {store.location.display}")
        for t in store.tables():
            n = store.sql(f'SELECT count(*) FROM "{t}"').fetchone()[0]
            print(f"  {t:<20} {n:>12,} rows")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from collector.store import Store
    from collector.store.maintenance import export_duckdb, export_parquet

    with Store.open(args.store, read_only=True) as store:
        try:
            if args.duckdb:
                tables = export_duckdb(store, args.duckdb)
                print(f"exported {len(tables)} tables to {args.duckdb} (mode 0600)")
            else:
                tables = export_parquet(store, args.parquet)
                print(f"exported {len(tables)} tables to {args.parquet}/ (files 0600)")
        except OSError as exc:
            raise UserError(f"cannot write the export: {exc.strerror or exc}") from None
    return 0


# -- offline capture ingest -----------------------------------------------------------------------
def cmd_ingest(args: argparse.Namespace) -> int:
    from collector.ingest import IngestError, ingest
    from collector.live.lean import freeze_imports

    freeze_imports()

    try:
        res = ingest(args.capture, store=args.store, keylog=args.keylog, host_id=args.host_id,
                     batch_rows=args.batch_rows, wait_s=args.wait)
    except IngestError as exc:
        raise UserError(str(exc)) from None
    if res.truncated:  # errors[0] is the reader's account of the damage; later ones are also warnings
        print(f"routerwatch: warning: {args.capture}: {res.errors[0]} (ingested what was readable)", file=sys.stderr)
    for w in res.warnings:
        print(f"routerwatch: warning: {w}", file=sys.stderr)
    if res.status == "duplicate":
        print(f"{args.capture}: already ingested (sha256 {res.sha256[:12]}), nothing added")
        return 0
    if res.status == "rekeyed":
        print(f"{args.capture}: already ingested (sha256 {res.sha256[:12]}); with this key log: "
              f"{res.decrypted_flows:,} more TLS connections decrypted, {res.new_exchanges:,} HTTP exchanges added "
              f"in {res.duration_s:.1f} s (flows unchanged)")
        line = decrypt_summary(res.decrypt)
        if line:
            print(f"  all keys together: {line}")
        return 0
    print(f"{args.capture}: {res.packets:,} packets -> {res.flows:,} flows, {res.dns:,} DNS messages, "
          f"{res.tls:,} TLS handshakes in {res.duration_s:.1f} s ({res.status})")
    line = decrypt_summary(res.decrypt)
    if line:
        print(f"  {line}")
    return 0


def decrypt_summary(stats: dict | None) -> str | None:
    """One line on what decryption found (None without keys or without the pipeline)."""
    if not stats or stats.get("unavailable") or stats.get("failed"):
        return None
    with_data = stats.get("tls_streams_with_app_data", 0)
    how = stats.get("decryptor", "?")
    if stats.get("native_fallback"):
        how += f"; the native decryptor declined: {stats['native_fallback']}"
    return (f"decrypted {stats.get('decrypted_flows', 0):,} of {with_data:,} TLS connections carrying data ({how}): "
            f"{stats.get('exchanges', 0):,} HTTP exchanges, {stats.get('llm_exchanges', 0):,} LLM exchanges, "
            f"{stats.get('tool_calls', 0):,} tool calls, {stats.get('secrets_seen', 0):,} secrets fingerprinted")


def _register_ingest(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest", help="ingest an offline pcap/pcapng (+ TLS key log) into the store",
        description="Read a pcap or pcapng capture into the store: flows, DNS, TLS handshakes, and with keys (a key "
        "log, or Decryption Secrets Blocks inside a pcapng) the decrypted HTTP and LLM exchanges. Ingesting the "
        "same capture again adds nothing; again with a new key log adds only what the new keys decrypt. Input "
        "that cannot be ingested is refused with one line and exit status 2; a capture damaged after its "
        "file header is ingested as far as it is readable (status 'partial', a warning names the damage).")
    p.add_argument("capture", metavar="CAPTURE",
                   help="pcap or pcapng file (any link type tshark reads), a FIFO, or - for stdin (a pipe is "
                   "copied to a private temporary file, deleted afterwards)")
    p.add_argument("--keylog", metavar="FILE", help="TLS key log (SSLKEYLOGFILE format) for decryption")
    p.add_argument("--host-id", metavar="ID", help="host the capture came from (default: $ROUTERWATCH_HOST_ID, else hostname)")
    p.add_argument("--wait", type=float, default=5.0, metavar="S",
                   help="how long a pipe or FIFO may stay silent before its first bytes (default 5)")
    p.add_argument("--batch-rows", type=int, default=50_000, metavar="N",
                   help="rows per committed batch; readers see the store grow batch by batch (default 50000)")
    add_store_arg(p)
    p.set_defaults(func=cmd_ingest, lean=True)


# -- agent coverage: wrap (key log / proxy) and the router-configuration inventory ----------------
def cmd_wrap(args: argparse.Namespace) -> int:
    from collector import wrap

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise UserError("wrap needs a command: routerwatch wrap [options] -- CMD [ARGS...]")
    if args.enforce and not args.proxy:
        raise UserError("--enforce needs --proxy (only the proxy sees responses before the agent does)")
    if (args.policy or args.gate_fail_open) and not args.enforce:
        raise UserError("--policy and --gate-fail-open configure the gate: add --enforce")
    gate = None
    if args.enforce:
        from collector.catalog import CatalogError
        from collector.policy.policy import PolicyError

        try:
            gate = wrap.proxy_gate(args.store, args.policy, args.gate_fail_open)
        except (PolicyError, CatalogError) as exc:
            raise UserError(str(exc)) from None
    try:
        if args.proxy:
            return wrap.run_proxy(cmd, store=args.store, fail_open=args.fail_open, ca_dir=args.ca_dir, gate=gate)
        code, run = wrap.run_keylog(cmd, keylog_dir=args.keylog_dir, keep_keys=args.keep_keys)
    except FileNotFoundError as exc:
        raise UserError(f"command not found: {exc.args[0] if exc.args else cmd[0]}") from None
    except PermissionError as exc:
        raise UserError(f"cannot run {cmd[0]}: {exc.strerror}") from None
    if args.keep_keys:
        print(f"routerwatch: key log kept: {run.keylog}", file=sys.stderr)
    return code


def cmd_inventory(args: argparse.Namespace) -> int:
    from collector.inventory import scan

    rows = scan.run(store=args.store, homes=args.home, pids=args.pid, project_dirs=args.project,
                    live=not args.no_live, write=not args.no_store)
    scan.print_rows(rows, fmt=args.format)
    return 0


def _register_coverage(sub: argparse._SubParsersAction) -> None:
    from pathlib import Path

    w = sub.add_parser(
        "wrap", help="run an agent with TLS key logging on (or through the intercepting proxy with --proxy)",
        description="Run CMD so its TLS plaintext can be recovered: key-log mode (SSLKEYLOGFILE, a Python "
        "start-up hook, NODE_OPTIONS=--tls-keylog) for the live collector, or --proxy: a local "
        "TLS-intercepting proxy that decodes every exchange into the store. Exit status and signals "
        "pass through.")
    add_store_arg(w)
    w.add_argument("--keylog-dir", type=Path, metavar="DIR", help="where key logs go (default: the collector's key-log dir)")
    w.add_argument("--keep-keys", action="store_true", help="keep the key log after use (default: deleted)")
    w.add_argument("--proxy", action="store_true", help="intercepting-proxy mode (for Bun, rustls, Go agents)")
    w.add_argument("--fail-open", action="store_true",
                   help="proxy: tunnel hosts whose TLS cannot be intercepted and keep passing traffic when "
                   "recording fails (default: fail closed)")
    w.add_argument("--enforce", action="store_true",
                   help="proxy: screen every response before the agent sees it; a tool call that trips a blocking "
                   "rule of the policy never reaches the agent (it gets a message saying why), and every decision "
                   "is stored (gate_decisions)")
    w.add_argument("--policy", type=Path, metavar="FILE",
                   help="gate policy YAML (default: $ROUTERWATCH_POLICY, else policy.yaml beside the store, else "
                   "builtin: execution-strength rules block, credential reads are recorded); see docs/agents-and-proxy.md")
    w.add_argument("--gate-fail-open", action="store_true",
                   help="gate: let through responses the gate cannot parse or judge in time (default: they are "
                   "blocked); independent of --fail-open")
    w.add_argument("--ca-dir", type=Path, metavar="DIR", help="proxy CA directory (default: $ROUTERWATCH_PROXY_CA_DIR, "
                   "/etc/routerwatch/proxy-ca as root, ~/.config/routerwatch/proxy-ca otherwise)")
    w.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD", help="the agent command")
    w.set_defaults(func=cmd_wrap)

    v = sub.add_parser("inventory", help="which LLM endpoints agents are configured to use (env and config files)")
    add_store_arg(v)
    v.add_argument("--home", action="append", type=Path, metavar="DIR",
                   help="a home directory to read agent config files from (repeatable; default: every user's)")
    v.add_argument("--project", action="append", type=Path, metavar="DIR",
                   help="a project directory with .claude/settings*.json, opencode.json, crush.json ... (repeatable)")
    v.add_argument("--pid", action="append", type=int, metavar="PID", help="only this process (repeatable)")
    v.add_argument("--no-live", action="store_true", help="do not scan running processes")
    v.add_argument("--no-store", action="store_true", help="print only, write nothing")
    v.add_argument("--format", choices=("table", "json"), default="table")
    v.set_defaults(func=cmd_inventory)


# -- the policy gate as an agent hook, and policy dry runs ----------------------------------------
def _policy_and_catalog(store: str | None, policy: str | None, gate_fail_open: bool = False):  # noqa: ANN202
    from collector.catalog import CatalogError
    from collector.policy.judge import gate_inputs
    from collector.policy.policy import PolicyError

    try:
        return gate_inputs(store, policy, gate_fail_open)
    except (PolicyError, CatalogError) as exc:
        raise UserError(str(exc)) from None  # one line, exit 2


def cmd_gate(args: argparse.Namespace) -> int:
    from collector.policy import install

    if args.install or args.uninstall:
        agent = args.install or args.uninstall
        path = install.settings_path(agent, args.scope, args.project)
        try:
            if args.uninstall:
                n = install.uninstall(agent, path)
                print(f"removed the routerwatch gate hook from {path}" if n else f"no routerwatch gate hook in {path}")
                return 0
            exe = str(Path(sys.argv[0]).resolve()) if Path(sys.argv[0]).name == "routerwatch" else "routerwatch"
            store = str(Path(args.store).resolve()) if args.store and not args.store.startswith("ducklake:") else args.store
            policy = str(Path(args.policy).resolve()) if args.policy else None
            changed = install.install(agent, path, install.hook_command(exe, agent, store, policy))
        except install.InstallError as exc:
            raise UserError(str(exc)) from None
        print(f"{'installed' if changed else 'already installed:'} the routerwatch gate as the {agent} PreToolUse hook in {path}")
        if agent == "codex":
            print("Codex runs a new hook only after you review and trust it: open /hooks in Codex")
        return 0
    from collector import config
    from collector.policy.hook import answer, hook_context, load_written, record, save_written
    from collector.policy.judge import judge_for
    from collector.policy.outbox import outbox_dir
    from collector.store.connection import StoreLocation

    pol, cat = _policy_and_catalog(args.store, args.policy, args.gate_fail_open)
    agent = install_agent(args.agent)
    judge = judge_for(pol, cat)
    written = outbox_dir(StoreLocation.parse(args.store)) / "written-files.json"  # a split payload's first half
    load_written(judge, written)
    raw = sys.stdin.buffer.read(16 * 1024 * 1024 + 1)
    ans = answer(raw, agent=agent, judge=judge, catalog=cat)
    save_written(judge, written)
    sys.stdout.write(ans.stdout)
    sys.stderr.write(ans.stderr)
    sys.stdout.flush()
    if ans.verdict is not None and not args.no_record:
        cwd = ans.payload.get("cwd") if isinstance(ans.payload.get("cwd"), str) else None
        err = record(ans, agent=agent, ctx=hook_context(agent, dict(os.environ), cwd, cat), policy=pol.digest,
                     store=args.store, host_id=config.host_id())
        if err:
            print(f"routerwatch gate: the decision was not recorded: {err}", file=sys.stderr)
    return ans.exit_code


def install_agent(name: str) -> str:
    from collector.policy.hook import AGENTS

    return AGENTS.get(name, name)


def cmd_policy_test(args: argparse.Namespace) -> int:
    import json as _json

    from collector.policy.dryrun import dry_run
    from collector.policy.judge import judge_for
    from collector.store import Store

    pol, cat = _policy_and_catalog(args.store, args.file)
    judge = judge_for(pol, cat)
    with Store.open(args.store, read_only=True) as st:
        if "tool_calls" not in st.tables():
            raise UserError("the store holds no tool calls yet")
        judged = dry_run(st, judge, cat, since=args.since)
    shown = [j for j in judged if j.action == "block" or (args.all and j.action != "allow")]
    counts = {a: sum(1 for j in judged if j.action == a) for a in ("block", "record", "allow")}
    if args.format == "json":
        print(_json.dumps({"policy": pol.source, "digest": pol.digest, "counts": counts, "calls": [
            {"ts": str(j.ts), "exchange_id": j.exchange_id, "idx": j.idx, "router": j.router, "agent": j.agent,
             "tool": j.tool, "action": j.action, "rule": j.rule, "reason": j.reason} for j in shown]}, indent=1))
        return 0
    for j in shown:
        print(f"{str(j.ts)[:19]}  {j.action:<6} {j.router:<28} {j.tool or '?':<12} {j.rule or '-':<24} {j.reason}")
    print(f"{len(judged)} stored tool calls judged with {pol.source} ({pol.digest}): {counts['block']} would be "
          f"blocked, {counts['record']} recorded, {counts['allow']} allowed")
    return 0


def _register_gate(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser(
        "gate", help="the policy gate as an agent hook: answer a PreToolUse call on stdin (or install the hook)",
        description="Reads one hook call (Claude Code or Codex PreToolUse JSON) on stdin and answers with the "
        "policy's decision: a call that trips a blocking rule is denied with the reason; anything else gets no "
        "answer (the agent's own permission rules decide). Every decision is recorded in the store "
        "(gate_decisions). With --install/--uninstall it writes or removes the hook in the agent's settings.")
    add_store_arg(g)
    g.add_argument("--agent", choices=("claude", "codex"), default="claude", help="which agent calls (default claude)")
    g.add_argument("--policy", metavar="FILE", help="gate policy YAML (default: $ROUTERWATCH_POLICY, else policy.yaml "
                   "beside the store, else builtin)")
    g.add_argument("--gate-fail-open", action="store_true",
                   help="allow calls the gate cannot read or judge in time (default: deny them)")
    g.add_argument("--no-record", action="store_true", help="answer only; do not write the decision to the store")
    g.add_argument("--install", choices=("claude", "codex"), metavar="AGENT",
                   help="write the hook into AGENT's settings (claude, codex); repeatable safely")
    g.add_argument("--uninstall", choices=("claude", "codex"), metavar="AGENT", help="remove the hook again")
    g.add_argument("--scope", choices=("user", "project", "local"), default="user",
                   help="install into the user's settings (default), the project's, or the project's local file")
    g.add_argument("--project", type=Path, metavar="DIR", help="the project for --scope project/local (default: cwd)")
    g.set_defaults(func=cmd_gate)

    p = sub.add_parser("policy", help="the gate's policy: dry runs over stored exchanges")
    psub = p.add_subparsers(dest="policy_cmd", required=True, metavar="ACTION")
    t = psub.add_parser("test", help="judge every stored tool call with a policy and print what it would have blocked",
                        description="Dry run: every response tool call in the store is judged with FILE (and the "
                        "catalog beside the store) exactly as wrap --proxy --enforce and the hook would; nothing is written.")
    add_store_arg(t)
    t.add_argument("file", metavar="FILE", help="the policy YAML to test")
    t.add_argument("--since", metavar="TS", help="only calls at or after this time (e.g. '2026-12-01 00:00')")
    t.add_argument("--all", action="store_true", help="also list calls the policy would only record")
    t.add_argument("--format", choices=("table", "json"), default="table")
    t.set_defaults(func=cmd_policy_test)


# -- live collector ------------------------------------------------------------------------------
def cmd_collect(args: argparse.Namespace) -> int:
    from collector.live.lean import return_freed_memory

    return_freed_memory()  # Arrow's buffers from the C allocator, which gives them back
    from collector.live.collect import CollectOptions, collect
    from collector.live.scope import ScopeError, resolve

    try:
        resolve(args.netns, args.cgroup)
    except ScopeError as exc:
        raise UserError(str(exc)) from None
    if args.interval <= 0 or args.poll <= 0:
        raise UserError("--interval and --poll must be positive")
    if args.max_delay > 5:
        raise UserError("--max-delay is at most 5 seconds")
    if args.buffer_mb <= 0:
        raise UserError("--buffer-mb must be positive")
    if args.ring_mb not in RING_MB_CHOICES:
        raise UserError(f"--ring-mb must be a power of two from 1 to 1024, not {args.ring_mb}")
    options = CollectOptions(
        store=args.store, host_id=args.host_id, interval=args.interval, duration=args.duration, poll=args.poll,
        max_delay=args.max_delay, ebpf=not args.no_ebpf, ssl=not args.no_ssl, ssl_libraries=args.ssl_lib or [],
        dns_send=not args.no_dns_send,
        capture=not args.no_capture, capture_dir=args.capture_dir, capture_iface=args.iface,
        capture_retain_mb=args.capture_retain_mb, capture_filter=args.capture_filter, keylogs=args.keylog or [],
        quiet=args.quiet, netns=args.netns, cgroup=args.cgroup, buffer_dir=args.buffer_dir, buffer_mb=args.buffer_mb,
        ring_mb=args.ring_mb,
    )
    try:
        return collect(options)
    except ScopeError as exc:
        raise UserError(str(exc)) from None


RING_MB_CHOICES = tuple(1 << i for i in range(11))  # a BPF ring buffer is a power-of-two number of pages


def _register_collect(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("collect", help="live collector: eBPF flows/processes/DNS, libssl plaintext, capture (root)")
    add_store_arg(c)
    c.add_argument("--host-id", help="name of this host in every row (default: $ROUTERWATCH_HOST_ID or hostname)")
    c.add_argument("--interval", type=float, default=10.0, metavar="S", help="collector_stats period (default 10)")
    c.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: until SIGTERM)")
    c.add_argument("--poll", type=float, default=0.2, metavar="S", help="ring-buffer drain period (default 0.2)")
    c.add_argument("--max-delay", type=float, default=2.0, metavar="S", help="store lag bound, <= 5 (default 2)")
    c.add_argument("--ring-mb", type=int, default=32, metavar="MB",
                   help="the probes' ring buffer, a power of two (default 32): kernel memory, mapped into the "
                        "collector and counted in its RSS; what it holds is the slack when draining falls behind "
                        "(lost records are counted in collector_stats)")
    c.add_argument("--no-ebpf", action="store_true", help="skip eBPF (capture + /proc/net polling only)")
    c.add_argument("--no-ssl", action="store_true", help="no libssl plaintext uprobes")
    c.add_argument("--no-dns-send", action="store_true",
                   help="do not read DNS queries sent by processes with their own resolver (at each UDP send, "
                        "and TCP sends to port 53); DNS names then come from getaddrinfo and the capture only")
    c.add_argument("--ssl-lib", action="append", metavar="PATH",
                   help="another binary exporting SSL_* (e.g. node) or a Go binary (crypto/tls) to probe; repeatable")
    c.add_argument("--no-capture", action="store_true", help="no packet capture ring")
    c.add_argument("--capture-dir", metavar="DIR", help="capture segments (default /var/lib/routerwatch-capture)")
    c.add_argument("--iface", default="any", help="capture interface (default any)")
    c.add_argument("--capture-retain-mb", type=int, default=512, metavar="MB", help="disk cap for segments")
    c.add_argument("--capture-filter", metavar="BPF", help="capture filter (default: 'tcp or (udp port 53)')")
    c.add_argument("--keylog", action="append", metavar="FILE",
                   help="a TLS key log to decrypt every outbound flow with (wrap runs are found on their own)")
    c.add_argument("--netns", metavar="NS",
                   help="record only this network namespace: a name from `ip netns`, pid:N, or a path to an nsfs "
                        "file; filtered in the kernel, and the capture runs inside it (several collectors on one "
                        "machine, each its own host)")
    c.add_argument("--cgroup", metavar="PATH",
                   help="record only processes in this cgroup v2 (a path under its mount, e.g. /sys/fs/cgroup) or below it")
    c.add_argument("--buffer-dir", metavar="DIR",
                   help="where batches wait while the store is unreachable, one subdirectory per host id (default "
                        "$ROUTERWATCH_BUFFER_DIR, else /var/lib/routerwatch-buffer as root); always on for a "
                        "fleet store (a DuckLake catalog URI), on for a local store when given")
    c.add_argument("--buffer-mb", type=int, default=1024, metavar="MB",
                   help="disk bound of that buffer; past it batches are dropped and counted (default 1024)")
    c.add_argument("-q", "--quiet", action="store_true", help="no start/stop messages")
    c.set_defaults(func=cmd_collect, lean=True)


def register(sub: argparse._SubParsersAction) -> None:
    """The collector's subcommands."""
    _register_ingest(sub)
    _register_collect(sub)
    p = sub.add_parser("store", help="store maintenance (compact, info)")
    ssub = p.add_subparsers(dest="store_cmd", required=True, metavar="ACTION")
    c = ssub.add_parser("compact", help="merge small Parquet files, expire old snapshots, delete unreferenced files")
    add_store_arg(c)
    c.add_argument("--expire-hours", type=float, default=24.0, help="expire snapshots older than this (default 24)")
    c.set_defaults(func=cmd_store_compact)
    m = ssub.add_parser(
        "maintain", help="compaction and snapshot expiry for a shared store, by one designated process",
        description="Merge small files, expire old snapshots and delete unreferenced files, beside running "
        "writers. On a PostgreSQL catalog a lease makes sure one maintainer works at a time (others skip "
        "their round); run it on one central host, e.g. the routerwatch-maintenance service.")
    add_store_arg(m)
    m.add_argument("--every", type=float, metavar="S", help="run a round every S seconds until stopped (default: once)")
    m.add_argument("--expire-hours", type=float, default=24.0, help="expire snapshots older than this (default 24)")
    m.set_defaults(func=cmd_store_maintain)
    i = ssub.add_parser("info", help="tables and row counts")
    add_store_arg(i)
    i.set_defaults(func=cmd_store_info)

    e = sub.add_parser("export", help="copy the store to one .duckdb file or a folder of Parquet files")
    add_store_arg(e)
    g = e.add_mutually_exclusive_group(required=True)
    g.add_argument("--duckdb", metavar="FILE", help="write a single plain DuckDB database file")
    g.add_argument("--parquet", metavar="DIR", help="write one Parquet file per table")
    e.set_defaults(func=cmd_export)

    _register_coverage(sub)
    _register_gate(sub)


# -- entry point ----------------------------------------------------------------------------------
def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; given the `command` about to run, only the collector's own commands
    when it is one of them (the analyzer's and dashboard's registrations import their packages: start-up
    time every collector command would pay)."""
    parser = argparse.ArgumentParser(
        prog="routerwatch",
        description="Watch AI agents' LLM API traffic: capture, decrypt, attribute to processes, "
        "detect malicious routers, and query everything with SQL.",
    )
    parser.add_argument("--version", action="version", version=f"routerwatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    register(sub)
    if command is None or command not in sub.choices:
        from importlib.metadata import entry_points

        for ep in sorted(entry_points(group="routerwatch.commands"), key=lambda e: e.name):
            ep.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from collector.store.permissions import restrict_umask

    restrict_umask()  # nothing any command writes is world-accessible (docs/security.md "File modes")
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(next((a for a in argv if not a.startswith("-")), None))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if getattr(args, "lean", False):
        # a command that set lean=True never uses pandas or pyarrow.dataset, which pyarrow's and
        # DuckDB's checks for pandas values would import (~0.2 s, ~40-50 MB; collector/live/lean.py):
        # refused before the command imports DuckDB. Nor does one do linear algebra or run the user's
        # programs (which would inherit the setting): no BLAS worker threads either
        from collector.live.lean import one_blas_thread, refuse_unused_modules

        refuse_unused_modules()
        one_blas_thread()
    try:
        return int(args.func(args) or 0)
    except (UserError, StoreError) as exc:
        print(f"routerwatch: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except Exception as exc:  # a busy store that outlasted every retry: one line, never a traceback
        from collector.store.connection import is_transient, transient_message

        if type(exc).__module__.split(".")[0] not in ("duckdb", "_duckdb") or not is_transient(exc):
            raise
        print(f"routerwatch: error: {transient_message(exc)}", file=sys.stderr)
        return 75
    except KeyboardInterrupt:
        print("routerwatch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
