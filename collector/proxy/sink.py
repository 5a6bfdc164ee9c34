"""From proxy observations to store rows, off the relay's thread.

The relay hands every finished exchange and every closed connection to a bounded queue; one
worker thread attributes the agent's connection to a process, runs the shared HTTP/LLM decoders
and batches the rows into the store (BatchWriter). Each proxied connection becomes two `flows`
rows with `source = 'proxy'`: the agent's leg (agent -> proxy) and the upstream leg (proxy ->
router), each with its Community ID so the same connections seen by eBPF or a capture join them;
both carry the agent's pid, and exchanges point at the upstream leg's flow_uid (the flow to the
router).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import queue
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

from collector.capture.community_id import community_id
from collector.protocols.messages import Connection
from collector.proxy.server import ProxiedConnection, ProxySink
from collector.proxy.tap import Exchange, websocket_as_http

QUEUE_MAX = 20_000


def _ts(t: float | None) -> dt.datetime | None:
    return None if t is None else dt.datetime.fromtimestamp(t, dt.UTC).replace(tzinfo=None)


def flow_uid(host_id: str, conn_id: str, leg: str) -> str:
    digest = hashlib.blake2b(f"{host_id}|proxy|{conn_id}|{leg}".encode(), digest_size=10).digest()
    return "P" + base64.b32encode(digest).decode().lower()


class SocketOwners:
    """Which process owns the agent's end of a loopback connection to the proxy (/proc/net/tcp*
    inode -> /proc/PID/fd), searched among `root_pid` and its descendants; else `root_pid`."""

    def __init__(self, root_pid: int | None):
        self.root_pid = root_pid
        self._last: int | None = None  # most connections come from the process that made the previous one
        self._tree: tuple[float, list[int]] = (0.0, [])

    @staticmethod
    def _hex(ip: str) -> tuple[str, str]:
        """(proc file, address as /proc/net/tcp* prints it: 32-bit words in host byte order)."""
        addr = ipaddress.ip_address(ip)
        if addr.version == 4:
            return "/proc/net/tcp", struct.pack("<I", int(addr)).hex().upper()
        words = struct.unpack(">4I", addr.packed)
        return "/proc/net/tcp6", "".join(struct.pack("<I", w).hex().upper() for w in words)

    def _inode(self, ip: str, port: int, peer_ip: str, peer_port: int) -> str | None:
        """The socket inode of the connection ip:port -> peer_ip:peer_port (one substring search)."""
        name, local = self._hex(ip)
        _, remote = self._hex(peer_ip)
        needle = f"{local}:{port:04X} {remote}:{peer_port:04X} "
        try:
            text = Path(name).read_text()
        except OSError:
            return None
        i = text.find(needle)
        if i < 0:
            return None
        line = text[text.rfind("\n", 0, i) + 1 : text.find("\n", i)]
        f = line.split()
        return f[9] if len(f) > 9 else None

    def _descendants(self, max_age: float = 1.0) -> list[int]:
        if self.root_pid is None:
            return []
        t, tree = self._tree
        if tree and tree[0] == self.root_pid and time.monotonic() - t < max_age:
            return tree
        children: dict[int, list[int]] = {}
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text()
                ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
        out, todo = [], [self.root_pid]
        while todo:
            p = todo.pop()
            out.append(p)
            todo.extend(children.get(p, []))
        self._tree = (time.monotonic(), out)
        return out

    @staticmethod
    def _holds(pid: int, target: str) -> bool:
        try:
            return any(_readlink(fd) == target for fd in Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            return False

    def owner(self, client_ip: str, client_port: int, proxy_ip: str, proxy_port: int) -> int | None:
        inode = self._inode(client_ip, client_port, proxy_ip, proxy_port)
        if inode and inode != "0":
            target = f"socket:[{inode}]"
            if self._last is not None and self._holds(self._last, target):
                return self._last
            for fresh in (False, True):  # the cached tree first; a new child process needs a rescan
                for pid in self._descendants(max_age=0.0 if fresh else 1.0):
                    if pid != self._last and self._holds(pid, target):
                        self._last = pid
                        return pid
        return self.root_pid


def _readlink(p: Path) -> str | None:
    try:
        return str(p.readlink())
    except OSError:
        return None


def attribute(conn: ProxiedConnection, owners: SocketOwners) -> None:
    """Set conn.pid (and process_start) once: the owner of the agent's socket, else the wrapped root."""
    if conn.pid is not None:
        return
    if conn.extra.get("attributed") or conn.client is None:
        if conn.pid is None and owners.root_pid is not None:
            conn.pid = owners.root_pid
            conn.process_start = _start_time(conn.pid)
        return
    conn.extra["attributed"] = True
    pid = owners.owner(conn.client.ip, conn.client.port, conn.listen.ip, conn.listen.port)
    conn.process_start = _start_time(pid)
    conn.pid = pid


