"""The continuous analyzer (`routerwatch analyze --follow`, the analyzer of `routerwatch up` and of the
analyzer systemd unit): run incrementally whenever another writer commits, send alerts as findings
are made.

It polls the store's DuckLake snapshot id (one catalog read, a few ms) every `interval` seconds;
when the id moves (and at least as long has passed since the last run as that run used CPU, so the
service uses at most half a CPU however much there is to analyse; on a busy host, where a run waits
for the CPU most of its wall time, that rest stays short; a commit with new exchanges, tool calls,
credentials or canaries cuts one rest in two short, see `URGENT`), it takes the store's analyze lock
and runs `engine.analyze` with `skip_if_nothing_new`: a commit that touched no table the rules read
(collector statistics, ingest runs) costs one watermark query and writes nothing. Catalog and rules
are reloaded when their files change. A failing run (a broken user rule, a store that stayed busy)
is reported in one line and tried again later, with backoff: the service does not die on it. Every
`compact_every` seconds (sooner once `COMPACT_AT_FILES` more data files have piled up) it also runs
the store's maintenance (inlined rows to Parquet, small files merged, old snapshots expired), one
short write transaction per step.

While it runs it holds the store's service lock (`.service.lock`). A person's `routerwatch analyze`
(same rules) next to it does not analyse the same rows a second time: it waits until the service has
covered everything committed before it started and reports what the service found (`delegate`); only
when no service runs, or it does not catch up within the deadline, does the command run itself.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from analyzer import alerts

Log = Callable[[str], None]


@dataclass
class FollowOptions:
    store: str | None = None
    rules_dir: str | None = None
    only: list[str] | None = None
    eve: str | None = None
    webhook: str | None = None
    interval: float = 1.0  # how often to look for new commits
    compact_every: float = 3600.0  # store maintenance period (0: never)
    quiet: bool = False
    max_runs: int | None = None  # stop after this many runs that wrote something (tests)


@dataclass
class FollowStats:
    runs: int = 0
    skipped: int = 0
    findings: int = 0
    failures: int = 0
    compactions: int = 0
    last_error: str = ""
    rows: dict[str, int] = field(default_factory=dict)


@contextlib.contextmanager
def analyze_lock(store, *, wait: float | None = None, log: Log | None = None) -> Iterator[None]:
    """One analyze run at a time per local store (two would append the same ledger entries): a second
    one waits for the first (`wait` seconds at most, None: as long as it takes), saying so after 1 s."""
    from collector.store.locking import LockTimeout, StoreLock

    root = store.location.root
    if root is None:  # a fleet catalog: one central analyzer, no local lock to take
        yield
        return
    lock = StoreLock(root, "analyze")
    try:
        lock.acquire("analyze", 1.0 if wait is None or wait > 1.0 else wait)
    except LockTimeout:
        if wait is not None and wait <= 1.0:
            raise
        if log is not None:
            log(f"waiting for another analyze run to finish ({lock.holder() or 'holder unknown'})")
        lock.acquire("analyze", None if wait is None else wait - 1.0)
    try:
        yield
    finally:
        lock.release()


@dataclass
class Delegated:
    """What the analyzer service did for a person's `routerwatch analyze`: its runs since the command
    started (findings, new rows, the ledger head after them)."""

    pid: str
    run_id: str
    findings: list[dict]
    new_rows: dict[str, int]
    suppressed: int
    duration_s: float
    ledger_seq: int
    ledger_head: str
    preview: bool = False  # the service's runs are stored runs (engine.RunResult's field, for the CLI)


def service_holder(store) -> str | None:
    """Who runs the analyzer service on this store ('pid N: ...'), or None when nobody does."""
    from collector.store.locking import LockTimeout, StoreLock

    root = store.location.root
    if root is None:
        return None
    lock = StoreLock(root, "service")
    try:
        lock.acquire("probe", 0.0)
    except LockTimeout:
        return lock.holder() or "pid unknown"
    lock.release()
    return None


def delegate(store, rules, *, timeout: float, log: Log | None = None) -> Delegated | None:
    """If an analyzer service follows this store, wait until it has analysed everything committed
    before now and return what its runs found; None when no service runs or it did not catch up within
    `timeout` seconds (then the caller runs the analysis itself)."""
    from analyzer.engine import current_watermarks, last_watermarks, relevant_sources

    holder = service_holder(store)
    if holder is None:
        return None
    t0 = time.monotonic()
    relevant = relevant_sources(rules)

    def read_state(con):
        lo = last_watermarks(con)
        start = con.execute("SELECT coalesce(max(rowid), -1) FROM analyzer_runs").fetchone()[0]
        return lo, current_watermarks(con, relevant, lo), start

    lo, target, first_run_row = store.read(read_state)
    said = False
    while True:
        if all(int(lo.get(t, -1)) >= target[t] for t in relevant):
            break
        if time.monotonic() - t0 > timeout:
            return None
        if not said and log is not None and time.monotonic() - t0 > 1.0:
            log(f"the analyzer service ({holder}) is analysing the new rows; waiting for it")
            said = True
        time.sleep(0.3)
        lo = store.read(last_watermarks)

    def runs(con):
        cur = con.execute("SELECT run_id, new_rows, suppressed, ledger_seq, ledger_head FROM analyzer_runs "
                          "WHERE rowid > ? ORDER BY rowid", [first_run_row])
        rows = cur.fetchall()
        cur = con.execute("SELECT * FROM findings WHERE run_id IN (SELECT unnest(?)) ORDER BY ts",
                          [[r[0] for r in rows]])
        names = [d[0] for d in cur.description]
        return rows, [dict(zip(names, f, strict=True)) for f in cur.fetchall()]

    import json

    rows, findings = store.read(runs)
    new_rows: dict[str, int] = {}
    for r in rows:
        for t, n in json.loads(r[1] or "{}").items():
            new_rows[t] = new_rows.get(t, 0) + int(n)
    if rows:
        seq, head = int(rows[-1][3]), rows[-1][4]
    else:
        from analyzer import ledger

        seq, head = store.read(ledger.head)
    return Delegated(holder.split(":")[0], rows[-1][0] if rows else "", findings, new_rows,
                     sum(int(r[2] or 0) for r in rows), time.monotonic() - t0, seq, head)


def emit(res, eve: str | None, webhook: str | None, log: Log) -> None:
    """EVE lines (alerts + the ledger head) and the webhook for one run's findings."""
    events = [alerts.eve_alert(f) for f in res.findings]
    if eve:
        alerts.write_eve(eve, [*events, alerts.eve_ledger(res.run_id, res.ledger_seq, res.ledger_head)])
    if webhook and events:
        try:
            alerts.post_webhook(webhook, events)
        except OSError as exc:
            log(f"warning: {exc}")


