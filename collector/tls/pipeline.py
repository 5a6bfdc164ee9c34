"""Capture + key log -> decrypted HTTP/LLM rows, linked to the flows of the same ingest.

    result = decode_capture(capture, keylog, flows=flows_table, host_id=h, secret_key=key, run_id=r)
    result.tables            # {'http': [...], 'llm_exchanges': [...], 'tool_calls': [...], 'secrets_seen': [...]}
    result.decrypted_flow_uids
    result.stats             # decryptor, decrypted_records, undecrypted_flows, retransmissions, exchanges, ...
    result.errors            # e.g. a key log that decrypted nothing

collector.tls.native_decrypt decrypts (tshark, collector.tls.tshark_decrypt, when the native path is
unsure of a capture), collector.tls.streams rebuilds connections and parses HTTP, and
collector.llm.pipeline turns exchanges into redacted rows, shared with a worker process. Each
exchange links to its flow by Community ID within the flow's time bound (ports are reused).
Cleartext HTTP in the same capture is decoded too (source 'cleartext').

Two kinds of second process, on purpose: the decode worker (collector.tls.worker) is a fresh
interpreter on collector.parallel, routerwatch's one mechanism for child processes, because callers
such as the live collector have threads and fork is unsafe there. A big capture in a process with no
other thread (`routerwatch ingest`) is instead split with a forked child (_split): it starts in ~1.5 ms
of CPU against ~0.35 s for a fresh interpreter and inherits the capture already read, walked and
checked, which a fresh child would have to read again (measured: docs/performance.md, "Parallelism").
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import pickle
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from collector.capture.community_id import community_id
from collector.llm.pipeline import TABLE_NAMES, DecodeContext, DecodedRows, decode_exchanges
from collector.protocols.connection import Exchange
from collector.protocols.encoding import DEFAULT_KEEP
from collector.protocols.messages import Connection
from collector.secrets import Fingerprinter
from collector.tls.keylog import KeyLogInfo, read_keylog
from collector.tls.native_decrypt import NativeDecrypt, NativeUnsure, Walked
from collector.tls.streams import StreamAssembler, StreamMeta
from collector.tls.tshark_decrypt import TsharkDecrypt

TIME_SLACK_S = 2.0  # a stream's first packet may precede the flow's recorded start by clock rounding
BATCH = 256  # exchanges handed to the decode worker at once
WORKER_AFTER = 512  # a capture with fewer exchanges is decoded in-process (a worker costs ~0.5 s to start)
EAGER_BYTES = 8 << 20  # a capture file this big starts the worker at once (it starts while we decrypt)
IN_FLIGHT = 2  # batches queued at the worker before the main process decodes one itself
SEND_EXCHANGES = 512  # a split capture's child sends its rows every this many exchanges

Batch = list[tuple[Connection, bool, int, list[Exchange]]]  # (connection, tls?, first seq, exchanges)


def decode_batch(ctx_tls: DecodeContext, ctx_clear: DecodeContext, batch: Batch) -> DecodedRows:
    """LLM decoding + redaction of a batch of exchanges (runs in the decode worker for big captures)."""
    out = DecodedRows()
    for conn, tls, seq, exchanges in batch:
        out.extend(decode_exchanges(exchanges, ctx_tls if tls else ctx_clear, conn, start_seq=seq))
    return out


class _Decoder:
    """Decodes exchanges in-process and, once a capture proves big (or its file size says it will be),
    in one worker process too: a batch goes to the worker unless it already has IN_FLIGHT batches
    queued, else it is decoded here, so decryption + HTTP parsing (here) and LLM decoding + secret
    scanning (both) keep both cores busy whichever side is slower. Results keep their order."""

    def __init__(self, ctx_tls: DecodeContext, ctx_clear: DecodeContext, workers: bool, eager: bool = False):
        self.ctxs = (ctx_tls, ctx_clear)
        self.workers = workers
        self.batch: Batch = []
        self.batch_n = 0
        self.total = 0
        self.parts: list[DecodedRows | None] = []  # None: the worker's next result
        self.worker = None
        if workers and eager:
            self._start()

    def _start(self) -> None:
        from collector.tls.worker import DecodeWorker

        self.worker = DecodeWorker()

    def add(self, conn: Connection, tls: bool, seq: int, exchanges: list[Exchange]) -> None:
        self.batch.append((conn, tls, seq, exchanges))
        self.batch_n += len(exchanges)
        self.total += len(exchanges)
        if self.batch_n >= BATCH:
            self._flush()

    def _flush(self) -> None:
        batch, self.batch, self.batch_n = self.batch, [], 0
        if not batch:
            return
        if self.worker is None and self.workers and self.total >= WORKER_AFTER:
            self._start()
        if self.worker is not None and self.worker.in_flight() < IN_FLIGHT:
            self.worker.submit((*self.ctxs, batch))
            self.parts.append(None)
        else:
            self.parts.append(decode_batch(*self.ctxs, batch))

    def close(self) -> None:
        """Stop the worker (also after an error)."""
        if self.worker is not None:
            self.worker.close()

    def result(self) -> DecodedRows:
        self._flush()
        remote = iter(self.worker.results()) if self.worker is not None else iter(())
        rows = DecodedRows()
        for d in self.parts:
            rows.extend(d if d is not None else next(remote))
        return rows


@dataclass
class _Share:
    """One process's part of a capture split by connection (see _split)."""

    parts: list[tuple[tuple[int, int], DecodedRows]]  # ((connection rank, first seq), rows)
    finished: list[StreamMeta]
    unlinked: set[int]
    segments: int


