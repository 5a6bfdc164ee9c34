"""The analyzer's subcommands (registered through the `routerwatch.commands` entry point)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from collector.cli import UserError, add_store_arg

CLI_MAX_ROWS = 100_000  # the dashboard shows 10,000; a terminal or a pipe can take more


def sandbox_limits(args: argparse.Namespace, default_rows: int = CLI_MAX_ROWS):
    """The SQL sandbox's limits from --timeout/--memory-limit/--max-rows, else the environment."""
    from analyzer.sandbox import Limits

    try:
        return Limits.from_env(args.timeout, args.memory_limit, args.max_rows, default_rows=default_rows)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def cmd_sql(args: argparse.Namespace) -> int:
    from analyzer.sandbox import QueryError, Sandbox
    from analyzer.sql_shell import interactive, show

    limits = sandbox_limits(args)
    try:
        sb = Sandbox.open(args.store, limits)
    except QueryError as exc:
        raise UserError(str(exc)) from None
    with sb:
        if not args.query:
            return interactive(sb, args.format)
        query = sys.stdin.read() if args.query == "-" else args.query
        try:
            res = sb.run_one(query)
        except QueryError as exc:
            raise UserError(str(exc)) from None
        show(res, args.format, limits.max_rows)
    return 0


def add_sandbox_args(p: argparse.ArgumentParser, rows_default: int) -> None:
    """--timeout / --memory-limit / --max-rows (also read from ROUTERWATCH_SQL_*)."""
    from analyzer.sandbox import DEFAULT_MEMORY, DEFAULT_TIMEOUT_S, MAX_ROWS_ENV, MEMORY_ENV, TIMEOUT_ENV

    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help=f"stop a query after this long (default ${TIMEOUT_ENV}, else {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--memory-limit", metavar="SIZE",
                   help=f"DuckDB memory per query, e.g. 512MiB, 4GiB (default ${MEMORY_ENV}, else {DEFAULT_MEMORY})")
    p.add_argument("--max-rows", type=int, metavar="N",
                   help=f"return at most N rows, cut inside the query (default ${MAX_ROWS_ENV}, else {rows_default:,})")


# -- analyze and friends -------------------------------------------------------------------------
def _rules_dirs(root: Path | None, arg: str | None) -> list[Path]:
    if arg:
        d = Path(arg)
        if not d.is_dir():
            raise UserError(f"rules directory {d} does not exist")
        return [d]
    return [root / "rules"] if root is not None and (root / "rules").is_dir() else []


def _store_root(spec: str | None) -> Path | None:
    from collector.store.connection import StoreLocation

    return StoreLocation.parse(spec).root


def _load(root: Path | None, args):
    from analyzer.rules import RuleError, load_rules
    from collector.catalog import load_catalog
    from collector.catalog.loader import CatalogError

    try:
        catalog = load_catalog(root)
        rules = load_rules(*_rules_dirs(root, getattr(args, "rules_dir", None)), only=getattr(args, "rule", None))
    except (CatalogError, RuleError) as exc:
        raise UserError(str(exc)) from None
    return catalog, rules


def cmd_analyze(args: argparse.Namespace) -> int:
    if args.follow:
        return _follow(args)
    from analyzer.engine import AnalyzeError, analyze
    from analyzer.service import analyze_lock, delegate, emit
    from collector.store import Store
    from collector.store.connection import WRITE_DEADLINE_S

    def note(msg: str) -> None:
        print(f"routerwatch analyze: {msg}", file=sys.stderr, flush=True)

    with Store.open(args.store) as store:
        catalog, rules = _load(store.location.root, args)
        # an analyzer service runs here: let it do the work (same rules), report what it found
        res = None if (args.rule or args.rules_dir) else delegate(store, rules, timeout=WRITE_DEADLINE_S,
                                                                  log=None if args.quiet else note)
        by = f"the analyzer service ({res.pid}) " if res is not None else ""
        if res is None:
            with analyze_lock(store, log=None if args.quiet else note):  # another run first, if one is going
                try:
                    res = analyze(store, catalog, rules, preview=bool(args.rule))
                except AnalyzeError as exc:
                    raise UserError(str(exc)) from None
    preview = res.preview
    if preview:
        if args.eve or args.webhook:
            note("--rule runs are previews: no alert is sent for findings that are not stored")
    else:
        emit(res, args.eve, args.webhook, lambda m: print(f"routerwatch: {m}", file=sys.stderr))
    if not args.quiet:
        out = sys.stderr if args.eve == "-" else sys.stdout
        new = ", ".join(f"{n:,} {t}" for t, n in res.new_rows.items() if n) or "nothing new"
        if preview:
            print(f"preview ({', '.join(args.rule)}; nothing stored: the next full run analyses these rows "
                  "with every rule)", file=out)
        print(f"{by}analyzed {new} in {res.duration_s:.2f} s: {len(res.findings)} new finding(s)"
              + (f", {res.suppressed} suppressed as duplicates" if res.suppressed else ""), file=out)
        shown = sorted(res.findings, key=lambda f: (str(f["ts"]), f["rule_id"]))
        for f in shown[:50]:
            print(f"  [{f['severity']}] {f['rule_id']}: {f['summary'] or f['title']}", file=out)
        if len(shown) > 50:
            from collections import Counter

            rest = Counter(f["rule_id"] for f in shown[50:])
            print(f"  ... and {len(shown) - 50} more: " + ", ".join(f"{r} {n}" for r, n in rest.most_common())
                  + " (`routerwatch findings` lists them)", file=out)
        if not preview:
            print(f"ledger: {res.ledger_seq} entries, head {res.ledger_head}", file=out)
    return 0