def _signature(paths: list[Path]) -> tuple:
    """What changes when a catalog or rules file is edited, added or removed."""
    out = []
    for p in paths:
        try:
            if p.is_dir():
                out += [(str(f), f.stat().st_mtime_ns) for f in sorted(p.glob("*.sql"))]
            else:
                out.append((str(p), p.stat().st_mtime_ns))
        except OSError:
            out.append((str(p), None))
    return tuple(out)


def _last_run(store, catalog, rules, seen: int | None, stats: FollowStats, opts: FollowOptions, log: Log) -> None:
    """On stop, one more run over what was committed since the last one (the collector's final batch,
    when `up` stops the collector first), so nothing stays unanalysed; bounded, and never fatal."""
    from analyzer.engine import analyze

    try:
        if store.snapshot_id() == seen:
            return
        with analyze_lock(store, wait=30.0):
            res = analyze(store, catalog, rules, skip_if_nothing_new=True)
        if res is not None:
            stats.runs += 1
            stats.findings += len(res.findings)
            emit(res, opts.eve, opts.webhook, log)
    except Exception as exc:  # noqa: BLE001 - stopping anyway; the next start analyses what is left
        log(f"last run skipped: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}")


@dataclass
class _Loop:
    """What `follow` carries from one round to the next."""

    rules_dirs: list[Path]
    watched: list[Path]  # catalog and rules files: reloaded when their signature changes
    loaded: tuple | None = None
    catalog: object = None
    rules: list | None = None
    seen: int | None = None  # the snapshot id the last run (or skip) covered
    relevant: frozenset[str] = frozenset()  # the tables the rules and the enrichment read
    not_before: float = 0.0  # a run that used c CPU seconds is followed by c seconds of rest: <= 50% of a CPU
    rested: bool = True  # whether the last run waited out its rest (an URGENT commit may skip one rest in two)
    next_compact: float | None = None
    next_file_check: float = 0.0  # when to count the store's data files again (`COMPACT_AT_FILES`)
    files_left: int = 0  # the data files the last compaction left


def _say(msg: str) -> None:
    print(f"routerwatch analyze: {msg}", file=sys.stderr, flush=True)


