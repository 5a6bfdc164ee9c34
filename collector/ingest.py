"""Offline capture ingest: a pcap/pcapng (+ key log) -> flows, dns, tls (+ decrypted tables) in the store.

Who does what, so no Python object touches every packet:
- a Python loop only finds record offsets (pcap.py / pcapng.py); numpy gathers every header field
  (headers.py), assigns flows and reduces each flow's packets to its counters and history
  (flows.py), and reads ServerHellos and ClientHellos that fit their first segment (tlspeek.py) and
  DNS-over-UDP messages (flows.read_dns: dnspeek.py, protocols/dns.py parse_like_tshark);
- tshark dissects a small pcapng holding only the packets that need a real dissector (DNS the native
  readers decline, over TCP or fragmented, TLS hellos that span segments, QUIC Initials), in a
  background thread, and starts only when there are such packets;
- numpy joins DNS names to flows (as of each flow's start); results are written in Arrow batches that commit separately,
  so readers see a long ingest grow.
Re-ingesting the same bytes adds nothing unless a key log not used on them before comes along: the
idempotency key is (host, content sha256, keyed digest of the key log); see docs/decryption.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import mmap
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from collector.capture import arrow_strings, dissect, flows, headers, tshark
from collector.capture.records import MappedFile, NotACapture, Records, read_records
from collector.capture.source import DEFAULT_WAIT_S, CaptureSource, CaptureUnavailable
from collector.config import host_id as resolve_host_id
from collector.live.lean import trim_heap
from collector.protocols.dns import DnsMessage
from collector.store.schema import conform

if TYPE_CHECKING:
    from collector.store import Store

PROGRESS_MIN_BYTES = 32 << 20
DEFAULT_BATCH_ROWS = 50_000
PARALLEL_TSHARK_PACKETS = 30_000  # selected packets: a second tshark process from here (~20 us a packet each)
EARLY_TSHARK_PACKETS = 20_000  # from here the DNS left to tshark gets its own process, before the selection
_warned_no_decrypt = False


class _Stages:
    """Wall and CPU time per stage, printed to stderr when $ROUTERWATCH_INGEST_TIMING is set."""

    def __init__(self) -> None:
        self.on = bool(os.environ.get("ROUTERWATCH_INGEST_TIMING"))
        self._t, self._c = time.monotonic(), time.process_time()

    def mark(self, name: str) -> None:
        if not self.on:
            return
        t, c = time.monotonic(), time.process_time()
        print(f"  {name:<22} wall {t - self._t:6.2f} s   cpu {c - self._c:6.2f} s   {_rss()}", file=sys.stderr)
        self._t, self._c = t, c


STAGES = _Stages()


def _rss() -> str:
    """This process's resident memory now and at its peak, anonymous and file-backed (the mapped
    capture counts there), from /proc/self/status."""
    try:
        with open("/proc/self/status") as f:
            kv = dict(line.split(":", 1) for line in f if line.startswith(("VmHWM", "RssAnon", "RssFile")))
    except OSError:
        return ""
    mb = {k: int(v.split()[0]) // 1024 for k, v in kv.items()}
    return f"anon {mb.get('RssAnon', 0)} MB  file {mb.get('RssFile', 0)} MB  peak {mb.get('VmHWM', 0)} MB"


class IngestError(Exception):
    """The capture cannot be ingested (missing, unreadable, not a capture, tshark missing)."""


@dataclass
class IngestResult:
    run_id: str
    status: str  # 'ok' | 'partial' | 'duplicate' | 'rekeyed' (stored before; a new key log added decryptions)
    file: str  # the capture's absolute path, or what a pipe was called ('<stdin>', the FIFO's path)
    sha256: str
    packets: int = 0
    file_bytes: int = 0
    flows: int = 0
    dns: int = 0
    tls: int = 0
    truncated: bool = False
    incomplete: bool = False  # a stage failed on this capture (tshark refused its packets): 'partial'
    errors: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    dissected_packets: int = 0
    decrypted_flows: int = 0
    warnings: list[str] = field(default_factory=list)
    decrypt: dict | None = None  # the decryption pipeline's stats (decode_capture), when there were keys
    keylog_digest: str | None = None  # keyed digest of the key log's secrets (collector.tls.keylog.keylog_digest)
    new_exchanges: int = 0  # 'rekeyed': HTTP exchanges the new key log added
    decrypted_uids: set[str] = field(default_factory=set)  # flows the decryption pipeline decrypted (this run)


def check_keylog(keylog: Path | None) -> None:
    """A key log must be a readable regular file holding key-log lines: else one line, before the store
    is touched (tshark silently decrypts nothing with a wrong one)."""
    if keylog is None:
        return
    try:
        from collector.tls.keylog import KeyLogError, read_keylog
    except ImportError:
        return  # no decryption in this build: _decrypt() warns
    try:
        read_keylog(keylog)
    except KeyLogError as exc:
        raise IngestError(str(exc)) from None


def check_tshark() -> None:
    try:
        tshark.tshark_path()
    except tshark.TsharkMissing as exc:
        raise IngestError(str(exc)) from None


# DuckDB workers of the store an ingest opens: its statements are migrations, catalog writes and one
# Parquet file per batch, where a second worker only competed with the ingest's own threads for the
# cores (500k capture, new store: 1.26 -> 1.15 s wall, 1.9 -> 1.6 s CPU, the commit itself included)
INGEST_DUCKDB_THREADS = 1
HASH_WINDOW = 16 << 20  # bytes of the capture _sha256 maps at a time (a multiple of the page size)


def _sha256(path: Path) -> str:
    """The file's sha256 from 16 MiB read-only maps, each unmapped after: no copy of the file through
    read() (~0.04 s of CPU on a 300 MB capture) and never more than a window resident."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        for off in range(0, size, HASH_WINDOW):
            with mmap.mmap(f.fileno(), min(HASH_WINDOW, size - off), offset=off, access=mmap.ACCESS_READ) as m:
                h.update(m)
    return h.hexdigest()