def _follow(args: argparse.Namespace) -> int:
    import signal
    import threading

    from analyzer.service import FollowOptions, follow

    if args.interval <= 0:
        raise UserError("--interval must be a positive number of seconds")
    if args.rule:
        raise UserError("--follow runs every rule (a continuous analyzer of a subset would hide the rows it "
                        "read from the others); preview a rule with `routerwatch analyze --rule ID`")
    _load(_store_root(args.store), args)  # a broken catalog or rule is an error now, not in a loop
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        follow(FollowOptions(store=args.store, rules_dir=args.rules_dir, only=args.rule, eve=args.eve,
                                     webhook=args.webhook, interval=args.interval,
                                     compact_every=args.compact_every, quiet=args.quiet), stop)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return 0


def _since(v: str | None) -> dt.datetime | None:
    from analyzer.durations import parse_since

    if not v:
        return None
    try:
        return parse_since(v)
    except ValueError:
        raise UserError(f"--since {v!r}: use an ISO time (2026-01-31T10:00) or a span (90m, 24h, 7d)") from None


def cmd_findings(args: argparse.Namespace) -> int:
    from analyzer.engine import SEVERITY_RANK
    from analyzer.sql import format_rows
    from collector.store import Store

    where, params = ["1=1"], []
    if args.rule:
        where.append("rule_id IN (SELECT unnest(?))")
        params.append(args.rule)
    if args.severity:
        keep = [s for s, r in SEVERITY_RANK.items() if r >= SEVERITY_RANK[args.severity]]
        where.append("severity IN (SELECT unnest(?))")
        params.append(keep)
    for col, val in (("attack_class", args.attack_class), ("host_id", args.host), ("router", args.router),
                     ("exchange_id", args.exchange)):
        if val:
            where.append(f"{col} = ?")
            params.append(val)
    since = _since(args.since)
    if since:
        where.append("ts >= ?")
        params.append(since)
    cols = ("ts, severity, rule_id, attack_class, summary, host_id, router, exchange_id, flow_uid, pid, finding_id"
            if not args.full else "*")
    def read(con):
        cur = con.execute(f"SELECT {cols} FROM findings WHERE {' AND '.join(where)} ORDER BY ts DESC LIMIT ?",
                          [*params, args.limit])
        return [d[0] for d in cur.description], cur.fetchall()

    with Store.open(args.store, read_only=True) as store:
        names, rows = store.read(read)  # a busy catalog is read again, not reported
    print(format_rows(names, rows, args.format))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from analyzer.report import RENDERERS, gather
    from collector.store import Store

    with Store.open(args.store, read_only=True) as store:
        since = _since(args.since)
        text = RENDERERS[args.format](store.read(lambda con: gather(con, since)))
    if args.output:
        from collector.store.permissions import write_private_text

        try:
            write_private_text(args.output, text)  # 0600: a report names hosts, routers and findings
        except OSError as exc:
            raise UserError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_ledger_verify(args: argparse.Namespace) -> int:
    from analyzer.ledger import verify
    from collector.store import Store

    with Store.open(args.store, read_only=True) as store:
        v = store.read(lambda con: verify(con, expected_head=args.head))
    if v.ok:
        print(f"ledger OK: {v.entries} entries, head {v.head_seq} {v.head_hash}")
        if v.pending:
            print(f"  {v.pending} tool-call row(s) committed since the last analyze are not covered yet "
                  "(the next `routerwatch analyze` covers them)")
        return 0
    print(f"ledger FAILED: {len(v.problems)} problem(s) in {v.entries} entries", file=sys.stderr)
    for p in v.problems:
        print(f"  - {p}", file=sys.stderr)
    return 1


