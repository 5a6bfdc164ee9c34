"""`routerwatch collect`: the live loop. Probes (or the degraded sources) -> rows -> BatchWriter.

The loop drains the probes' ring buffer every `poll` seconds (no per-event wakeups), converts each
batch vectorised, hands rows to a background BatchWriter (commits at most `max_delay` behind), and
writes a `collector_stats` row every `interval`. SIGTERM/SIGINT drain and flush everything; a kill -9
loses at most the open batch (each flush is one transaction).
"""

from __future__ import annotations

import mmap
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pyarrow as pa

from collector.config import host_id as resolve_host_id
from collector.ebpf import events as ev
from collector.live.ebpf_rows import RowBuilder
from collector.live.lean import trim_heap
from collector.live.stats import Stats
from collector.processes import ProcessTable
from collector.secrets import Fingerprinter
from collector.store import Store, StoreError
from collector.store.connection import StoreLocation
from collector.store.writer import BatchWriter

# the most of the probes' ring one step copies into Python objects: a full ring copied at once
# would add its size again to the collector's memory; the rest waits in the ring (kernel memory
# allocated anyway) and the next step starts at once
DRAIN_BYTES = 4 << 20

if TYPE_CHECKING:
    from collector.store.spool import SpoolingWriter


@dataclass
class CollectOptions:
    store: str | None = None
    host_id: str | None = None
    interval: float = 10.0  # collector_stats period
    duration: float | None = None  # stop after this many seconds (None: until signalled)
    poll: float = 0.2  # ring-buffer drain period
    max_delay: float = 2.0  # store lag bound (<= 5 s)
    ebpf: bool = True
    ssl: bool = True  # libssl plaintext uprobes
    dns_send: bool = True  # DNS queries of processes with their own resolver, read at each UDP send
    ssl_libraries: list[str] = field(default_factory=list)
    capture: bool = True  # packet capture ring + key-log decryption
    capture_dir: str | None = None
    capture_iface: str = "any"
    capture_retain_mb: int = 512
    capture_filter: str | None = None
    keylogs: list[str] = field(default_factory=list)  # key-log files applying to every outbound flow
    keylog_dir: str | None = None  # where `routerwatch wrap` runs live (default collector.config.keylog_dir())
    max_rows: int = 250_000  # writer flushes at this many pending rows (bounds memory; > 2 s of 100k/s)
    netns: str | None = None  # scope: record only this network namespace (name, pid:N or path)
    cgroup: str | None = None  # scope: record only tasks in this cgroup (path under the cgroup v2 mount)
    buffer_dir: str | None = None  # spool root while the store is away (default: fleet stores only, see spool.py)
    buffer_mb: int = 1024  # spool bound; beyond it batches are dropped and counted
    ring_mb: int = 32  # the probes' ring buffer (a power of two; docs/performance.md, collector memory)
    quiet: bool = False