class _HashThenOpen(threading.Thread):
    """Beside the record walk, in one thread: the capture's sha256 (hashlib releases the GIL), then the
    store's open (create, migrate; DuckDB releases the GIL while it works) and `then(store)` (the
    look-up of earlier runs of this capture). One thread, not a hasher and an opener side by side:
    three busy threads on a 2-core machine slowed the main thread's walk of the 500k capture from
    0.20-0.26 to 0.30-0.38 s. A Store the caller already holds is used as it is (and stays open:
    `owned` is False)."""

    def __init__(self, capture: Path, spec, then=None):
        super().__init__(name="routerwatch-hash-open", daemon=True)
        self.capture = capture
        self.spec = spec
        self.store = None
        self.owned = not hasattr(spec, "secret_key")
        self.error: BaseException | None = None
        self.then = then
        self.value = None  # what `then` returned
        self.digest = ""
        self.hashed = threading.Event()

    def run(self) -> None:
        from collector.store import Store

        try:
            try:
                self.digest = _sha256(self.capture)
            finally:
                self.hashed.set()
            self.store = Store.open(self.spec, threads=INGEST_DUCKDB_THREADS) if self.owned else self.spec
            if self.then is not None:
                self.value = self.then(self.store)
        except BaseException as exc:  # re-raised in the caller's thread
            self.error = exc

    def sha256(self) -> str:
        """The capture's sha256, once hashed (the hash's own error raised here)."""
        self.hashed.wait()
        if not self.digest:
            self.get()
        return self.digest

    def get(self):
        self.join()
        if self.error is not None:
            self.discard()
            raise self.error
        return self.store

    def discard(self) -> None:
        """Wait for the thread and close a store it opened (the ingest failed or is over)."""
        self.join()
        if self.store is not None and self.owned:
            self.store.close()
            self.store = None


def _progress(total: int):
    if total < PROGRESS_MIN_BYTES or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc="reading", file=sys.stderr, disable=None, leave=False)


def ingest(
    capture: str | Path,
    *,
    store: str | Store | None = None,
    keylog: str | Path | None = None,
    host_id: str | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    wait_s: float = DEFAULT_WAIT_S,
) -> IngestResult:
    """Ingest one capture into the store (a spec, created if needed, or an open writable Store, left
    open); see the module docstring. `capture` is a file, a FIFO or '-' (stdin): a pipe is spooled to a
    private temporary file first, and refused when nothing arrives in `wait_s` seconds. Every input that
    cannot be ingested raises IngestError (one line, what the CLI prints); a capture damaged after its
    file header is ingested as far as it is readable (`partial`)."""
    t0 = time.monotonic()
    source = CaptureSource(capture, wait_s)
    keylog = Path(keylog) if keylog else None
    try:
        source.check()
        check_keylog(keylog)
        check_tshark()
        source.open()
        return _ingest(source, store, keylog, host_id, batch_rows, t0)
    except (CaptureUnavailable, NotACapture) as exc:
        raise IngestError(str(exc)) from None
    finally:
        source.close()


def _ingest(source: CaptureSource, store: str | Store | None, keylog: Path | None, host_id: str | None, batch_rows: int,
            t0: float) -> IngestResult:
    capture = source.path
    host = resolve_host_id(host_id)
    run_id = uuid.uuid4().hex

    def earlier_runs(st) -> tuple[str | None, set[str | None] | None]:
        """(this key log's digest, the digests earlier runs of this capture used): in the opener's thread."""
        return _keylog_digest(keylog, st), _prior_runs(st, opener.digest, host)

    # the hash, catalog attach + migrations and the look-up of earlier runs overlap the record walk
    # and the stages after it: the store is needed only once the tables are built
    opener = _HashThenOpen(capture, store, earlier_runs)
    opener.start()
    bar = _progress(source.size)
    with MappedFile(capture, source.name) as mf:
        try:
            try:
                rec = read_records(capture, mf, bar)
                STAGES.mark("record walk")
            finally:
                if bar is not None:
                    bar.close()
            res = _new_result(run_id, source, capture, "", rec)

            def sha() -> str:
                """The capture's sha256, once hashed (the flow ids need it; nothing before them)."""
                res.sha256 = opener.sha256()
                return res.sha256

            def duplicate() -> bool:
                """Known already (the opener is done) to be stored before, with nothing new to add."""
                return not opener.is_alive() and opener.error is None and _is_duplicate(opener.value, keylog)

            try:
                decrypting = keylog is not None or rec.dsb_secrets > 0  # the decryptor reuses the header walk
                tables = _process(mf, rec, res, host, sha, run_id, capture, duplicate, keep_walk=decrypting)
            except _Duplicate:
                tables = None
            st = opener.get()
        except BaseException:
            opener.discard()
            raise
        STAGES.mark("store open wait")
        try:
            res.keylog_digest, prior = opener.value
            if tables is None or _is_duplicate(opener.value, keylog):
                res = _new_result(run_id, source, capture, sha(), rec)  # nothing of the processing is kept
                res.keylog_digest = opener.value[0]
                res.status = "duplicate"
                res.duration_s = time.monotonic() - t0
                from collector.store import BatchWriter

                with BatchWriter(st) as w:
                    w.add("ingest_runs", [_run_row(res, host, rec, keylog, None)])
                return res
            decrypt_stats = res.decrypt = _decrypt(capture, keylog, mf, rec, tables, res, host, run_id, st)
            if prior is not None:  # flows stored by an earlier run: only what the new key log adds
                _write_rekeyed(st, tables, res, host, rec, keylog, decrypt_stats, t0)
            else:
                _write(st, tables, res, host, rec, keylog, decrypt_stats, batch_rows, t0)
            STAGES.mark("commit")
        finally:
            opener.discard()
    return res