def cmd_canary_new(args: argparse.Namespace) -> int:
    from analyzer.canary import create
    from analyzer.engine import insert
    from collector.config import host_id
    from collector.secrets import Fingerprinter
    from collector.store import Store

    with Store.open(args.store) as store:
        canary, rows = create(args.kind, Fingerprinter(store.secret_key()), args.label, host_id())
        store.write(lambda con: insert(con, "canaries", rows), what="registering the canary", rows=len(rows))
    print(f"# routerwatch canary {canary.canary_id} ({canary.kind}). Shown ONCE: only its fingerprint is stored.",
          file=sys.stderr)
    print("# Plant it where an agent (and its router) can read it; `routerwatch findings --rule canary-seen` "
          "shows where it went.", file=sys.stderr)
    print(canary.text.rstrip("\n"))
    return 0


def cmd_canary_list(args: argparse.Namespace) -> int:
    from analyzer.sql import format_rows
    from collector.store import Store

    with Store.open(args.store, read_only=True) as store:
        cur = store.con.execute("SELECT ts, canary_id, kind, secret_kind, last4, fingerprint, label FROM canaries ORDER BY ts")
        print(format_rows([d[0] for d in cur.description], cur.fetchall(), args.format))
    return 0


def cmd_rules_list(args: argparse.Namespace) -> int:
    from analyzer.sql import format_rows

    _, rules = _load(_store_root(args.store), args)
    rows = [(r.id, r.rev, r.severity, r.attack_class, ",".join(r.attack), r.title, str(r.path)) for r in rules]
    print(format_rows(["id", "rev", "severity", "attack_class", "attack", "title", "file"], rows, args.format))
    return 0


def cmd_rules_test(args: argparse.Namespace) -> int:
    from analyzer.rules.testing import check_rule

    _, rules = _load(None, args)
    failed = 0
    for r in rules:
        for res in check_rule(r):
            print(f"{'ok  ' if res.ok else 'FAIL'} {r.id} {res.kind}" + (f": {res.problem}" if res.problem else ""))
            failed += not res.ok
    print(f"{sum(2 for _ in rules) - failed} passed, {failed} failed")
    return 1 if _rules_corpus(args, rules) or failed else 0


def _rules_corpus(args: argparse.Namespace, rules) -> bool:  # noqa: ANN001
    """Precision and recall of each rule on the benign and attack corpora; True when the acceptance bar
    (no benign finding at medium or above, every attack accounted for) fails with all rules loaded."""
    from analyzer.rules.corpus import corpus_report, default_corpus_dir
    from collector.catalog import load_catalog

    if args.no_corpus:
        return False
    root = Path(args.corpus) if args.corpus else default_corpus_dir()
    if root is None:
        print("corpora: none here (tests/fixtures/detection ships with the source tree; --corpus DIR names one)")
        return False
    if not (root / "benign").is_dir() and not (root / "attack").is_dir():
        raise UserError(f"{root}: no benign/ or attack/ directory of corpus sessions")
    print(f"\ncorpora in {root}: each rule's recall (attack turns it accounts for) and precision (its turns that are attacks)")
    try:
        rep = corpus_report(root, load_catalog(None), rules)
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{root}: {type(exc).__name__}: {exc}") from None
    print(rep.text)
    if args.rule:
        return False  # a subset of rules cannot account for every attack
    if not rep.ok:
        print("corpus acceptance FAILED: " + ("benign findings at medium or above; " if rep.summary.benign_flagged_medium else "")
              + ("attacks not accounted for" if rep.summary.attacks_unaccounted else ""))
    return not rep.ok


def cmd_demo(args: argparse.Namespace) -> int:
    from analyzer.demo.run import main

    return main(args.store, args.workdir, not args.no_dashboard, args.mode, args.capture)


def register(sub: argparse._SubParsersAction) -> None:
    """The analyzer's commands, one `_add_<command>` each."""
    _add_sql(sub)
    _add_analyze(sub)
    _add_findings(sub)
    _add_report(sub)
    _add_ledger(sub)
    _add_canary(sub)
    _add_rules(sub)
    _add_demo(sub)