class SplitChildFailed(RuntimeError):
    """The forked child of a split capture died or raised (its message names no data)."""


def _can_fork() -> bool:
    """fork() is safe here only while this process runs no other Python thread (the live collector
    calls decode_capture from a thread; the ingest CLI from its only one)."""
    return hasattr(os, "fork") and threading.active_count() == 1


def _pack(parts: list[tuple[tuple[int, int], DecodedRows]]) -> tuple:
    """A share's rows as columns per table (all its parts together) plus each part's key and row counts:
    pickles in a third of the time of the dicts. Tables whose rows do not share one key order (never,
    today) travel as dicts."""
    tables: dict[str, tuple | list] = {}
    for t in TABLE_NAMES:
        rs = [r for _, rows in parts for r in rows.tables.get(t, ())]
        keys = tuple(rs[0]) if rs else ()
        tables[t] = (keys, [[r[k] for r in rs] for k in keys]) if all(tuple(r) == keys for r in rs) else rs
    index = [(key, [len(rows.tables.get(t, ())) for t in TABLE_NAMES], rows.errors, rows.exchanges)
             for key, rows in parts]
    return tables, index


def _unpack(packed: tuple) -> list[tuple[tuple[int, int], DecodedRows]]:
    tables, index = packed
    flat = {}
    for t, v in tables.items():
        if isinstance(v, tuple):
            keys, cols = v
            flat[t] = [dict(zip(keys, vals, strict=True)) for vals in zip(*cols, strict=True)]
        else:
            flat[t] = v
    pos = dict.fromkeys(TABLE_NAMES, 0)
    parts = []
    for key, counts, errors, exchanges in index:
        rows = DecodedRows(errors=errors, exchanges=exchanges)
        for t, n in zip(TABLE_NAMES, counts, strict=True):
            rows.tables[t] = flat[t][pos[t] : pos[t] + n]
            pos[t] += n
        parts.append((key, rows))
    return parts


class _Merged:
    """What run() returns, rebuilt from the two shares (the StreamAssembler's `finished` is all the
    rest of decode_capture reads)."""

    def __init__(self, finished: list[StreamMeta]):
        self.finished = finished


def _drain(fd: int) -> None:
    """Empty a split capture's queue: the other process stops after its current chunk."""
    while os.read(fd, 1 << 16):
        pass


def _anon_file() -> int:
    """A file in memory only (rows are redacted, but they need not touch a disk either)."""
    return os.memfd_create("routerwatch-split", os.MFD_CLOEXEC)