def follow(opts: FollowOptions, stop: threading.Event, log: Log | None = None) -> FollowStats:
    """Analyze continuously until `stop` is set. Returns what it did."""
    from analyzer.engine import AnalyzeError
    from analyzer.rules import RuleError
    from analyzer.rules.loader import builtin_rules_dir
    from collector.catalog.loader import CatalogError, user_catalog_path
    from collector.store import Store
    from collector.store.connection import is_transient
    from collector.store.errors import StoreError

    log = log or _say
    stats = FollowStats()
    store = Store.open(opts.store)
    root = store.location.root
    service, stopped = _service_lock(root, stop, log)
    if stopped:
        store.close()
        return stats
    rules_dirs = [Path(opts.rules_dir)] if opts.rules_dir else ([root / "rules"] if root is not None else [])
    loop = _Loop(rules_dirs, [user_catalog_path(root), builtin_rules_dir(), *rules_dirs],
                 next_compact=time.monotonic() + opts.compact_every if opts.compact_every > 0 else None)
    backoff = 0.0
    last_note = time.monotonic()
    if not opts.quiet:
        log(f"following {store.location.spec} (checking for new commits every {opts.interval:g} s)")
    try:
        while not stop.is_set():
            try:
                if _round(store, root, loop, opts, stats, log):
                    break
                backoff = 0.0
            except (AnalyzeError, CatalogError, RuleError, StoreError) as exc:
                stats.failures += 1
                stats.last_error = str(exc)
                backoff = min(60.0, max(2.0, backoff * 2))
                log(f"error: {exc} (trying again in {backoff:.0f} s)")
            except Exception as exc:  # noqa: BLE001 - a service reports and goes on; the next run starts afresh
                stats.failures += 1
                stats.last_error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                backoff = min(60.0, max(1.0 if is_transient(exc) else 5.0, backoff * 2))
                log(f"error: {stats.last_error} (trying again in {backoff:.0f} s)")
            if not opts.quiet and time.monotonic() - last_note >= 600:
                last_note = time.monotonic()
                log(f"{stats.runs} runs, {stats.findings} findings, {stats.failures} failed runs so far")
            stop.wait(max(opts.interval, backoff))
        if loop.catalog is not None and loop.rules is not None:
            _last_run(store, loop.catalog, loop.rules, loop.seen, stats, opts, log)
    finally:
        if service is not None:
            service.release()
        store.close()
    if not opts.quiet:
        log(f"stopped: {stats.runs} runs, {stats.findings} findings, {stats.failures} failed runs")
    return stats


def _service_lock(root: Path | None, stop: threading.Event, log: Log) -> tuple[object | None, bool]:
    """The store's service lock, held while following (a person's `routerwatch analyze` sees it and
    lets the service do the work); waits while another service holds it. Returns (lock or None for a
    store without a root, whether `stop` was set while waiting)."""
    if root is None:
        return None, False
    from collector.store.locking import LockTimeout, StoreLock

    service = StoreLock(root, "service")
    try:
        service.acquire("analyze --follow", 0.0)
    except LockTimeout:
        log(f"another analyzer service follows this store ({service.holder()}); waiting for it to stop")
        while True:
            try:
                service.acquire("analyze --follow", 1.0)
                break
            except LockTimeout:
                if stop.is_set():
                    return service, True
    return service, False


def _round(store, root: Path | None, loop: _Loop, opts: FollowOptions, stats: FollowStats, log: Log) -> bool:
    """One poll: reload catalog and rules if their files changed, analyze if the store's snapshot
    moved (and the CPU rest is over), compact when due. True when `max_runs` is reached."""
    from analyzer.engine import analyze, relevant_sources
    from analyzer.rules import load_rules
    from collector.catalog import load_catalog

    sig = _signature(loop.watched)
    if sig != loop.loaded:
        loop.catalog = load_catalog(root)
        loop.rules = load_rules(*[d for d in loop.rules_dirs if d.is_dir()], only=opts.only)
        loop.relevant = frozenset(relevant_sources(loop.rules))
        if loop.loaded is not None and not opts.quiet:
            log(f"reloaded the catalog and {len(loop.rules)} rules")
        loop.loaded, loop.seen = sig, None  # new rules or catalog: look again
    resting = time.monotonic() < loop.not_before
    snap = store.snapshot_id() if not resting or loop.rested else loop.seen
    inserted = _inserted_since(store, loop.seen) if snap != loop.seen else None
    if resting and snap != loop.seen and not (inserted and inserted & URGENT):
        snap = loop.seen  # nothing a person waits for: the rest goes on
    # only tables neither the rules nor the enrichment read took rows (the collector's statistics
    # every few seconds, the service's own runs): the run's watermark query (~150 ms of CPU on every
    # commit, most of an idle service's 2.5 CPU-s a minute) would find nothing new
    if snap != loop.seen and inserted is not None and not (inserted & loop.relevant):
        loop.seen = snap  # only tables no rule reads took rows: the run would find nothing new
        stats.skipped += 1
    elif snap != loop.seen:
        with analyze_lock(store, log=log if not opts.quiet else None):
            cpu0 = time.process_time()
            res = analyze(store, loop.catalog, loop.rules, skip_if_nothing_new=True)
            cpu = time.process_time() - cpu0
        loop.seen = snap
        if res is None:
            stats.skipped += 1
        else:
            loop.rested = not resting
            loop.not_before = time.monotonic() + cpu
            _record(res, stats, opts, log)
            if opts.max_runs is not None and stats.runs >= opts.max_runs:
                return True
    _maintain(store, loop, opts, stats, log)
    return False