def _add_sql(sub: argparse._SubParsersAction) -> None:
    """`routerwatch sql`: read-only SQL in the sandbox."""
    p = sub.add_parser(
        "sql",
        help="run read-only SQL over the store (interactive without QUERY)",
        description="Run read-only SQL over the store. Tables: flows, processes, dns, tls, http, "
        "llm_exchanges, tool_calls, secrets_seen, findings, routers, flow_classes, exchange_classes, "
        "tool_call_indicators, package_installs, ledger, collector_stats, ingest_runs, ... "
        "(see docs/sql.md). Without QUERY, an interactive prompt with history; QUERY '-' reads stdin. "
        "Queries run in a sandbox (docs/security.md): SELECT, WITH, EXPLAIN, DESCRIBE, SHOW and SUMMARIZE "
        "only; no file access, ATTACH, COPY or settings; a time, memory and row limit per query.",
    )
    add_store_arg(p)
    add_sandbox_args(p, CLI_MAX_ROWS)
    p.add_argument("--format", choices=["table", "json", "csv"], default="table",
                   help="table (default), json (one array of row objects) or csv")
    p.add_argument("query", nargs="?", metavar="QUERY")
    p.set_defaults(func=cmd_sql)


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    """`routerwatch analyze`: one run, a preview of some rules, or the continuous analyzer."""
    a = sub.add_parser("analyze", help="enrich new rows, run the rules, write findings and the ledger (incremental)",
                       description="Classify destinations and exchanges, analyse tool calls, run every rule "
                       "(builtin + RULES_DIR) over the rows new since the last run, and append findings and "
                       "ledger entries. Running it twice adds nothing. Beside a running analyzer service "
                       "(`--follow`, `routerwatch up`, the systemd unit) it lets the service analyse what is new "
                       "and reports what the service found (with --rules-dir it waits for the service's current run, "
                       "then runs itself). With --rule it previews those rules: findings printed, nothing stored. "
                       "With --follow it runs continuously: whenever another "
                       "writer commits, alerts leave as findings are made; SIGTERM or Ctrl-C stops it.")
    add_store_arg(a)
    a.add_argument("--rules-dir", metavar="DIR", help="extra rules (default: DIR/rules beside the store, if present)")
    a.add_argument("--rule", action="append", metavar="ID",
                   help="preview only this rule (repeatable) over the rows new since the last run: its findings "
                        "are printed, nothing is stored, so the next run still analyses those rows with every rule")
    a.add_argument("--eve", metavar="FILE", help="append EVE-style JSON-lines alerts to FILE ('-' for stdout)")
    a.add_argument("--webhook", metavar="URL", help="POST new findings as JSON to URL")
    a.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    a.add_argument("--follow", action="store_true",
                   help="keep running: analyze whenever new rows are committed (the main job's analyzer)")
    a.add_argument("--interval", type=float, default=1.0, metavar="S",
                   help="with --follow: look for new commits every S seconds (default 1)")
    a.add_argument("--compact-every", type=float, default=3600.0, metavar="S",
                   help="with --follow: run the store's maintenance (`store compact`) every S seconds "
                        "(default 3600; 0: never)")
    a.set_defaults(func=cmd_analyze, lean=True)  # no pandas (collector.cli main)


def _add_findings(sub: argparse._SubParsersAction) -> None:
    """`routerwatch findings`: the filters over stored findings."""
    f = sub.add_parser("findings", help="list findings (filter by rule, severity, class, host, router, time)")
    add_store_arg(f)
    f.add_argument("--rule", action="append", metavar="ID")
    f.add_argument("--severity", choices=["info", "low", "medium", "high", "critical"], help="at least this severity")
    f.add_argument("--class", dest="attack_class", metavar="CLASS", help="attack class (AC-1, AC-1.a, AC-1.b, AC-2, egress, ...)")
    f.add_argument("--host", metavar="HOST_ID")
    f.add_argument("--router", metavar="NAME")
    f.add_argument("--exchange", metavar="ID")
    f.add_argument("--since", metavar="WHEN", help="ISO time or a span such as 24h, 7d")
    f.add_argument("--limit", type=int, default=200)
    f.add_argument("--full", action="store_true", help="every column, evidence included")
    f.add_argument("--format", choices=["table", "json", "csv"], default="table")
    f.set_defaults(func=cmd_findings, lean=True)  # no pandas (collector.cli main)