def _start_time(pid: int | None) -> float | None:
    if pid is None:
        return None
    from collector.wrap import process_start_time

    return process_start_time(pid)


class StoreSink(ProxySink):
    """Decode and write everything the proxy sees; `healthy` turns False when writes keep failing."""

    def __init__(self, writer, decoder: Callable[..., dict[str, list[dict]]], *,  # noqa: ANN001 - BatchWriter
                 host_id: str, root_pid: int | None = None, threaded: bool = True, processes=None):  # noqa: ANN001
        self.writer = writer
        self.processes = processes  # collector.processes.ProcessTable: `processes` rows for agent pids
        self.host_id = host_id
        self.owners = SocketOwners(root_pid)
        self._decoder = decoder
        self._q: queue.Queue = queue.Queue(QUEUE_MAX)
        self.dropped = 0
        self.errors = 0
        self.last_error: str | None = None
        self.counts = {"connections": 0, "exchanges": 0, "events": 0}
        self._seq: dict[str, int] = {}  # exchanges so far per connection (exchange ids derive from it)
        self._gate: dict[tuple, list] = {}  # (conn_id, exchange key) -> gate decisions awaiting their exchange
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._work, name="routerwatch-proxy-sink", daemon=True)
            self._thread.start()

    @property
    def healthy(self) -> bool:  # type: ignore[override]
        return self._q.qsize() < QUEUE_MAX - 1 and self.errors < 3

    def set_root_pid(self, pid: int) -> None:
        self.owners.root_pid = pid

    # -- called on the proxy's thread: enqueue only --------------------------------------------
    def _put(self, item: tuple) -> None:
        try:
            self._q.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def connection_opened(self, conn: ProxiedConnection) -> None:
        self._put(("open", conn))

    def exchange(self, conn: ProxiedConnection, ex: Exchange) -> None:
        self._put(("exchange", conn, ex))

    def connection_closed(self, conn: ProxiedConnection) -> None:
        self._put(("closed", conn))

    def event(self, conn: ProxiedConnection | None, kind: str, detail: str) -> None:
        self._put(("event", conn, kind, detail, time.time()))

    def gate_decisions(self, conn: ProxiedConnection, judged: list) -> None:
        self._put(("gate", conn, judged))

    # -- worker ---------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            self.handle(item)

    def handle(self, item: tuple) -> None:
        """Process one queued observation ('open' | 'exchange' | 'closed' | 'event', args...)."""
        try:
            getattr(self, "_on_" + item[0])(*item[1:])
            self.errors = 0
        except Exception as exc:  # counted, surfaced in proxy_events; never kills the worker
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]

    def attribute(self, conn: ProxiedConnection) -> None:
        self._attribute(conn)

    def _attribute(self, conn: ProxiedConnection) -> None:
        attribute(conn, self.owners)

    def _on_open(self, conn: ProxiedConnection) -> None:
        self._attribute(conn)

    def _on_proc(self, info) -> None:  # noqa: ANN001 - collector.processes.ProcInfo read by the proxy
        """A process the proxy attributed a connection to: its `processes` row (+ its ancestors),
        command line redacted, so flows and exchanges join to it without the live collector."""
        if self.processes is None:
            return
        self.processes.seen(info.pid, ppid=info.ppid, start=info.start_time, uid=info.uid, comm=info.comm,
                            exe=info.exe, argv=info.argv, is_exec=True)
        rows, secrets = self.processes.take_rows()
        self.writer.add("processes", rows)
        self.writer.add("secrets_seen", secrets)

    def _on_exchange(self, conn: ProxiedConnection, ex: Exchange) -> None:
        self._attribute(conn)
        self.counts["exchanges"] += 1
        req, resp = ex.request, ex.response
        upstream = self.upstream(conn)
        seq = self._seq[conn.conn_id] = self._seq.get(conn.conn_id, -1) + 1
        tables = self._decode(req, resp, upstream, seq, ws=ex.websocket)
        if ex.websocket is not None:
            as_http = websocket_as_http(ex)
            if as_http is not None:  # a distinct exchange id for the LLM view of the session
                for t, rows in self._decode(*as_http, upstream, seq + 1_000_000, ws=None, llm_only=True).items():
                    tables.setdefault(t, []).extend(rows)
        for table, rows in tables.items():
            if rows:
                self.writer.add(table, rows)
        key = ("h2", req.stream_id) if req.stream_id is not None else ("h1", seq)
        judged = self._gate.pop((conn.conn_id, key), None)
        if judged:
            llm = tables.get("llm_exchanges") or tables.get("http") or [{}]
            self._write_gate(conn, judged, llm[-1].get("exchange_id"))

    def _on_gate(self, conn: ProxiedConnection, judged: list) -> None:
        """Decisions wait for their exchange (the tap reports it once the response is complete)."""
        self._attribute(conn)
        for j in judged:
            self._gate.setdefault((conn.conn_id, tuple(j.key)), []).append(j)

    def _write_gate(self, conn: ProxiedConnection, judged: list, exchange_id: str | None) -> None:
        from collector.policy.record import decision_row

        rows = []
        for j in judged:
            d = j.decision
            row, _secrets = decision_row(  # the exchange's own decode recorded the secrets it carries
                d.call, d.verdict, ts=j.ts, host_id=self.host_id, source="proxy", fp=self._decoder.fp,
                policy=j.policy or "", agent=j.agent, router=j.router, pid=conn.pid,
                flow_uid=flow_uid(self.host_id, conn.conn_id, "upstream"), exchange_id=exchange_id,
                streamed=d.streamed, held_ms=j.held_ms)
            rows.append(row)
        self.counts["gate"] = self.counts.get("gate", 0) + len(rows)
        self.writer.add("gate_decisions", rows)

    def upstream(self, conn: ProxiedConnection) -> Connection:
        """The connection the proxy's exchanges travel on: its leg to the router (the flow they point at)."""
        local, peer = conn.upstream_local, conn.upstream_peer
        cid = None
        if local is not None and peer is not None:
            cid = community_id("tcp", local.ip, local.port, peer.ip, peer.port)
        return Connection(
            flow_uid=flow_uid(self.host_id, conn.conn_id, "upstream"), community_id=cid,
            src_ip=local.ip if local else None, src_port=local.port if local else None,
            dst_ip=peer.ip if peer else None, dst_port=conn.target_port, server_name=conn.target_host,
            alpn=conn.alpn, pid=conn.pid,
        )

    def _decode(self, req, resp, upstream: Connection, seq: int, ws=None,  # noqa: ANN001
                llm_only: bool = False) -> dict[str, list[dict]]:
        tables = self._decoder(req, resp, upstream, self.host_id, seq)
        if ws is not None:
            for row in tables.get("http", []):
                hdrs = json.loads(row.get("response_headers") or "[]") if isinstance(row.get("response_headers"), str) else []
                row["response_headers"] = json.dumps([*hdrs, ["x-routerwatch-websocket", json.dumps(ws.as_dict())]])
        if llm_only:
            tables = {k: v for k, v in tables.items() if k != "http"}
        return tables

    def _on_closed(self, conn: ProxiedConnection) -> None:
        self._attribute(conn)
        self._seq.pop(conn.conn_id, None)
        for k in [k for k in self._gate if k[0] == conn.conn_id]:  # decisions whose exchange never completed
            self._write_gate(conn, self._gate.pop(k), None)
        self.counts["connections"] += 1
        h = self.host_id
        rows = []
        if conn.client is not None and conn.listen is not None:
            rows.append(self._flow(conn, "agent", conn.client.ip, conn.client.port, conn.listen.ip, conn.listen.port))
        if conn.upstream_local is not None and conn.upstream_peer is not None:
            rows.append(self._flow(conn, "upstream", conn.upstream_local.ip, conn.upstream_local.port,
                                   conn.upstream_peer.ip, conn.upstream_peer.port))
            if conn.tls_version:
                self.writer.add("tls", [{
                    "ts": _ts(conn.ts_start), "host_id": h, "flow_uid": flow_uid(h, conn.conn_id, "upstream"),
                    "version": conn.tls_version.replace("TLSv", "TLS "), "sni": conn.target_host,
                    "alpn": conn.extra.get("upstream_offer", "http/1.1"), "alpn_selected": conn.alpn, "cipher": conn.cipher,
                    "decrypted": conn.scheme == "https",
                }])
        self.writer.add("flows", rows)

    def _flow(self, conn: ProxiedConnection, leg: str, sip: str, sport: int, dip: str, dport: int) -> dict:
        return {
            "flow_uid": flow_uid(self.host_id, conn.conn_id, leg),
            "community_id": community_id("tcp", sip, sport, dip, dport),
            "host_id": self.host_id, "ts_start": _ts(conn.ts_start), "ts_end": _ts(conn.ts_end),
            "proto": "tcp", "src_ip": sip, "src_port": sport, "dst_ip": dip, "dst_port": dport,
            "bytes_out": conn.bytes_out, "bytes_in": conn.bytes_in,
            "server_name": conn.target_host, "pid": conn.pid, "process_start": conn.process_start,
            "source": "proxy", "proxy_leg": leg, "proxy_scheme": conn.scheme,  # history: Zeek letters only (none seen here)
        }

    def _on_event(self, conn: ProxiedConnection | None, kind: str, detail: str, ts: float) -> None:
        if conn is not None:
            self._attribute(conn)
        self.counts["events"] += 1
        self.writer.add("proxy_events", [{
            "ts": _ts(ts), "host_id": self.host_id, "kind": kind, "detail": detail[:1000],
            "pid": conn.pid if conn else None,
            "flow_uid": flow_uid(self.host_id, conn.conn_id, "agent") if conn else None,
            "target": f"{conn.target_host}:{conn.target_port}" if conn else None,
        }])

    def close(self, timeout: float = 300.0) -> None:
        """Drain the queue, write a final event with the counters, flush."""
        if self._thread is not None:
            self._q.put(None)
            self._thread.join(timeout)
        if self.dropped or self.last_error:
            self._on_event(None, "sink-loss", json.dumps({"dropped": self.dropped, "last_error": self.last_error}), time.time())
        self.writer.flush()