# DuckLake reads a table's whole file list and every file's column statistics for each query that
# scans it, so every analyzer query slows as files pile up between maintenance rounds: a
# one-exchange run took 1.3-1.5 CPU-s on a new store and 3.9-5.1 after 1,200 commits of collector
# size (2,416 files); compaction (4.2 s) brought it back to 1.3-1.7. The service compacts early once
# the latest snapshot references this many files more than the last compaction left (a big store's
# files that are already as large as DuckLake makes them stay; it looks every FILE_CHECK_EVERY_S).
COMPACT_AT_FILES = 400
FILE_CHECK_EVERY_S = 30.0


def _maintain(store, loop: _Loop, opts: FollowOptions, stats: FollowStats, log: Log) -> None:
    """The store's maintenance, when its period is over or the files have piled up (`COMPACT_AT_FILES`)."""
    if loop.next_compact is None:
        return
    now = time.monotonic()
    due = now >= loop.next_compact
    if not due and now >= loop.next_file_check:
        loop.next_file_check = now + FILE_CHECK_EVERY_S
        files = store.data_file_count()
        due = files is not None and files >= loop.files_left + COMPACT_AT_FILES
        if due and not opts.quiet:
            log(f"compacting early: {files} data files (every query reads their list)")
    if due:
        from collector.store.maintainer import holder_name, maintain_once

        # on a fleet store, under the maintenance lease: one process compacts per round
        if maintain_once(store, holder=holder_name(), period_s=opts.compact_every, expire_hours=24.0, log=log).ran:
            stats.compactions += 1
        loop.files_left = store.data_file_count() or 0
        loop.next_compact = time.monotonic() + opts.compact_every


# Commits a person waits on: an agent's exchanges with a router, their tool calls, the credentials
# they carried, a canary planted. They cut the CPU rest short (one rest in two: the service then uses
# at most two thirds of a CPU while they keep coming): their finding is the point of the appliance,
# and on a busy host the rest adds seconds to it.
URGENT = frozenset({"llm_exchanges", "tool_calls", "secrets_seen", "canaries"})


def _inserted_since(store, seen: int | None) -> set[str] | None:
    """The tables the commits after snapshot `seen` inserted into, or None when there is no last run
    or the catalog cannot say (then a run decides, and an `URGENT` commit waits out the rest)."""
    if seen is None:
        return None
    try:
        return store.inserted_since(seen)
    except Exception:  # noqa: BLE001 - the run's own checks decide then
        return None


def _record(res, stats: FollowStats, opts: FollowOptions, log: Log) -> None:
    """A run that wrote something: counted, its alerts sent, its first findings logged."""
    stats.runs += 1
    stats.findings += len(res.findings)
    for t, n in res.new_rows.items():
        stats.rows[t] = stats.rows.get(t, 0) + n
    emit(res, opts.eve, opts.webhook, log)
    if os.environ.get("ROUTERWATCH_ANALYZE_TIMING"):  # where a run's wall time went, slowest steps first
        steps = sorted(res.timings.items(), key=lambda kv: -kv[1])[:8]
        log(f"run {res.run_id}: {res.duration_s:.2f} s, write lock {res.locked_s:.2f} s, "
            + ", ".join(f"{k} {v:.2f}" for k, v in steps))
    if res.findings and not opts.quiet:
        for f in sorted(res.findings, key=lambda f: (str(f["ts"]), f["rule_id"]))[:20]:
            log(f"[{f['severity']}] {f['rule_id']}: {f['summary'] or f['title']}")