def _add_report(sub: argparse._SubParsersAction) -> None:
    """`routerwatch report`."""
    r = sub.add_parser("report", help="a report of routers and findings as Markdown, HTML or JSON")
    add_store_arg(r)
    r.add_argument("--format", choices=["md", "html", "json"], default="md")
    r.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
    r.add_argument("--since", metavar="WHEN", help="ISO time or a span such as 24h, 7d")
    r.set_defaults(func=cmd_report, lean=True)  # no pandas (collector.cli main)


def _add_ledger(sub: argparse._SubParsersAction) -> None:
    """`routerwatch ledger verify`."""
    lg = sub.add_parser("ledger", help="the hash-chained ledger of exchanges")
    lsub = lg.add_subparsers(dest="ledger_cmd", required=True, metavar="ACTION")
    lv = lsub.add_parser("verify", help="recompute the chain; detect modified, deleted or reordered entries")
    add_store_arg(lv)
    lv.add_argument("--head", metavar="HASH", help="a head hash recorded elsewhere earlier (an external anchor)")
    lv.set_defaults(func=cmd_ledger_verify)


def _add_canary(sub: argparse._SubParsersAction) -> None:
    """`routerwatch canary new|list`."""
    cn = sub.add_parser("canary", help="canary credentials (printed once, stored as fingerprints)")
    csub = cn.add_subparsers(dest="canary_cmd", required=True, metavar="ACTION")
    cnew = csub.add_parser("new", help="print a new realistic-format canary once and register its fingerprint")
    add_store_arg(cnew)
    cnew.add_argument("--kind", required=True, choices=["aws", "openai", "anthropic", "github", "eth"])
    cnew.add_argument("--label", help="a note for yourself: where you planted it")
    cnew.set_defaults(func=cmd_canary_new)
    cl = csub.add_parser("list", help="registered canaries (fingerprints, never values)")
    add_store_arg(cl)
    cl.add_argument("--format", choices=["table", "json", "csv"], default="table")
    cl.set_defaults(func=cmd_canary_list)


def _add_rules(sub: argparse._SubParsersAction) -> None:
    """`routerwatch rules list|test`."""
    ru = sub.add_parser("rules", help="list detection rules, or run their fixtures")
    rsub = ru.add_subparsers(dest="rules_cmd", required=True, metavar="ACTION")
    rl = rsub.add_parser("list", help="builtin and user rules")
    add_store_arg(rl)
    rl.add_argument("--rules-dir", metavar="DIR")
    rl.add_argument("--format", choices=["table", "json", "csv"], default="table")
    rl.set_defaults(func=cmd_rules_list, rule=None)
    rt = rsub.add_parser("test", help="run each rule's fixtures, then score every rule on the detection corpora",
                         description="Run each rule's positive and negative fixture, then the benign and attack "
                         "corpora (tests/fixtures/detection in the source tree, or --corpus DIR): each rule's "
                         "recall and precision, and whether the benign corpus stays below medium and every "
                         "attack is accounted for. Exit 1 when a fixture or that bar fails.")
    rt.add_argument("--rules-dir", metavar="DIR", help="also test the rules in DIR (with DIR/fixtures/<id>/)")
    rt.add_argument("--rule", action="append", metavar="ID")
    rt.add_argument("--corpus", metavar="DIR", help="corpus directory with benign/ and attack/ session files")
    rt.add_argument("--no-corpus", action="store_true", help="fixtures only")
    rt.set_defaults(func=cmd_rules_test)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    """`routerwatch demo`."""
    dm = sub.add_parser("demo", help="loopback router zoo + scripted SDK agent, captured, analyzed, shown",
                        description="Start honest and malicious routers on loopback, run a scripted agent on the "
                        "real openai/anthropic SDKs through them under capture (tool calls executed safely: "
                        "loopback fetches only, never a shell), ingest, analyze, then open the dashboard.")
    dm.add_argument("--store", metavar="DIR", help="store for the demo (default: a new one in the work dir)")
    dm.add_argument("--workdir", metavar="DIR", help="where the capture and certificates go (default: a temp dir)")
    dm.add_argument("--mode", action="append", metavar="MODE", help="only these zoo modes (repeatable)")
    dm.add_argument("--no-dashboard", action="store_true", help="stop after printing the findings")
    dm.add_argument("--capture", choices=["auto", "live", "tcpdump"], default="auto",
                    help="auto (default): the live collector when root with eBPF, else tcpdump + ingest")
    dm.set_defaults(func=cmd_demo)