class Collector:
    """One live collector process. `run()` blocks until stopped; `stop()` is signal-safe."""

    def __init__(self, options: CollectOptions):
        self.o = options
        self.host_id = resolve_host_id(options.host_id)
        self._stop = threading.Event()
        self.mode = "starting"
        self.reason = ""
        self.probes = None
        self.sources: list = []  # degraded-mode sources (procnet) and extras (capture)
        self.decryptor = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def _log(self, msg: str) -> None:
        if not self.o.quiet:
            print(f"routerwatch collect: {msg}", file=sys.stderr, flush=True)

    def open(self) -> None:
        """Start everything `run()` drains, in order: scope and store, the writer, the probes (or the
        degraded /proc/net poller), the plaintext assembler, the capture ring with key-log decryption;
        then the stats row and the start-up line."""
        from collector.live.scope import resolve

        self.scope = resolve(self.o.netns, self.o.cgroup)  # ScopeError before anything starts
        self.location = StoreLocation.parse(self.o.store)  # a bad spec: StoreError before anything starts
        self.store = self._open_store()
        self.fp = Fingerprinter(self.location.secret_key())
        self.clock = ev.Clock.now()
        self.processes = ProcessTable(self.host_id, self.fp, btime=self.clock.boot_epoch)
        self.rows = RowBuilder(self.host_id, self.processes, self.clock)
        self.writer = self._open_writer()
        self._open_probes()
        self.plaintext = None
        if self.probes is not None and self.o.ssl:
            from collector.live.plaintext import PlaintextAssembler

            # exchanges of connections still open are emitted once finished, named by the flow their
            # socket's probes entry says it will be (collector.live.plaintext)
            self.plaintext = PlaintextAssembler(self.host_id, self.fp, self.clock, live_flow=self._live_flow)
        if self.o.capture:
            self._open_capture()
        self._announce()

    def _buffered(self) -> bool:
        """Batches wait on disk while the store is away: a fleet store, or any store with --buffer-dir."""
        return self.location.root is None or bool(self.o.buffer_dir)

    def _open_store(self) -> Store | None:
        """The store, or None when a buffered store does not answer at start (PostgreSQL or the
        object store restarting while this collector starts, as after a host reboot): the collector
        records into its buffer from the first second and the writer catches up once the store
        answers. Only a store without a buffer must answer now (an error then is one line)."""
        try:
            return Store.open(self.o.store)
        except StoreError as exc:
            if not self._buffered():
                raise
            self._log(f"store {self.location.display} unreachable at start ({str(exc).splitlines()[0][:300]}); "
                      "recording into the buffer until it answers")
            return None

    def _open_writer(self) -> BatchWriter | SpoolingWriter:
        """A BatchWriter on a local store; a SpoolingWriter (same interface) on a fleet store or with
        --buffer-dir."""
        if self._buffered():
            # a remote store can go away (PostgreSQL restarting, object storage unreachable): batches
            # then wait on disk and are replayed exactly once when it answers again
            from pathlib import Path

            from collector.store.spool import SpoolingWriter, spool_dir_for

            spec = self.o.store
            root = Path(self.o.buffer_dir) if self.o.buffer_dir else None
            return SpoolingWriter(lambda: Store.open(spec), host_id=self.host_id, store=self.store,
                                  spool_dir=spool_dir_for(self.host_id, root),
                                  max_delay=min(self.o.max_delay, 5.0), max_rows=self.o.max_rows,
                                  max_spool_bytes=self.o.buffer_mb << 20, log=self._log)
        return BatchWriter(self.store, max_delay=min(self.o.max_delay, 5.0), max_rows=self.o.max_rows,
                           background=True)

    def _open_probes(self) -> None:
        """The eBPF probes, else (whole host only: a scope needs eBPF) the degraded /proc/net poller."""
        if self.o.ebpf:
            from collector.ebpf.loader import ProbeError, ProbeOptions, Probes

            try:
                self.probes = Probes(ProbeOptions(ssl=self.o.ssl, ssl_libraries=self.o.ssl_libraries, dns_send=self.o.dns_send,
                                                 log=self._log, netns_inum=self.scope.netns_inum,
                                                 cgroup_id=self.scope.cgroup_id,
                                                 cgroup_level=self.scope.cgroup_level,
                                                 ringbuf_pages=(self.o.ring_mb << 20) // mmap.PAGESIZE))
                self.mode = "ebpf"
            except ProbeError as exc:
                self.reason = str(exc)
        else:
            self.reason = "disabled (--no-ebpf)"
        if self.probes is None and not self.scope.whole_host:
            from collector.live.scope import ScopeError

            if self.store is not None:
                self.store.close()
            raise ScopeError(f"a scoped collector ({self.scope.describe()}) needs eBPF: {self.reason}")
        if self.probes is None:
            from collector.live.procnet import ProcNetPoller

            self.mode = "procnet"
            self.sources.append(ProcNetPoller(self.host_id, self.processes, self.clock))

    def _open_capture(self) -> None:
        """The packet capture ring and, once it runs, the live key-log decryptor over it; a capture
        that cannot start is logged and the collector goes on without it."""
        try:
            from collector.live.capture import CaptureRing

            kw = {"bpf_filter": self.o.capture_filter} if self.o.capture_filter else {}
            ring = CaptureRing(self.o.capture_dir, iface=self.o.capture_iface, retain_mb=self.o.capture_retain_mb,
                               prefix=self.scope.command_prefix(), **kw)
            ring.start()
            self.sources.append(ring)
            self.mode += "+capture"
        except Exception as exc:  # no dumpcap/tcpdump or no capture rights: say so, keep going
            self._log(f"packet capture unavailable: {exc}")
            return
        from collector.live.decrypt import LiveDecryptor
        from collector.live.keylog_watch import KeylogWatcher

        watcher = KeylogWatcher(self.o.keylog_dir, self.o.keylogs)
        decoded = self.plaintext.decoded_flows if self.plaintext is not None else set()
        self.decryptor = LiveDecryptor(ring, watcher, self.processes, self.host_id, self.location.secret_key(),
                                       already_decoded=decoded.__contains__, log=self._log)
        self.decryptor.start(self.writer.add)

    def _announce(self) -> None:
        """The stats row's fixed facts and the start-up line (DEGRADED when eBPF is unavailable)."""
        from collector import __version__

        self.stats = Stats(self.host_id, self.mode, meta={
            "version": __version__, "pid": os.getpid(), "scope": self.scope.describe(),
            "started_at": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")})
        if self.probes is not None:
            self._log(f"mode={self.mode} store={self.location.display} scope={self.scope.describe()} "
                      f"probes: {', '.join(self.probes.attached)}")
        else:
            self._log(f"mode={self.mode} (DEGRADED: eBPF unavailable: {self.reason}; flows come from "
                      f"/proc/net polling without byte counts or short-lived processes) store={self.location.display}")

    def _live_flow(self, sk: int, first_ts: int) -> dict | None:
        state = self.probes.socket(sk) if self.probes is not None else None
        return self.rows.live_flow(state, sk, time.monotonic_ns(), opened_by=first_ts) if state else None

    def stop(self, *_: object) -> None:
        self._stop.set()

    def run(self) -> int:
        self.open()
        old = {s: signal.signal(s, self.stop) for s in (signal.SIGTERM, signal.SIGINT)} \
            if threading.current_thread() is threading.main_thread() else {}
        deadline = time.monotonic() + self.o.duration if self.o.duration else None
        next_stats = time.monotonic() + self.o.interval
        try:
            while not self._stop.is_set():
                self.step()
                now = time.monotonic()
                if now >= next_stats:
                    self.write_stats()
                    next_stats = now + self.o.interval
                if deadline is not None and now >= deadline:
                    break
                if self.probes is None or self.probes.pending() < DRAIN_BYTES:
                    self._stop.wait(self.o.poll)
        finally:
            self.close()
            for s, h in old.items():
                signal.signal(s, h)
        return 0

    def close(self) -> None:
        """Drain what the kernel still holds, flush every row, release probes and capture."""
        try:
            for src in self.sources:  # capture reports its drops on exit: stop it before the last stats
                try:
                    src.close()
                except Exception:
                    pass
            self.step(final=True)
            if self.decryptor is not None:
                self.decryptor.close()  # every queued connection decrypted before the last flush
            self.write_stats()
        finally:
            if self.probes is not None:
                self.probes.close()
            self.writer.close()
            if self.store is not None:
                self.store.close()
            self._log(f"stopped: {self.stats.totals.get('flows', 0)} flows, "
                      f"{self.stats.totals.get('processes', 0)} processes written")

    # -- work --------------------------------------------------------------------------------------
    def step(self, final: bool = False, drain_all: bool = False) -> None:
        if self.probes is not None:
            recs = self.probes.drain(None if final or drain_all else DRAIN_BYTES)
            self.stats.add("events", sum(len(v) for v in recs.values()))
            self.stats.add("exec_records", self.rows.execs(recs.get(ev.T_EXEC, [])))
            dns = self.rows.dns(recs.get(ev.T_DNS, []))
            if dns:
                self.writer.add("dns", dns)
                self.stats.add("dns", len(dns))
            if recs.get(ev.T_DNSQ):
                queries = self.rows.dns_queries(recs[ev.T_DNSQ])
                if queries.num_rows:
                    self.writer.add("dns", queries)
                    self.stats.add("dns", queries.num_rows)
            if self.plaintext is not None and recs.get(ev.T_SSL):
                self.plaintext.add(recs[ev.T_SSL])
            conns = recs.get(ev.T_CONN, [])
            if conns:
                flows, arr = self.rows.flows(conns)
                self.stats.add("conn_recorded", len(conns))
                self.stats.add("flows", flows.num_rows)
                if self.plaintext is not None:
                    self.plaintext.closed(arr, flows)
                self._write_flows(flows)
        for src in self.sources:
            for table, rows in src.poll(final=final):
                if table == "flows":
                    self.stats.add("flows", len(rows) if isinstance(rows, list) else rows.num_rows)
                    self._write_flows(rows)
                else:
                    self.writer.add(table, rows)
        if self.plaintext is not None:
            for table, rows in self.plaintext.poll(final=final):
                self.writer.add(table, rows)
                self.stats.add(f"plaintext_{table}", len(rows) if isinstance(rows, list) else rows.num_rows)
        procs, secrets = self.processes.take_rows()
        if procs:
            self.writer.add("processes", procs)
            self.stats.add("processes", len(procs))
        if secrets:
            self.writer.add("secrets_seen", secrets)

    def _write_flows(self, rows) -> None:
        """Closed connections -> the writer, except those the decryptor claims: it writes each of
        those once decrypted, as one `ebpf+pcap` row with what the capture adds (one connection, one flow)."""
        if self.decryptor is None:
            self.writer.add("flows", rows)
            return
        from collector.store.schema import conform

        table = conform("flows", rows) if isinstance(rows, list) else rows
        claimed = self.decryptor.closed(table)
        if claimed:
            import pyarrow.compute as pc

            table = table.filter(pc.invert(pc.is_in(table.column("flow_uid"), pa.array(list(claimed), pa.string()))))
        self.writer.add("flows", table)

    def write_stats(self) -> None:
        kernel = None
        if self.probes is not None:
            # snapshot the kernel's counters, then drain: every event they count is then recorded
            kernel = self.probes.counters()
            self.step(drain_all=True)
        backlog = self.plaintext.backlog() if self.plaintext is not None else 0
        if self.decryptor is not None:
            backlog += self.decryptor.backlog()
            for k, v in self.decryptor.counters().items():
                self.stats.set(k, v)
        if self.plaintext is not None:
            for k, v in self.plaintext.counters().items():
                self.stats.set(k, v)
        if self.probes is not None:
            for k, v in self.probes.attach_counters().items():  # Go binaries probed / refused
                self.stats.set(k, v)
        for src in self.sources:
            for k, v in getattr(src, "counters", lambda: {})().items():
                self.stats.set(k, v)
            backlog += getattr(src, "backlog", lambda: 0)()
        for k, v in getattr(self.writer, "counters", lambda: {})().items():  # store buffering (fleet stores)
            self.stats.set(k, v)
        self.writer.add("collector_stats", [self.stats.row(decrypt_backlog=backlog, kernel=kernel)])
        trim_heap()


def collect(options: CollectOptions) -> int:
    return Collector(options).run()