_PUNCH_HOLE_KEEP_SIZE = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE


@functools.cache
def _fallocate() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):
        return None


def _release(fd: int, end: int) -> None:
    """Give back the memory of an anonymous file's first `end` bytes (already read). Best effort: where
    fallocate cannot punch holes the file just keeps them until it is closed."""
    fallocate = _fallocate()
    if fallocate is not None:
        fallocate(fd, _PUNCH_HOLE_KEEP_SIZE, ctypes.c_int64(0), ctypes.c_int64(end))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _ChildRows:
    """The parent's side of a split child's results. The child appends pickled messages to an
    anonymous in-memory file and then writes the message's end offset to a pipe; the parent picks
    them up between its own connections (poll) and at the end (wait). A file, not a pipe, carries
    the rows because a pipe fills: the child then sleeps until the parent reads, and a reader thread
    in the parent gets the GIL only every switch interval (5 ms), which left the child idle for a
    third of its time. Nothing here blocks the child; what the parent has read is punched out of
    the file, so it holds only rows not yet taken."""

    def __init__(self, data: int, notify: int):
        self.data, self.notify = data, notify
        self.pos = 0
        self.buf = b""
        self.received: list[tuple[tuple[int, int], DecodedRows]] = []
        self.final: tuple[str, Any] | None = None

    def _take(self, raw: bytes) -> None:
        self.buf += raw
        n = len(self.buf) // 8 * 8
        ends, self.buf = self.buf[:n], self.buf[n:]
        for i in range(0, n, 8):
            end = int.from_bytes(ends[i : i + 8], "little")
            kind, value = pickle.loads(os.pread(self.data, end - self.pos, self.pos))
            self.pos = end
            if kind == "part":
                self.received.extend(_unpack(value))
            else:
                self.final = (kind, value)
        if n:
            _release(self.data, self.pos)  # rows read are rows in this process: the file need not keep them

    def poll(self) -> None:
        """Take what the child has finished so far, without waiting."""
        if self.final is None:
            with contextlib.suppress(BlockingIOError):
                self._take(os.read(self.notify, 1 << 16))

    def wait(self) -> tuple[str, Any]:
        """Everything up to the child's final message (an error if it died first)."""
        os.set_blocking(self.notify, True)
        while self.final is None:
            raw = os.read(self.notify, 1 << 16)
            if not raw:  # EOF: the child died (or was killed)
                return ("error", "the decode child exited without a result")
            self._take(raw)
        return self.final