class ProcessSink(ProxySink):
    """A StoreSink in a child process: decoding and secret scanning are CPU-heavy, and in the
    proxy's process they would hold the GIL against the relay (measured: tens of ms of added
    latency). The relay only queues observations (pickled on collector.parallel's writer thread); the
    child decodes and writes. Agent attribution stays here (it needs the agent's sockets while they
    exist).

    The child is collector.parallel's `Child` (`python -m collector.proxy.sink`), not a fork: the proxy
    has threads. The store's address travels as the first message, never on the command line (a
    DuckLake address may carry a password, and every user may read a process's arguments). When
    the proxy dies, the child's stdin closes: it flushes what it holds and exits."""

    def __init__(self, store_spec: str, host_id: str, start_timeout: float = 120.0):
        from collector.parallel import Child

        self.owners = SocketOwners(None)
        self._errors = 0  # the child's count of consecutive failed observations
        self._started = threading.Event()
        self._failed: str | None = None
        self._child = Child("collector.proxy.sink", on_reply=self._reply, limit=QUEUE_MAX,
                            name="routerwatch-proxy-sink")
        self._child.send(("open", store_spec, host_id))
        deadline = time.monotonic() + start_timeout
        while not self._started.wait(0.05):
            err = None
            if not self._child.alive():
                self._started.wait(0.5)  # its last reply may still be on its way
                err = self._failed or f"the recording process exited ({self._child.proc.returncode})"
            elif time.monotonic() > deadline:
                err = "the recording process did not start"
            if err is not None and not self._started.is_set():
                self._child.kill()
                raise RuntimeError(err)
        if self._failed is not None:
            self._child.kill()
            raise RuntimeError(self._failed)
        self.dropped = 0
        self._procs_sent: set[int] = set()
        self._lock = threading.Lock()
        self._held: dict[str, list[tuple]] = {}  # observations of connections still being attributed

    def _reply(self, message: tuple) -> None:
        """The child's messages: ('ready',), ('failed', why) at start; ('errors', n) when its count changes."""
        if message[0] == "errors":
            self._errors = message[1]
            return
        if message[0] == "failed":
            self._failed = message[1]
        self._started.set()

    @property
    def healthy(self) -> bool:  # type: ignore[override]
        return self._child.alive() and self._errors < 3 and not self._child.full()

    def _put(self, item: tuple) -> None:
        if not self._child.send(item, block=False):
            self.dropped += 1

    def set_root_pid(self, pid: int) -> None:
        self.owners.root_pid = pid
        self._child.send(("root", pid))

    def attribute(self, conn: ProxiedConnection) -> None:
        """Runs in a worker thread while upstream connects; the connection's observations wait for it,
        so the recorder never sees a half-attributed connection (nor looks up a process that exited)."""
        try:
            attribute(conn, self.owners)
            pid = conn.pid
            if pid is not None and pid not in self._procs_sent:
                from collector.processes import read_proc

                self._procs_sent.add(pid)
                info = read_proc(pid)  # now, while it surely runs; the child may see it only after it exited
                if info is not None:
                    self._put(("proc", info))
        finally:
            with self._lock:
                held = self._held.pop(conn.conn_id, [])
            for item in held:
                self._put(item)

    def connection_opened(self, conn: ProxiedConnection) -> None:
        with self._lock:
            self._held[conn.conn_id] = []  # until attribute() is done

    def _put_for(self, conn: ProxiedConnection, item: tuple) -> None:
        with self._lock:
            held = self._held.get(conn.conn_id)
            if held is not None:
                held.append(item)
                return
        self._put(item)

    def exchange(self, conn: ProxiedConnection, ex: Exchange) -> None:
        self._put_for(conn, ("exchange", conn, ex))

    def connection_closed(self, conn: ProxiedConnection) -> None:
        self._put_for(conn, ("closed", conn))

    def event(self, conn: ProxiedConnection | None, kind: str, detail: str) -> None:
        self._put(("event", conn, kind, detail, time.time()))

    def gate_decisions(self, conn: ProxiedConnection, judged: list) -> None:
        self._put_for(conn, ("gate", conn, judged))

    def close(self, timeout: float = 600.0) -> None:
        """Let the child write everything queued, then wait for it (it flushes before exiting)."""
        with self._lock:
            held, self._held = self._held, {}
        for items in held.values():
            for item in items:
                self._put(item)
        if self.dropped:
            self._put(("event", None, "sink-loss", json.dumps({"dropped_in_proxy": self.dropped}), time.time()))
        self._child.finish(timeout)


def _child_main() -> int:
    """The recording process: open the store named by the first message, then decode and write each
    observation until the proxy closes the pipe (it finished, or died: then too the rows are flushed)."""
    from collector.parallel import reply, serve
    from collector.processes import ProcessTable
    from collector.proxy.decode import ExchangeDecoder
    from collector.secrets import Fingerprinter
    from collector.store import Store
    from collector.store.writer import BatchWriter

    requests = serve()
    opening = next(requests, None)
    if opening is None or opening[0] != "open":
        return 2
    _, store_spec, host_id = opening
    try:
        st = Store.open(store_spec)
    except Exception as exc:
        reply(("failed", f"cannot open the store: {exc}"))
        return 1
    with st:
        writer = BatchWriter(st, max_delay=1.0, background=True)
        fp = Fingerprinter(st.secret_key())
        sink = StoreSink(writer, ExchangeDecoder(fp), host_id=host_id, threaded=False,
                         processes=ProcessTable(host_id, fp))
        reply(("ready",))
        errors = 0
        for item in requests:
            if item[0] == "root":
                sink.set_root_pid(item[1])
                continue
            sink.handle(item)
            if sink.errors != errors:
                errors = sink.errors
                reply(("errors", errors))
        sink.close()
        writer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(_child_main())