class _Duplicate(Exception):
    """Raised inside _process when the capture turns out to be stored already (the work stops)."""


def _new_result(run_id: str, source: CaptureSource, capture: Path, sha: str, rec: Records) -> IngestResult:
    res = IngestResult(run_id=run_id, status="ok", file=source.name if source.spooled else str(capture.absolute()),
                       sha256=sha, packets=len(rec), file_bytes=source.size)
    if rec.truncated:
        res.truncated = True
        res.errors.append(rec.error or "truncated")
    return res


def _is_duplicate(earlier: tuple[str | None, set[str | None] | None], keylog: Path | None) -> bool:
    """Stored before, and the key log (if any) was used on it before: nothing to add."""
    digest, prior = earlier
    return prior is not None and (keylog is None or digest in prior)


def _keylog_digest(keylog: Path | None, st) -> str | None:
    if keylog is None:
        return None
    try:
        from collector.tls.keylog import keylog_digest
    except ImportError:
        return None
    return keylog_digest(keylog, st.secret_key())


def _prior_runs(st, sha: str, host: str) -> set[str | None] | None:
    """None when no earlier run stored this capture's flows (same content, same host); else the key-log
    digests earlier runs decrypted it with (None for a run without a key log). The idempotency key of
    an ingest is (host, capture sha256, key-log digest): a key log not used before is new work."""
    rows = st.sql(
        "SELECT status, json_extract_string(decrypt_stats, '$.keylog_digest') FROM ingest_runs "
        "WHERE sha256 = ? AND host_id = ? AND status IN ('ok', 'partial', 'rekeyed')",
        [sha, host],
    ).fetchall()
    if not any(status in ("ok", "partial") for status, _ in rows):
        return None
    return {d for _, d in rows}


def _process(mf: MappedFile, rec: Records, res: IngestResult, host: str, sha: Callable[[], str], run_id: str,
             capture: Path, duplicate: Callable[[], bool] = lambda: False, keep_walk: bool = True) -> dict:
    """Header walk, flow assignment and reductions, tshark dissection (overlapped), table building.
    `sha()` gives the capture's sha256 (hashed in a thread meanwhile). Raises _Duplicate after the
    header walk when `duplicate()` says the work is not needed. Without `keep_walk` the per-packet
    headers are dropped once the flows are reduced (nothing after needs them: ~80 bytes a packet)."""
    # tshark starts only for packets that need it (its start-up costs ~0.3 s of CPU): the DNS
    # messages not read here (flows.read_dns), right after the flow assignment for a large capture
    # (it works while the rest of the selection is made), and whatever else the selection holds. A
    # second process (one per core, each dissecting the packets of every other flow) starts only for a
    # large selection, where it pays for its own start-up (~0.15 s of CPU)
    args = tshark.base_args() + ["-r", "-", "-Y", dissect.DISPLAY_FILTER] + tshark.fields_args(dissect.FIELDS)
    jobs: list[tshark.TsharkJob] = []
    try:
        hd, fast = _headers(mf, rec, res)
        trim_heap()
        if duplicate():
            raise _Duplicate
        fa = flows.assign(hd)
        trim_heap()
        STAGES.mark("flow assignment")
        end = rec.data_off + rec.caplen
        parts: list[np.ndarray] = []  # the records each job dissects: its frame N is parts[k][N-1]
        dns_part, native_dns, dns_left = flows.read_dns(hd, fa, mf, rec.data_off, end)
        if len(rec) >= EARLY_TSHARK_PACKETS and len(dns_left):
            jobs.append(tshark.TsharkJob(args))
            jobs[0].feed(tshark.small_pcapng(mf, rec, dns_left))
            parts.append(dns_left)
        STAGES.mark("DNS read")
        selection = flows.select_for_dissection(hd, fa, mf, end, dns_part)
        sel = selection.records
        res.dissected_packets = int(len(sel))
        rest = _without(sel, dns_part)
        if not parts and len(dns_left):  # a small capture: one process for all of it
            rest = np.sort(np.concatenate([rest, dns_left]))
        workers = 2 if (os.cpu_count() or 1) >= 2 and len(rest) >= PARALLEL_TSHARK_PACKETS else 1
        rest_parts = [rest[fa.fid[rest] % workers == k] for k in range(workers)]
        # (assigned here, so that a failure below still cancels them)
        jobs += [tshark.TsharkJob(args) if len(part) else tshark.TsharkJob(None) for part in rest_parts]
        _feed_dissectors(jobs[len(parts):], rest_parts, mf, rec)
        parts += rest_parts
        trim_heap()
        STAGES.mark("select + small pcapng")

        agg = flows.aggregate(hd, fa, rec.ts_ns)
        STAGES.mark("flow reductions")
        ep = flows.endpoints(fa)
        cids = flows.community_ids(fa)
        ts0 = agg.column("ts0").to_numpy()
        uid_chars = flows.flow_uid_chars(host, sha(), fa, ts0)
        uids = flows.texts(uid_chars)

        if not keep_walk:
            del hd
        trim_heap()
        STAGES.mark("ids, endpoints")
        dns_msgs, hellos = _dissected(jobs, parts, res)
        dns_msgs += native_dns
        STAGES.mark("tshark wait + parse")
    except BaseException:
        for job in jobs:
            job.cancel()
        raise
    res_walk = "numpy" if fast else "tshark"

    tls_tbl, sni = _tls_rows(hellos, selection, fa, rec, uid_chars, host)
    dns_tbl = _dns_rows(dns_msgs, fa, rec, uids, host)
    res.dns, res.tls = dns_tbl.num_rows, tls_tbl.num_rows

    flow_tbl = _flow_table(fa, agg, ep, cids, uid_chars, sni, dns_tbl, host, run_id)
    STAGES.mark("tables + DNS names")
    res.flows = fa.count
    return {"flows": flow_tbl, "dns": dns_tbl, "tls": tls_tbl, "walk": res_walk,
            "read": (hd, fa) if fast and keep_walk else None}