def _split(job: NativeDecrypt, run_share: Callable[..., _Share], unlinked: set[int]) -> tuple[_Merged, DecodedRows]:
    """Decrypt, parse and decode a big capture in two processes: after the capture is read and checked
    (job.prepare(), in this process, so NativeUnsure comes before the fork) this process and a forked
    child take chunks of connections from a shared queue (a pipe, so whichever is free takes the next:
    no fixed split to balance) and the child hands back its rows as columns (see _ChildRows); nothing
    is pickled per exchange and no interpreter starts. Rows are merged in capture order (connection,
    then exchange). NativeUnsure in either process is raised here, naming the capture's first such
    connection, so the caller falls back to tshark exactly as without the split."""
    job.prepare()
    chunks, _per = job.queue_chunks()
    q_read, q_write = os.pipe()
    try:
        os.write(q_write, b"".join(k.to_bytes(4, "little") for k in range(chunks)))  # fits the pipe buffer
    finally:
        os.close(q_write)
    job.queue = q_read
    data = _anon_file()
    n_read, n_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        status = 1
        try:
            os.close(n_read)

            def emit(kind: str, value: Any) -> None:
                _write_all(data, pickle.dumps((kind, value), protocol=pickle.HIGHEST_PROTOCOL))
                _write_all(n_write, os.lseek(data, 0, os.SEEK_CUR).to_bytes(8, "little"))

            try:
                kind, value = "ok", run_share(job, lambda parts: emit("part", _pack(parts)))
            except NativeUnsure as e:  # the parent finds out which connection is the capture's first
                kind, value = "unsure", (job.current, str(e))
                _drain(q_read)
            except BaseException as e:  # reported without the data (it may hold secrets)
                kind, value = "error", f"{type(e).__name__} in the decode child"
            emit(kind, value)
            status = 0
        finally:
            os._exit(status)
    os.close(n_write)
    os.set_blocking(n_read, False)
    child = _ChildRows(data, n_read)
    done = False
    unsure: list[tuple[int, str]] = []
    try:
        try:
            mine = run_share(job, poll=child.poll)
        except NativeUnsure as e:
            # the message must name the capture's first such connection, as without the split: the
            # child has taken every chunk before this one; empty the queue so it stops after its own
            unsure.append((job.current, str(e)))
            _drain(q_read)
        kind, theirs = child.wait()
        done = True
    finally:
        os.close(q_read)
        job.queue = None
        if not done:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(n_read)
        os.close(data)
    if kind == "unsure":
        unsure.append(theirs)
    if unsure:
        raise NativeUnsure(min(unsure)[1])
    if kind != "ok":
        raise SplitChildFailed(theirs)
    theirs.parts = child.received
    rows = DecodedRows()
    for _key, part in sorted(mine.parts + theirs.parts, key=lambda kp: kp[0]):
        rows.extend(part)
    unlinked.clear()
    unlinked.update(mine.unlinked | theirs.unlinked)
    job.rows = mine.segments + theirs.segments
    finished = sorted(mine.finished + theirs.finished, key=lambda m: job.rank.get(m.stream, -1))
    return _Merged(finished), rows


@dataclass
class CaptureDecodeResult:
    tables: dict[str, list[dict]] = field(default_factory=lambda: {t: [] for t in TABLE_NAMES})
    decrypted_flow_uids: set[str] = field(default_factory=set)
    stats: dict = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # loud problems (never secret content)
    warnings: list[str] = field(default_factory=list)
    streams: list[StreamMeta] = field(default_factory=list)


class _FlowIndex:
    """community_id -> [(start, end, flow_uid, src_ip, src_port)] from the ingest's flows table."""

    def __init__(self, flows: pa.Table | None):
        self.by_cid: dict[str, list[tuple[float, float, str, str, int]]] = defaultdict(list)
        if flows is None or flows.num_rows == 0:
            return
        cols = {n: flows.column(n) for n in flows.column_names}

        def secs(name: str) -> list[float | None]:
            col = cols.get(name)
            if col is None:
                return [None] * flows.num_rows
            if pa.types.is_timestamp(col.type):
                return [None if v is None else v / 1e6 for v in pc.cast(col.cast(pa.timestamp("us")), pa.int64()).to_pylist()]
            return [None if v is None else float(v) for v in col.to_pylist()]

        starts, ends = secs("ts_start"), secs("ts_end")
        for cid, uid, s, e, sip, sp in zip(
            cols["community_id"].to_pylist(), cols["flow_uid"].to_pylist(), starts, ends,
            cols["src_ip"].to_pylist() if "src_ip" in cols else [None] * flows.num_rows,
            cols["src_port"].to_pylist() if "src_port" in cols else [None] * flows.num_rows, strict=True,
        ):
            if cid and uid:
                self.by_cid[cid].append((s if s is not None else float("-inf"), e if e is not None else float("inf"),
                                         uid, sip, sp))

    def find(self, cid: str, ts: float) -> tuple[str, str, int] | None:
        best = None
        for s, e, uid, sip, sp in self.by_cid.get(cid, ()):
            if s - TIME_SLACK_S <= ts <= e + TIME_SLACK_S:
                d = abs(ts - s)
                if best is None or d < best[0]:
                    best = (d, uid, sip, sp)
        return best[1:] if best else None

    def originator(self, src: str, sport: int, dst: str, dport: int) -> bool | None:
        try:
            cid = community_id("tcp", src, sport, dst, dport)
        except ValueError:
            return None
        for _s, _e, _uid, sip, sp in self.by_cid.get(cid, ()):
            if sip is not None:
                return sip == src and sp == sport
        return None


