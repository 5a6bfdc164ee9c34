"""Live key-log decryption: closed flows of wrapped agents -> capture segments -> decode_capture.

Per batch of closed connections: the capture segments covering their lifetime are concatenated
(a connection that crossed a rotation needs all of them), cut down to those connections with a
tcpdump read filter, and handed with the run's key log to collector.tls.pipeline.decode_capture.
Connections whose plaintext already came through the libssl uprobes are skipped (one exchange,
one row set).

One connection, one flow: the decryptor claims the flow rows of the connections it queues (the
collector writes every other flow at once) and writes each one after its decryption, as a single
`ebpf+pcap` row when the capture held the connection (the eBPF row's pid, exact byte counts,
state and direction, plus the capture's SNI as server_name and the segment as capture_id), or
unchanged (`ebpf`) when it did not. The link is the Community ID plus time, as in ingest.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from collector.capture.community_id import community_id
from collector.live.capture import CaptureRing
from collector.live.keylog_watch import KeylogRun, KeylogWatcher
from collector.processes import ProcessTable
from collector.tls.streams import StreamMeta

SETTLE_S = 2.0  # packets of a just-closed connection may still be in dumpcap's buffer
LINK_SLACK_S = 2.0  # a capture stream is an eBPF flow's when its first packet is within the flow's lifetime +- this


def _epoch(ts: datetime) -> float:
    """A flow's naive-UTC timestamp -> epoch seconds (whatever the host's time zone)."""
    return ts.replace(tzinfo=UTC).timestamp()
MAX_BATCH = 200
# what mergecap / tcpdump say when a file ends inside a packet: the segment dumpcap is still writing
# ends that way whenever the host is busy; both have written every whole packet before it by then
_CUT_SHORT = ("cut short in the middle of a packet", "truncated dump file")


def _run_cut_ok(cmd: list[str]) -> None:
    """Run a capture tool; a non-zero exit is an error unless it only reports a file cut mid-packet."""
    p = subprocess.run(cmd, capture_output=True, timeout=120)
    if p.returncode != 0 and not any(m.encode() in p.stderr for m in _CUT_SHORT):
        raise subprocess.CalledProcessError(p.returncode, cmd, p.stdout, p.stderr)


class LiveDecryptor:
    def __init__(self, ring: CaptureRing, watcher: KeylogWatcher, processes: ProcessTable, host_id: str,
                 secret_key: bytes, already_decoded: Callable[[str], bool] = lambda uid: False,
                 max_queue: int = 20_000, log: Callable[[str], None] = lambda msg: None):
        self.ring = ring
        self.watcher = watcher
        self.processes = processes
        self.host_id = host_id
        self.secret_key = secret_key
        self.already_decoded = already_decoded
        self.max_queue = max_queue
        self.log = log
        self.queue: deque[tuple[float, dict, KeylogRun, bool]] = deque()  # (queued at, flow row, run, owns the row)
        self.counts = {"keylog_flows_queued": 0, "keylog_batches": 0, "keylog_flows_decrypted": 0,
                       "keylog_decrypt_errors": 0, "keylog_flows_skipped_uprobe": 0, "keylog_flows_dropped": 0,
                       "flows_ebpf_pcap": 0}
        self.tmp = Path(tempfile.mkdtemp(prefix="rw-decrypt-"))

    def closed(self, flows: pa.Table) -> set[str]:
        """Queue the outbound flows of wrapped agents (or every outbound flow for --keylog files).
        Returns the flow_uids claimed: their rows are written by this decryptor, after decryption."""
        self.watcher.scan()
        runs = self.watcher.by_pid()
        glob = self.watcher.global_runs()
        claimed: set[str] = set()
        if (not runs and not glob) or flows.num_rows == 0:
            return claimed
        cols = flows.to_pylist()
        owner: dict[tuple, KeylogRun | None] = {}
        for f in cols:
            if f["direction"] != "outbound" or not f["bytes_out"]:
                continue
            run = None
            if f["pid"] is not None and runs:
                key = (f["pid"], f["process_start"])
                if key not in owner:
                    chain = self.processes.chain(f["pid"], f["process_start"])
                    owner[key] = next((runs[p.pid] for p in chain if p.pid in runs), None)
                run = owner[key]
            for r in [run] if run else glob:
                if len(self.queue) >= self.max_queue:  # bounded memory: a backlog is counted, never silent
                    self.counts["keylog_flows_dropped"] += 1
                    continue
                r.pending += 1
                # the first run queued for a flow writes its row; others (several --keylog files) only decrypt
                self.queue.append((time.monotonic(), f, r, f["flow_uid"] not in claimed))
                claimed.add(f["flow_uid"])
                self.counts["keylog_flows_queued"] += 1
        return claimed

    def poll(self, final: bool = False):
        out: dict[str, list] = {}
        now = time.monotonic()
        while self.queue and (final or now - self.queue[0][0] >= SETTLE_S):
            batch: dict[str, list[dict]] = {}
            runs: dict[str, KeylogRun] = {}
            owned: list[dict] = []  # flow rows this decryptor writes (claimed in closed())
            while self.queue and len(batch) < MAX_BATCH and (final or now - self.queue[0][0] >= SETTLE_S):
                _t, f, run, owns = self.queue.popleft()
                run.pending -= 1
                if owns:
                    owned.append(f)
                if self.already_decoded(f["flow_uid"]):
                    self.counts["keylog_flows_skipped_uprobe"] += 1
                    continue
                batch.setdefault(run.run_id, []).append(f)
                runs[run.run_id] = run
            seen: dict[str, tuple[StreamMeta, str]] = {}
            try:
                for rid, flows in batch.items():
                    for table, rows in self._decrypt(runs[rid], flows, seen):
                        out.setdefault(table, []).extend(rows)
            except Exception as e:  # counted; the claimed flow rows below are written all the same
                self._error("batch", e)
            out.setdefault("flows", []).extend(self._merged(f, seen.get(f["flow_uid"])) for f in owned)
        try:
            self.watcher.scan()
            self.watcher.cleanup()
        except OSError as e:
            self._error("key-log scan", e)
        return list(out.items())

    def _error(self, what: str, exc: BaseException | None = None) -> None:
        """Count a failed decryption step and say why (the first 5, then every 100th): a counter alone
        does not tell an operator what to fix. Messages name files, tools and flows, never key material."""
        self.counts["keylog_decrypt_errors"] += 1
        n = self.counts["keylog_decrypt_errors"]
        if n <= 5 or n % 100 == 0:
            why = f": {type(exc).__name__}: {str(exc)[:300]}" if exc is not None else ""
            self.log(f"live decryption failed ({n} so far): {what}{why}")

    def _merged(self, f: dict, hit: tuple[StreamMeta, str] | None) -> dict:
        """The eBPF flow row, completed from the capture when the capture held the connection."""
        if hit is None:
            return f
        meta, segment = hit
        self.counts["flows_ebpf_pcap"] += 1
        return {**f, "source": "ebpf+pcap", "server_name": meta.server_name or f.get("server_name"),
                "capture_id": segment}

    def _decrypt(self, run: KeylogRun, flows: list[dict],
                 seen: dict[str, tuple[StreamMeta, str]] | None = None) -> list[tuple[str, list[dict]]]:
        """Decrypt `flows` from the ring; `seen` gets flow_uid -> (capture stream, segment name) for
        each of them the capture held."""
        from collector.tls.pipeline import decode_capture

        self.counts["keylog_batches"] += 1
        t0 = min(_epoch(f["ts_start"]) for f in flows) - 2
        t1 = max(_epoch(f["ts_end"]) for f in flows) + 2
        segs = self.ring.covering(t0, t1)
        if not segs:
            self._error(f"no capture segment covers {len(flows)} flow(s) closed between {t0:.0f} and {t1:.0f}")
            return []
        merged = self.tmp / "merged.pcap"
        cut = self.tmp / "flows.pcap"
        try:
            if len(segs) == 1:
                src = segs[0]
            else:
                _run_cut_ok(["mergecap", "-a", "-F", "pcap", "-w", str(merged), *map(str, segs)])
                src = merged
            expr = " or ".join(
                f"(host {f['src_ip']} and host {f['dst_ip']} and port {f['src_port']} and port {f['dst_port']})"
                for f in flows)
            _run_cut_ok([shutil.which("tcpdump") or "tcpdump", "-r", str(src), "-w", str(cut), f"tcp and ({expr})"])
            table = pa.Table.from_pylist(flows)
            res = decode_capture(cut, run.keylog, flows=table, host_id=self.host_id, secret_key=self.secret_key,
                                 run_id=f"live-{run.run_id}")
        except Exception as e:
            if isinstance(e, subprocess.CalledProcessError) and e.stderr:
                e = RuntimeError(f"{Path(e.cmd[0]).name} exited {e.returncode}: "
                                 f"{e.stderr.decode(errors='replace').strip()[-300:]}")
            self._error(f"{len(flows)} flow(s) of run {run.run_id}", e)
            return []
        finally:
            for p in (merged, cut):
                p.unlink(missing_ok=True)
        wanted = {f["flow_uid"] for f in flows}
        self.counts["keylog_flows_decrypted"] += len(res.decrypted_flow_uids & wanted)
        if seen is not None:  # the capture's streams of these flows: same Community ID, within their lifetime
            by_cid: dict[str, list[dict]] = {}
            for f in flows:
                by_cid.setdefault(f["community_id"], []).append(f)
            for m in res.streams:
                try:
                    cid = community_id("tcp", m.src_ip, m.src_port, m.dst_ip, m.dst_port)
                except ValueError:
                    continue
                for f in by_cid.get(cid, ()):
                    if _epoch(f["ts_start"]) - LINK_SLACK_S <= m.ts_first <= _epoch(f["ts_end"]) + LINK_SLACK_S:
                        seen[f["flow_uid"]] = (m, segs[0].name)
        pids = {f["flow_uid"]: f["pid"] for f in flows}
        for r in res.tables.get("llm_exchanges", []):  # the capture was cut to these flows: all rows are theirs
            if r.get("pid") is None:
                r["pid"] = pids.get(r.get("flow_uid"))
        return [(t, rows) for t, rows in res.tables.items() if rows]

    # -- background worker: tshark runs for seconds; the probe loop must never wait for it --------
    def start(self, sink: Callable[[str, list[dict]], None], period: float = 0.5) -> None:
        self._sink = sink
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period,), name="routerwatch-decrypt", daemon=True)
        self._thread.start()

    def _run(self, period: float) -> None:
        while not self._stop.wait(period):
            self._drain(final=False)

    def _drain(self, final: bool) -> None:
        try:
            for table, rows in self.poll(final=final):
                self._sink(table, rows)
        except Exception as e:
            self._error("writing decrypted rows", e)

    def backlog(self) -> int:
        return len(self.queue)

    def counters(self) -> dict[str, int]:
        return {**self.counts, "keylog_runs_deleted": self.watcher.deleted}

    def close(self) -> None:
        """Finish every queued flow (SIGTERM flushes everything), then remove the scratch files."""
        if getattr(self, "_thread", None) is not None:
            self._stop.set()
            self._thread.join(timeout=300)
            self._drain(final=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