def _headers(mf: MappedFile, rec: Records, res: IngestResult) -> tuple[headers.Headers, bool]:
    """Every record's headers: the numpy walk for the link types it reads (True), else tshark's."""
    if all(lt in headers.FAST_LINKTYPES for lt in set(rec.linktypes)):
        hd = headers.walk_mapped(mf, rec)
        STAGES.mark("header walk")
        return hd, True
    from collector.capture.fallback import tshark_headers

    try:
        return tshark_headers(mf, rec), False
    except tshark.TsharkError as exc:
        raise IngestError(f"{res.file}: {exc} (link types {', '.join(map(str, sorted(set(rec.linktypes))))})"
                          ) from None


def _without(sel: np.ndarray, part: np.ndarray) -> np.ndarray:
    """The sorted records `sel` without `part` (sorted, a subset of them)."""
    keep = np.ones(len(sel), bool)
    at = np.searchsorted(sel, part)
    if len(part) and (at[-1] >= len(sel) or not np.array_equal(sel[np.minimum(at, len(sel) - 1)], part)):
        raise ValueError("the DNS records are not a subset of the selection")
    keep[at] = False
    return sel[keep]


def _feed_dissectors(jobs: list[tshark.TsharkJob], parts: list[np.ndarray], mf: MappedFile, rec: Records) -> None:
    """Hand each tshark job its share of the selected packets as a small pcapng; a job with no
    packets is cancelled."""
    for job, part in zip(jobs, parts, strict=True):
        if len(part):
            job.feed(tshark.small_pcapng(mf, rec, part))
        else:
            job.cancel()


def _dissected(jobs: list[tshark.TsharkJob], parts: list[np.ndarray], res: IngestResult
               ) -> tuple[list[tuple[int, DnsMessage]], list[tuple[int, dissect.Hello]]]:
    """The DNS messages and TLS hellos tshark found, each with its record index; a failed job loses
    only its packets' fields (noted in `res`, which is marked incomplete)."""
    dns_msgs: list[tuple[int, DnsMessage]] = []
    hellos: list[tuple[int, dissect.Hello]] = []
    for job, part in zip(jobs, parts, strict=True):
        if not len(part):
            continue
        try:
            out = job.result()
        except tshark.TsharkError as exc:  # flows stand; the DNS and hello fields of these packets are lost
            res.errors.append(f"dissection of {len(part)} packets failed: {exc}")
            res.warnings.append(res.errors[-1])
            res.incomplete = True
            continue
        d, h = dissect.parse(out)
        dns_msgs += [(int(part[m.frame - 1]), m) for m in d]  # tshark frame N is part[N-1]
        hellos += [(int(part[x.frame - 1]), x) for x in h]
    return dns_msgs, hellos


def _tls_rows(hellos: list, selection: flows.Selection, fa: flows.FlowAssignment, rec: Records,
              uid_chars: np.ndarray, host: str) -> tuple[pa.Table, np.ndarray]:
    """One tls row per flow with a ClientHello (its first), joined with the flow's ServerHello."""
    # ClientHello per flow as (record, (version, sni, alpn, ja4)): read here, else from tshark
    ch: dict[int, tuple[int, tuple]] = dict(selection.client_hellos)  # parsed by tlspeek; tshark did not see these
    # ServerHello per flow as (version, cipher, selected ALPN): read with numpy, else from tshark
    sh: dict[int, tuple[int | None, int | None, str | None]] = dict(selection.server_hellos)
    hellos.sort(key=lambda x: x[0])  # file order, so "first" is the first seen
    for r, h in hellos:
        fid = int(fa.fid[r])
        if fid < 0:
            continue
        if h.client:
            if fid not in ch:
                proto = "q" if fa.proto[fid] == headers.UDP else "t"
                ch[fid] = (r, (h.version, h.sni, ",".join(h.alpn) if h.alpn else None, h.ja4(proto)))
        elif fid not in sh:
            sh[fid] = (h.version, h.cipher, h.alpn[0] if h.alpn else None)
    # the rows column by column (fields transposed by _columns, the few distinct versions and ciphers
    # named once each): a Python step per row and column took ~0.03 s on 17k handshakes
    n = len(ch)
    fids = np.fromiter(ch, np.int64, n)
    recs, fields = _columns(list(ch.values()), 2)
    ch_version, snis, alpn, ja4 = _columns(fields, 4)
    no_server = (None, None, None)
    sh_version, cipher, alpn_selected = _columns([sh.get(fid, no_server) for fid in fids.tolist()], 3)
    sni = np.full(fa.count, None, dtype=object)
    sni[fids] = np.fromiter(snis, object, n)
    tls = conform("tls", pa.table({
        "ts": _packet_times(rec, recs), "host_id": arrow_strings.constant(host, n),
        "flow_uid": arrow_strings.fixed_width(uid_chars[fids]),
        "version": _named(np.fromiter((v or c for v, c in zip(sh_version, ch_version, strict=True)), object, n),
                          dissect.version_name),
        "sni": pa.array(snis, pa.string()), "alpn": pa.array(alpn, pa.string()), "ja4": pa.array(ja4, pa.string()),
        "cipher": _named(np.fromiter(cipher, object, n), lambda c: f"0x{c:04x}"),
        "alpn_selected": pa.array(alpn_selected, pa.string()), "decrypted": pa.array(np.zeros(n, bool)),
    }))
    return tls, sni