class _Decoding:
    """What the steps of decode_capture share: the decode contexts (TLS and cleartext), the ingest's
    flows by Community ID, and the connections that matched none of them (`unlinked`)."""

    def __init__(self, index: _FlowIndex, ctx_tls: DecodeContext, ctx_clear: DecodeContext, parse_cap: int,
                 workers: bool, eager: bool):
        self.index = index
        self.ctx_tls, self.ctx_clear = ctx_tls, ctx_clear
        self.parse_cap = parse_cap
        self.workers = workers
        self.eager = eager  # start the decode worker at once (a big capture file)
        self.unlinked: set[int] = set()

    def link(self, meta: StreamMeta) -> None:
        """Set a stream's Community ID and, when one of the ingest's flows matches in time, its flow_uid."""
        if meta.community_id is not None:
            return
        try:
            meta.community_id = community_id("tcp", meta.src_ip, meta.src_port, meta.dst_ip, meta.dst_port)
        except ValueError:
            meta.community_id = ""
            return
        hit = self.index.find(meta.community_id, meta.ts_first)
        if hit:
            meta.flow_uid = hit[0]
        else:
            self.unlinked.add(meta.stream)

    def _conn(self, meta: StreamMeta) -> Connection:
        self.link(meta)
        return meta.identity()

    def _assemble(self, job: NativeDecrypt | TsharkDecrypt,
                  sink: Callable[[StreamMeta, list[Exchange]], None]) -> StreamAssembler:
        """Every decrypted segment of `job` into connections; each connection's exchanges go to `sink`."""
        asm = StreamAssembler(sink, keep=self.parse_cap, orientation=self.index.originator)
        for seg in job:
            asm.add(seg)
        asm.finish()
        return asm

    def run(self, job: NativeDecrypt | TsharkDecrypt) -> tuple[StreamAssembler, DecodedRows]:
        """The whole capture in this process, LLM decoding shared with a worker process once it is big."""
        decoder = _Decoder(self.ctx_tls, self.ctx_clear, self.workers, eager=self.eager)
        self.unlinked.clear()
        try:
            asm = self._assemble(job, lambda meta, exchanges: decoder.add(self._conn(meta), meta.tls, meta.exchanges,
                                                                            exchanges))
            return asm, decoder.result()
        finally:
            decoder.close()

    def run_share(self, job: NativeDecrypt, send: Callable[[list], None] | None = None,
                  poll: Callable[[], None] | None = None) -> _Share:
        """This process's share of a split capture, decoded here, keyed for merging in capture order;
        with `send`, rows go out every SEND_EXCHANGES exchanges instead (the child's, while it works);
        `poll` runs after each connection's exchanges (the parent taking the child's rows meanwhile)."""
        self.unlinked.clear()
        parts: list[tuple[tuple[int, int], DecodedRows]] = []
        pending = 0

        def sink(meta: StreamMeta, exchanges: list[Exchange]) -> None:
            nonlocal pending
            conn = self._conn(meta)
            rows = decode_exchanges(exchanges, self.ctx_tls if meta.tls else self.ctx_clear, conn,
                                    start_seq=meta.exchanges)
            parts.append(((job.rank.get(meta.stream, -1), meta.exchanges), rows))
            pending += len(exchanges)
            if send is not None and pending >= SEND_EXCHANGES:
                send(parts[:])
                parts.clear()
                pending = 0
            if poll is not None:
                poll()

        asm = self._assemble(job, sink)
        if send is not None and parts:
            send(parts[:])
            parts.clear()
        return _Share(parts, asm.finished, set(self.unlinked), job.rows)


@dataclass
class _Decrypted:
    """What the decryption step hands on: the decryptor that ran, its connections and rows."""

    job: NativeDecrypt | TsharkDecrypt
    asm: StreamAssembler | _Merged
    rows: DecodedRows
    fallback: str | None  # why the native decryptor handed the capture to tshark
    split: bool  # decrypted + decoded by this process and a forked child