def _columns(rows: list[tuple], width: int) -> list[list]:
    """Rows of `width` fields as `width` lists (zip(*rows) over many rows is slower: one argument
    per row)."""
    return [[row[k] for row in rows] for k in range(width)]


def _named(values: np.ndarray, name: Callable[[int], str | None]) -> pa.Array:
    """A string column naming each of `values` (ints or None, an object array): `name` runs once per
    distinct value, a None stays null."""
    present = ~np.equal(values, None)
    distinct, codes = np.unique(np.where(present, values, -1).astype(np.int64), return_inverse=True)
    names = [name(v) if v >= 0 else None for v in distinct.tolist()]
    return arrow_strings.coded(codes.reshape(-1), names)


def _packet_times(rec: Records, idx: list[int]) -> pa.Array:
    """Records' capture times as naive UTC timestamps, exact to the microsecond."""
    return pa.array(rec.ts_ns[np.asarray(idx, np.int64)] // 1000, pa.timestamp("us"))


def _dns_rows(dns_msgs: list, fa: flows.FlowAssignment, rec: Records, uids: list[str], host: str) -> pa.Table:
    """One dns row per dissected message, linked to its flow, in capture order (the messages of one
    frame in their order in it): _dns_names breaks ties between equal timestamps by this order."""
    dns_msgs = sorted(dns_msgs, key=lambda x: x[0])  # stable: a frame's messages keep their order
    recs = [r for r, _ in dns_msgs]
    fids = fa.fid[np.asarray(recs, np.int64)].tolist() if recs else []
    msgs = [m for _, m in dns_msgs]
    n = len(msgs)
    return conform("dns", pa.table({
        "ts": _packet_times(rec, recs),
        "host_id": pa.array([host] * n, pa.string()),
        "flow_uid": pa.array([uids[f] if f >= 0 else None for f in fids], pa.string()),
        "query": pa.array([m.query for m in msgs], pa.string()),
        "qtype": pa.array([m.qtype for m in msgs], pa.string()),
        "rcode": pa.array([m.rcode for m in msgs], pa.string()),
        "answers": pa.array([m.answers for m in msgs], pa.list_(pa.string())),
        "trans_id": pa.array([m.trans_id for m in msgs], pa.int32()),
        "is_response": pa.array([m.is_response for m in msgs], pa.bool_()),
        "source": pa.array(["pcap"] * n, pa.string()),
    }))


def _flow_table(fa: flows.FlowAssignment, agg: pa.Table, ep: dict, cids: list[str], uid_chars: np.ndarray,
                sni: np.ndarray, dns_tbl: pa.Table, host: str, run_id: str) -> pa.Table:
    """The flows rows as stored, in ts_start order (stable: ties keep the walk's order). server_name
    is the SNI, else _dns_names' name; tcp_state as _tcp_states says. Built with numpy before any
    Arrow column exists, so no pyarrow.compute (its import alone was ~0.04 s of an ingest); the
    columns of a few distinct values and the uids are laid out from codes and bytes
    (collector.capture.arrow_strings), not from a Python string per flow."""
    ts_start = agg.column("ts0").to_numpy() // 1000
    order = np.argsort(ts_start, kind="stable")
    dst_ip = np.asarray(ep["dst_ip"], dtype=object)
    server_name = np.where(np.equal(sni, None), _dns_names(sni, dst_ip, ts_start, dns_tbl), sni)
    history = _one_chunk(agg.column("history"))
    state = _tcp_states(fa.proto, agg.column("packets_in").to_numpy(), _one_chunk(agg.column("tcp_state")).indices.to_numpy())

    def column(values, kind: pa.DataType | None = None) -> pa.Array:
        return pa.array(np.asarray(values)[order], kind)

    def constant(value: str) -> pa.Array:
        return arrow_strings.constant(value, fa.count)

    def counter(name: str) -> pa.Array:
        return column(agg.column(name).to_numpy())

    return pa.table({
        "flow_uid": arrow_strings.fixed_width(uid_chars[order]),
        "community_id": column(np.asarray(cids, dtype=object), pa.string()),
        "host_id": constant(host),
        "ts_start": column(ts_start, pa.timestamp("us")),
        "ts_end": column(agg.column("ts1").to_numpy() // 1000, pa.timestamp("us")),
        "proto": arrow_strings.coded(np.where(fa.proto == headers.TCP, 0, 1)[order], ["tcp", "udp"]),
        "src_ip": column(np.asarray(ep["src_ip"], dtype=object), pa.string()),
        "src_port": column(ep["src_port"]),
        "dst_ip": column(dst_ip, pa.string()),
        "dst_port": column(ep["dst_port"]),
        "bytes_out": counter("bytes_out"),
        "bytes_in": counter("bytes_in"),
        "packets_out": counter("packets_out"),
        "packets_in": counter("packets_in"),
        "source": constant("pcap"),
        "history": arrow_strings.coded(history.indices.to_numpy()[order], history.dictionary.to_pylist()),
        "capture_id": constant(run_id),
        "ip_bytes_out": counter("ip_bytes_out"),
        "ip_bytes_in": counter("ip_bytes_in"),
        "server_name": column(server_name, pa.string()),
        "tcp_state": arrow_strings.coded(state[order], STATE_NAMES),
    })


STATE_NAMES: list[str | None] = [*flows.TCP_STATES, None]  # what _tcp_states' codes stand for


def _one_chunk(col: pa.ChunkedArray) -> pa.Array:
    """The column as one array (aggregate's columns have one chunk each)."""
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()


def _tcp_states(proto: np.ndarray, packets_in: np.ndarray, tcp_state: np.ndarray) -> np.ndarray:
    """Zeek's conn_state as stored, as codes into STATE_NAMES: a TCP flow's from its history
    (`tcp_state`: flows.aggregate's codes into flows.TCP_STATES); a UDP flow's SF when anything came
    back, else S0; no other protocol has one (None). `proto`: IP protocol numbers."""
    sf, s0 = flows.TCP_STATES.index("SF"), flows.TCP_STATES.index("S0")
    udp = np.where(packets_in > 0, sf, s0)
    return np.where(proto == headers.UDP, udp, np.where(proto == headers.TCP, tcp_state, len(flows.TCP_STATES)))


def _valid(values: pa.Array) -> np.ndarray:
    """Which entries are not null, from the validity bitmap (Array.is_valid goes through
    pyarrow.compute)."""
    if values.null_count == 0:
        return np.ones(len(values), bool)
    bits = np.frombuffer(values.buffers()[0], np.uint8)
    return np.unpackbits(bits, count=values.offset + len(values), bitorder="little")[values.offset:].astype(bool)


def _dns_names(sni: np.ndarray, dst_ip: np.ndarray, ts_start: np.ndarray, dns_tbl: pa.Table) -> np.ndarray:
    """Per flow without an SNI, the latest DNS name answered for its dst_ip at or before it began
    (microseconds; an as-of join on (address, time)), else None. Answers for one address at one
    instant: the one later in the capture (`dns_tbl` is in capture order, _dns_rows), so the name never
    depends on a sort's tie order. Done with numpy sorts and one searchsorted (DuckDB's ASOF join took
    ~0.07 s of the ingest of a 26k-flow capture, ~10x this)."""
    names = np.full(len(sni), None, dtype=object)
    want = np.flatnonzero(np.equal(sni, None) & ~np.equal(dst_ip, None))
    if not len(want) or not dns_tbl.num_rows:
        return names
    answers = dns_tbl.column("answers").combine_chunks()
    query = dns_tbl.column("query").combine_chunks().to_numpy(zero_copy_only=False)
    offsets = answers.offsets.to_numpy()
    count = np.where(_valid(answers), np.diff(offsets), 0)  # a null list has no answers
    usable = (np.equal(dns_tbl.column("is_response").combine_chunks().to_numpy(zero_copy_only=False), True)
              & ~np.equal(query, None) & (count > 0))
    if not usable.any():
        return names
    count = np.where(usable, count, 0)
    row = np.repeat(np.arange(len(count)), count)  # each answer's DNS row (its capture position)
    first = np.repeat(offsets[:-1], count) + np.arange(len(row)) - np.repeat(np.cumsum(count) - count, count)
    ip = answers.values.to_numpy(zero_copy_only=False)[first]
    keep = ~np.equal(ip, None)
    row, ip = row[keep], ip[keep]
    a_ts = dns_tbl.column("ts").combine_chunks().to_numpy(zero_copy_only=False).view(np.int64)[row]
    f_ts, f_ip = ts_start[want], dst_ip[want]
    # (address, time) as one int64 key: dense codes of each, address major
    _, ip_code = np.unique(np.concatenate([ip, f_ip]), return_inverse=True)
    ts_values, ts_rank = np.unique(np.concatenate([a_ts, f_ts]), return_inverse=True)
    key = ip_code.astype(np.int64) * (len(ts_values) + 1) + ts_rank
    a_key, f_key = key[:len(ip)], key[len(ip):]
    order = np.lexsort((row, a_key))  # by key, then capture position: the last of equal keys wins
    a_key, row, a_code = a_key[order], row[order], ip_code[:len(ip)][order]
    j = np.searchsorted(a_key, f_key, side="right") - 1
    hit = j >= 0
    hit[hit] = a_code[j[hit]] == ip_code[len(ip):][hit]
    names[want[hit]] = query[row[j[hit]]]
    return names


def _decrypt(capture: Path, keylog: Path | None, mf: MappedFile, rec: Records, tables: dict, res: IngestResult,
             host: str, run_id: str, st) -> dict | None:
    """Hand this run's flows to the decryption pipeline when there are keys (a key log or DSBs)."""
    global _warned_no_decrypt
    if keylog is None and rec.dsb_secrets == 0:
        return None
    try:
        from collector.tls.pipeline import decode_capture
    except ImportError:
        if not _warned_no_decrypt:
            msg = "TLS decryption is not available in this build (collector.tls missing): ingesting without it"
            res.warnings.append(msg)
            _warned_no_decrypt = True
        return {"unavailable": True}
    ft = tables["flows"].select(
        ["flow_uid", "community_id", "ts_start", "ts_end", "proto", "src_ip", "src_port", "dst_ip", "dst_port", "server_name"]
    )
    from collector.capture.tshark import TsharkError
    from collector.tls.native_decrypt import Walked

    read = tables.get("read")  # this run's header walk + flow assignment: the decryptor reuses them
    walked = Walked(mf, rec, *read) if read is not None else None
    # a damaged capture: the decryptor (and its tshark fallback) reads a clean copy of the packets read
    # here, so it never sees what the readers left out (tshark refuses whole files over one bad block,
    # or hands back a timestamp from the year 148163)
    clean = _clean_copy(mf, rec) if rec.truncated else None
    try:
        result = decode_capture(
            Path(clean.name) if clean is not None else capture, keylog, flows=ft, host_id=host,
            secret_key=st.secret_key(), run_id=run_id, walked=walked,
        )
    except TsharkError as exc:  # tshark refused the packets even so: flows stand
        msg = f"decryption failed: {exc}"
        res.errors.append(msg)
        res.warnings.append(msg)
        res.incomplete = True
        tables["extra"] = {}
        return {"failed": msg}
    finally:
        if clean is not None:
            clean.close()
    from collector.store.schema import TABLES

    extra = dict(getattr(result, "tables", {}) or {})
    for name in [n for n in extra if n not in TABLES]:
        res.warnings.append(f"decryption produced an unknown table {name!r}: not stored")
        del extra[name]
    tables["extra"] = extra
    res.errors.extend(getattr(result, "errors", []) or [])
    res.warnings.extend(getattr(result, "errors", []) or [])
    res.warnings.extend(getattr(result, "warnings", []) or [])
    uids = set(getattr(result, "decrypted_flow_uids", set()) or set())
    import pyarrow.compute as pc  # (only with keys: its import is ~0.04 s of a plain ingest)

    tls: pa.Table = tables["tls"]
    at = tls.schema.get_field_index("decrypted")
    tables["tls"] = tls.set_column(at, tls.schema.field(at),
                                   pc.is_in(tls.column("flow_uid"), value_set=pa.array(sorted(uids), pa.string())))
    res.decrypted_flows = len(uids)
    res.decrypted_uids = uids
    return dict(getattr(result, "stats", {}) or {})


def _clean_copy(mf: MappedFile, rec: Records):
    """A private temporary pcapng (0600, deleted on close) of exactly the records read, with the
    capture's embedded key-log text as Decryption Secrets Blocks."""
    import tempfile

    f = tempfile.NamedTemporaryFile(prefix="routerwatch-clean-", suffix=".pcapng")
    for part in tshark.pcapng_parts(mf, rec, np.arange(len(rec)), rec.dsb_keylog):
        f.write(part)
    f.flush()
    return f


def _run_row(res: IngestResult, host: str, rec: Records, keylog: Path | None, decrypt_stats: dict | None,
             walk: str | None = None) -> dict:
    return {
        "ts": dt.datetime.now(dt.UTC).replace(tzinfo=None),
        "host_id": host,
        "run_id": res.run_id,
        "file": res.file,
        "sha256": res.sha256,
        "file_bytes": res.file_bytes,
        "packets": res.packets,
        "truncated": res.truncated,
        "errors": "; ".join(res.errors) or None,
        "duration_s": res.duration_s,
        "status": res.status,
        "keylog": keylog is not None,
        "flows": res.flows,
        "format": rec.fmt,
        "link_types": ",".join(str(x) for x in rec.linktypes),
        "header_walk": walk,
        "dissected_packets": res.dissected_packets,
        "dns_messages": res.dns,
        "tls_handshakes": res.tls,
        "embedded_secrets": rec.dsb_secrets,
        "decrypted_flows": res.decrypted_flows,
        "decrypt_stats": _stats_json(decrypt_stats, res),
    }


def _stats_json(decrypt_stats: dict | None, res: IngestResult) -> str | None:
    stats = dict(decrypt_stats or {})
    if res.keylog_digest is not None:
        stats["keylog_digest"] = res.keylog_digest
    if res.status == "rekeyed":
        stats["new_exchanges"] = res.new_exchanges
    return json.dumps(stats, default=str) if stats else None


def _write(st, tables: dict, res: IngestResult, host: str, rec: Records, keylog: Path | None,
           decrypt_stats: dict | None, batch_rows: int, t0: float) -> None:
    """Commit in batches of `batch_rows` rows (each batch one transaction), the run record last."""
    from collector.store import BatchWriter

    flow_tbl: pa.Table = tables["flows"]
    _forget_interrupted(st, flow_tbl)
    w = BatchWriter(st, max_rows=max(1, batch_rows), max_delay=3600)
    try:
        for name, data in (("flows", flow_tbl), ("dns", tables["dns"]), ("tls", tables["tls"])):
            if isinstance(data, list):
                data = conform(name, data) if data else None
            if data is None or data.num_rows == 0:
                continue
            for start in range(0, data.num_rows, batch_rows):
                w.add(name, data.slice(start, batch_rows))
        for name, data in (tables.get("extra") or {}).items():
            w.add(name, data)
        if res.truncated or res.incomplete:
            res.status = "partial"
        res.duration_s = time.monotonic() - t0
        w.add("ingest_runs", [_run_row(res, host, rec, keylog, decrypt_stats, tables.get("walk"))])
        w.flush()
    finally:
        w.close()


def _forget_interrupted(st, flow_tbl: pa.Table) -> None:
    """Rows left by an interrupted earlier run of this same capture (same deterministic uids) go,
    so a re-run after a crash never duplicates them."""
    if flow_tbl.num_rows == 0:
        return
    probe = flow_tbl.select(["flow_uid"]).slice(0, 1)
    st.con.register("__rw_probe", probe)
    try:
        hit = st.sql("SELECT count(*) FROM flows WHERE flow_uid IN (SELECT flow_uid FROM __rw_probe)").fetchone()[0]
    finally:
        st.con.unregister("__rw_probe")
    if not hit:
        return
    st.con.register("__rw_uids", flow_tbl.select(["flow_uid"]))
    try:
        st.write(lambda con: [con.execute(f"DELETE FROM {t} WHERE flow_uid IN (SELECT flow_uid FROM __rw_uids)")
                              for t in ("dns", "tls", "flows")], what="removing an interrupted ingest's rows")
    finally:
        st.con.unregister("__rw_uids")


def _flows_without_rows(st, table: str, host: str, uids: pa.ChunkedArray) -> list[str]:
    """Of these flows, those `table` holds no rows of yet that belong to no exchange (a rekeyed run
    adds such rows once: the first run may have stored them already, from plaintext)."""
    import pyarrow.compute as pc  # (not on a plain ingest's path: its import is ~0.04 s)

    from collector.store.schema import TABLES

    has_x = "exchange_id" in {c[0] for c in TABLES[table]}
    st.con.register("__rw_u", pa.table({"flow_uid": pc.unique(uids.combine_chunks())}))
    try:
        return [r[0] for r in st.sql(
            "SELECT flow_uid FROM __rw_u WHERE flow_uid IS NOT NULL AND flow_uid NOT IN "
            f"(SELECT flow_uid FROM {table} WHERE host_id = ? AND flow_uid IS NOT NULL"
            f"{' AND exchange_id IS NULL' if has_x else ''})", [host]).fetchall()]
    finally:
        st.con.unregister("__rw_u")


def _write_rekeyed(st, tables: dict, res: IngestResult, host: str, rec: Records, keylog: Path | None,
                   decrypt_stats: dict | None, t0: float) -> None:
    """A capture stored before, with a key log not used on it before: its flows, DNS and TLS rows stay as
    they are; the decrypted tables get the exchanges not stored yet (exchange ids are deterministic),
    of flows not decrypted yet, and those flows' `tls.decrypted` turns true. One transaction with the
    run record, so a crash leaves either all of it or nothing (and a re-run redoes it)."""
    import pyarrow.compute as pc  # (not on a plain ingest's path: its import is ~0.04 s)

    from collector.store.connection import retrying
    from collector.store.schema import conform

    extra = {name: conform(name, data) for name, data in (tables.get("extra") or {}).items()}
    http = extra.get("http")
    new_x: set[str] = set()
    done: set[str] = set()
    decrypted = set(res.decrypted_uids)
    if http is not None and http.num_rows:
        ids = http.select(["exchange_id"])
        st.con.register("__rw_x", ids)
        st.con.register("__rw_f", pa.table({"flow_uid": pa.array(sorted(decrypted), pa.string())}))
        try:
            known = {r[0] for r in st.sql("SELECT exchange_id FROM http WHERE host_id = ? AND exchange_id IN "
                                          "(SELECT exchange_id FROM __rw_x)", [host]).fetchall()}
            done = {r[0] for r in st.sql("SELECT flow_uid FROM tls WHERE host_id = ? AND decrypted AND flow_uid IN "
                                         "(SELECT flow_uid FROM __rw_f)", [host]).fetchall()}
        finally:
            st.con.unregister("__rw_x")
            st.con.unregister("__rw_f")
        for row in http.select(["exchange_id", "flow_uid"]).to_pylist():
            if row["exchange_id"] not in known and row["flow_uid"] not in done:
                new_x.add(row["exchange_id"])
    newly = sorted(decrypted - done)
    res.status = "rekeyed"
    res.flows = res.dns = res.tls = 0  # nothing added to flows, dns or tls
    res.decrypted_flows = len(newly)
    res.new_exchanges = len(new_x)
    keep = pa.array(sorted(new_x), pa.string())
    adds = {}
    for name, t in extra.items():
        # rows of an exchange go with their exchange; rows of no exchange (DoH lookups as dns rows, a
        # secret seen outside any exchange) go with their flow, if it has no such rows stored yet
        xid = t.column("exchange_id") if "exchange_id" in t.column_names else pa.nulls(t.num_rows, pa.string())
        no_x = pc.is_null(xid)
        of_flow = pa.repeat(False, t.num_rows)
        if "flow_uid" in t.column_names and pc.any(no_x).as_py():
            fresh = pa.array(_flows_without_rows(st, name, host, t.filter(no_x).column("flow_uid")), pa.string())
            of_flow = pc.is_in(t.column("flow_uid"), value_set=fresh)
        t = t.filter(pc.if_else(no_x, of_flow, pc.is_in(xid, value_set=keep)))
        if t.num_rows:
            adds[name] = t
    res.duration_s = time.monotonic() - t0
    run = conform("ingest_runs", [_run_row(res, host, rec, keylog, decrypt_stats, tables.get("walk"))])

    def commit() -> None:
        con = st.con
        con.execute("BEGIN")
        try:
            for name, t in {**adds, "ingest_runs": run}.items():
                con.register("__rw_add", t)
                try:
                    con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM __rw_add")
                finally:
                    con.unregister("__rw_add")
            if newly:
                con.register("__rw_new", pa.table({"flow_uid": pa.array(newly, pa.string())}))
                try:
                    con.execute("UPDATE tls SET decrypted = true WHERE host_id = ? AND flow_uid IN "
                                "(SELECT flow_uid FROM __rw_new)", [host])
                finally:
                    con.unregister("__rw_new")
            con.execute("COMMIT")
        except Exception:
            try:
                con.execute("ROLLBACK")
            except Exception:
                pass
            raise

    retrying(commit)