def _decrypt(dec: _Decoding, capture: Path, keylog: Path | None, walked: Walked | None, decryptor: str,
             size: int, warnings: list[str]) -> _Decrypted:
    """Native decryption (split across two processes for a big file), else tshark when the native
    path is unsure of the capture (or asked for)."""
    fallback: str | None = None
    split = False
    job: NativeDecrypt | TsharkDecrypt
    if decryptor in ("auto", "native"):
        job = NativeDecrypt(capture, keylog, walked)
        try:
            if dec.workers and size >= EAGER_BYTES and _can_fork():
                try:
                    asm, rows = _split(job, dec.run_share, dec.unlinked)
                    split = True
                except SplitChildFailed as e:  # killed (OOM?) or crashed: nothing is lost, only time
                    warnings.append(f"{e}: the capture was decoded again in one process")
                    job = NativeDecrypt(capture, keylog, walked)
                    asm, rows = dec.run(job)
            else:
                asm, rows = dec.run(job)
        except NativeUnsure as e:
            if decryptor == "native":
                raise
            fallback = str(e)
    if decryptor == "tshark" or fallback is not None:
        job = TsharkDecrypt(capture, keylog)
        asm, rows = dec.run(job)
    return _Decrypted(job, asm, rows, fallback, split and fallback is None)


@dataclass
class DecodeStats:
    """decode_capture's counters; `CaptureDecodeResult.stats` is `as_dict()` of this (ingest stores it
    as JSON in the run's row, `routerwatch ingest` prints a summary of it)."""

    decryptor: str  # 'native' | 'tshark'
    native_fallback: str | None  # why the native decryptor handed this capture to tshark
    split: bool  # decrypted + decoded by this process and a forked child
    segments: int
    tshark_rows: int | None
    tcp_streams: int
    tls_streams: int
    tls_streams_with_app_data: int
    decrypted_flows: int
    undecrypted_flows: int
    decrypted_records: int
    undecrypted_records: int
    retransmissions_dropped: int
    capture_gaps: int
    exchanges: int
    llm_exchanges: int
    tool_calls: int
    secrets_seen: int
    unlinked_streams: int
    parse_errors: int
    keylog_lines: int | None
    keylog_invalid_lines: int | None
    keylog_sessions_matched: int | None
    tshark_exit: int | None
    seconds: float
    keylog_error: str | None = None  # a key log that decrypted none of the connections carrying data
    tshark_warning: str | None = None  # tshark's first stderr line when it exited non-zero

    def as_dict(self) -> dict[str, Any]:
        """The counters as a dict; keylog_error and tshark_warning only when set."""
        out = asdict(self)
        for key in ("keylog_error", "tshark_warning"):
            if out[key] is None:
                del out[key]
        return out


def decode_capture(
    capture_path: str | os.PathLike,
    keylog_path: str | os.PathLike | None,
    *,
    flows: pa.Table | None = None,
    host_id: str,
    secret_key: bytes,
    run_id: str,
    body_cap: int = 256 * 1024,
    parse_cap: int = DEFAULT_KEEP,
    canaries: tuple[str, ...] = (),
    workers: bool = True,
    decryptor: str = "auto",
    walked: Walked | None = None,
) -> CaptureDecodeResult:
    """Decrypt a capture with a key log (and/or its embedded secrets) and decode every HTTP exchange.

    Raises KeyLogError for a key log that is missing or not a key log, TsharkError/TsharkMissing
    when tshark cannot run. A key log that matches no TLS session in the capture is reported in
    `errors` and `stats['keylog_error']` (tshark exits 0 then; the caller decides how loud to be).
    `decryptor`: 'auto' (native, tshark when the native path is unsure), 'native' (raises
    NativeUnsure instead of falling back) or 'tshark'; `stats['decryptor']` says which one ran.
    `walked`: the caller's read of this capture (ingest's), so the native decryptor need not read it again.
    """
    t0 = time.monotonic()
    capture = Path(capture_path)
    keylog: KeyLogInfo | None = read_keylog(keylog_path) if keylog_path is not None else None
    try:
        size = capture.stat().st_size
    except OSError:
        size = 0
    ctx_tls = DecodeContext(host_id, Fingerprinter(secret_key), "keylog", body_cap=body_cap,
                            parse_cap=parse_cap, canaries=canaries)
    ctx_clear = DecodeContext(host_id, ctx_tls.fingerprinter, "cleartext", body_cap=body_cap,
                              parse_cap=parse_cap, canaries=canaries)
    dec = _Decoding(_FlowIndex(flows), ctx_tls, ctx_clear, parse_cap, workers, eager=size >= EAGER_BYTES)
    result = CaptureDecodeResult()
    keylog_file = Path(keylog_path) if keylog_path is not None else None
    d = _decrypt(dec, capture, keylog_file, walked, decryptor, size, result.warnings)
    seconds = round(time.monotonic() - t0, 3)
    result.tables = d.rows.tables
    result.streams = d.asm.finished
    result.stats = _summarise(d, dec, keylog, seconds, result).as_dict()
    return result


def _summarise(d: _Decrypted, dec: _Decoding, keylog: KeyLogInfo | None, seconds: float,
               result: CaptureDecodeResult) -> DecodeStats:
    """Counters over the decoded connections; the decrypted flows' uids, and the loud problems (a key
    log that decrypted nothing, one every user may read) into `result`."""
    finished = d.asm.finished
    tls_streams = [m for m in finished if m.tls]
    with_app = [m for m in tls_streams if m.app_records > 0]
    decrypted = [m for m in tls_streams if m.decrypted]
    undecrypted = [m for m in with_app if not m.decrypted]
    for m in decrypted:
        dec.link(m)
        if m.flow_uid:
            result.decrypted_flow_uids.add(m.flow_uid)
    randoms = {m.client_random for m in tls_streams if m.client_random}
    matched = len(randoms & keylog.client_randoms) if keylog else None
    job, rows = d.job, d.rows
    stats = DecodeStats(
        decryptor="native" if isinstance(job, NativeDecrypt) else "tshark",
        native_fallback=d.fallback,
        split=d.split,
        segments=job.rows,
        tshark_rows=job.rows if isinstance(job, TsharkDecrypt) else None,
        tcp_streams=len(finished),
        tls_streams=len(tls_streams),
        tls_streams_with_app_data=len(with_app),
        decrypted_flows=len(decrypted),
        undecrypted_flows=len(undecrypted),
        decrypted_records=sum(m.app_records for m in decrypted),
        undecrypted_records=sum(m.app_records for m in undecrypted),
        retransmissions_dropped=sum(m.retransmissions for m in finished),
        capture_gaps=sum(m.gaps for m in finished),
        exchanges=rows.exchanges,
        llm_exchanges=len(rows.tables["llm_exchanges"]),
        tool_calls=len(rows.tables["tool_calls"]),
        secrets_seen=len(rows.tables["secrets_seen"]),
        unlinked_streams=len(dec.unlinked),
        parse_errors=len(rows.errors) + sum(1 for m in finished if m.error),
        keylog_lines=keylog.lines if keylog else None,
        keylog_invalid_lines=keylog.invalid if keylog else None,
        keylog_sessions_matched=matched,
        tshark_exit=job.returncode,
        seconds=seconds,
    )
    if keylog is not None and with_app and not decrypted:
        msg = (f"key log {keylog.path} decrypted none of the {len(with_app)} TLS connections carrying data "
               f"({matched} of {len(randoms)} ClientHello randoms are in it): wrong key log for this capture?")
        result.errors.append(msg)
        stats.keylog_error = msg
    if keylog is not None and keylog.world_readable:
        result.warnings.append(f"key log {keylog.path} is readable by every user: it holds TLS secrets (chmod 600)")
    if job.returncode not in (0, None):
        err = job.stderr_text()
        line = next((ln for ln in err.splitlines() if ln.strip() and "Running as user" not in ln), "")
        stats.tshark_warning = line[:300]
    return stats
