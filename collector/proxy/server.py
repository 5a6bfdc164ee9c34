"""The TLS-intercepting proxy: CONNECT in, TLS terminated with a leaf from our CA, TLS out to the
real server verified as strictly as the agent would, bytes relayed as they arrive.

Why a byte relay with a tap rather than a parse-and-rebuild proxy: the agent and the router see
exactly the bytes the other sent (no re-framing, no header normalisation), added latency is one
read and one write per chunk, and WebSocket or any other upgrade just keeps flowing. Parsing
happens beside the relay (collector.proxy.tap) and records go to a sink (a recording child process).

HTTP/2: the proxy never translates between protocols, it makes both legs negotiate the same one,
so the relay stays a byte relay (flow control and stream concurrency end to end between agent and
router) and the tap picks the parser (collector.protocols: HTTP/1.1 or the passive HTTP/2 one). The upstream
connection is made first (its certificate is checked before the agent gets `200`), offering `h2`
and `http/1.1`; the agent is then offered `h2` only when the upstream selected it. An agent that
picks `http/1.1` although the router speaks h2 gets a fresh upstream connection offering only
`http/1.1` (the unused one is closed), and the other way round; the proxy remembers per
host:port what the last agent picked, so a host's agents normally get the right upstream on the first
try. An h2-only agent (gRPC) against an HTTP/1.1-only router is not offered h2 and gives up, as it
would without the proxy; an h2 agent whose second upstream connection fails is disconnected (an
HTTP/1.1 agent gets a 502). Failure policy (`fail_open`):

* upstream certificate invalid, or upstream unreachable: always 502 to the agent, whatever the
  policy (never weaker than the agent's own TLS);
* the agent rejects our certificate (pinning, CA not trusted): closed = the connection fails;
  open = that host is tunnelled untouched from then on (recorded as flows, not decrypted);
* the sink cannot record (store down, queue full): closed = new connections get 503 until it
  recovers; open = traffic continues and the loss is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import os
import secrets
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from collector.proxy.ca import CertificateAuthority
from collector.proxy.tap import Exchange, H2Tap, Http1Tap

READ_SIZE = 256 * 1024
HEAD_LIMIT = 64 * 1024
CONNECT_TIMEOUT = 30.0


def half_close(dst: asyncio.StreamWriter) -> None:
    """End one direction of a relayed connection: a FIN where the transport can send one (so the other
    side may still answer), else close it; a peer already gone is not an error here."""
    with contextlib.suppress(Exception):
        if dst.can_write_eof():
            dst.write_eof()
        else:
            dst.close()


@dataclass
class Endpoint:
    ip: str
    port: int


@dataclass
class ProxiedConnection:
    """One agent connection through the proxy: its two legs, byte counts and outcome."""

    conn_id: str
    client: Endpoint  # the agent's side of agent -> proxy
    listen: Endpoint  # the proxy's side of agent -> proxy
    target_host: str
    target_port: int
    scheme: str  # 'https' | 'http' | 'tunnel'
    ts_start: float
    upstream_local: Endpoint | None = None  # proxy side of proxy -> upstream
    upstream_peer: Endpoint | None = None
    ts_end: float | None = None
    bytes_out: int = 0  # agent -> upstream (plaintext)
    bytes_in: int = 0
    tls_version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    error: str | None = None
    pid: int | None = None
    process_start: float | None = None
    exchanges: int = 0
    extra: dict = field(default_factory=dict)


@dataclass
class _Request:
    """An agent's first request head, as the proxy reads it."""

    method: str
    target: str
    rest: bytes  # the head after the request line
    host: str
    port: int
    scheme: str  # 'https' (CONNECT) | 'http' (absolute URL)


@dataclass
class _Legs:
    """The two legs of one agent connection; the upstream one may be replaced once (protocol match)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    up_reader: asyncio.StreamReader | None = None
    up_writer: asyncio.StreamWriter | None = None

    def both(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, asyncio.StreamReader, asyncio.StreamWriter]:
        """(reader, writer, up_reader, up_writer), once the upstream leg is open."""
        assert self.up_reader is not None and self.up_writer is not None
        return self.reader, self.writer, self.up_reader, self.up_writer


class ProxySink:
    """Where the proxy hands its observations. `healthy` False makes a fail-closed proxy refuse."""

    healthy = True

    def connection_opened(self, conn: ProxiedConnection) -> None: ...

    def attribute(self, conn: ProxiedConnection) -> None:
        """Find the agent process behind `conn` (runs in a worker thread while upstream connects)."""

    def exchange(self, conn: ProxiedConnection, ex: Exchange) -> None: ...

    def connection_closed(self, conn: ProxiedConnection) -> None: ...

    def event(self, conn: ProxiedConnection | None, kind: str, detail: str) -> None: ...

    def gate_decisions(self, conn: ProxiedConnection, judged: list) -> None:
        """What the policy gate decided on this connection (collector.proxy.gate.conn.Judged)."""


H2, H1 = "h2", "http/1.1"


def upstream_context(extra_ca_files: Iterable[str | os.PathLike] = (),
                     alpn: tuple[str, ...] = (H2, H1)) -> ssl.SSLContext:
    """Verification for the proxy's own TLS connections: the system store plus every CA the agent
    was configured to trust, hostname checked, TLS 1.2+. Never weaker than the agent. The CA files
    are remembered on the context so the proxy can make its HTTP/1.1-only twin."""
    files = [str(f) for f in extra_ca_files if f]
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    for f in files:
        if Path(f).is_file():
            ctx.load_verify_locations(cafile=f)
    ctx.set_alpn_protocols(list(alpn))
    ctx.routerwatch_ca_files = files  # type: ignore[attr-defined]
    ctx.routerwatch_alpn = tuple(alpn)  # type: ignore[attr-defined]
    return ctx


def _ep(sock_addr: tuple | None) -> Endpoint | None:
    if not sock_addr:
        return None
    return Endpoint(str(ipaddress.ip_address(sock_addr[0].split("%")[0])), int(sock_addr[1]))


def _split_authority(authority: str, default_port: int) -> tuple[str, int]:
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    host, sep, port = authority.rpartition(":")
    if sep and port.isdigit():
        return host, int(port)
    return authority, default_port


class InterceptingProxy:
    """An asyncio proxy server on a loopback port, run in a background thread by `start()`."""

    def __init__(self, ca: CertificateAuthority, sink: ProxySink, *, upstream_ssl: ssl.SSLContext | None = None,
                 fail_open: bool = False, upstream_proxy: str | None = None, host: str = "127.0.0.1",
                 port: int = 0, http2: bool = True, gate=None):  # noqa: ANN001 - collector.proxy.gate.relay.GateSetup
        self.ca = ca
        self.gate = gate  # None: observe only; else every decrypted response passes the policy gate first
        self.sink = sink
        self.upstream_ssl = upstream_ssl or upstream_context()
        # HTTP/2 needs the context offering h2 + http/1.1 (upstream_context's) and its http/1.1-only twin
        files = getattr(self.upstream_ssl, "routerwatch_ca_files", None)
        if files is not None:
            self.upstream_ssl_h1 = upstream_context(files, alpn=(H1,))
        else:  # a context made elsewhere: HTTP/1.1 only
            self.upstream_ssl.set_alpn_protocols([H1])
            self.upstream_ssl_h1 = self.upstream_ssl
        self.http2 = http2 and files is not None and H2 in getattr(self.upstream_ssl, "routerwatch_alpn", ())
        if not self.http2:
            self.upstream_ssl = self.upstream_ssl_h1
        self.upstream_h2: dict[str, bool] = {}  # host:port -> the router selected h2 when offered it
        self.agent_proto: dict[str, str] = {}  # host:port -> what the last agent there picked
        self.fail_open = fail_open
        self.upstream_proxy = urlsplit(upstream_proxy) if upstream_proxy else None
        self.host, self.port = host, port
        self.passthrough: set[str] = set()
        self.active = 0
        self._tasks: set[asyncio.Task] = set()  # strong references: a pending handler is never collected
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> InterceptingProxy:
        self._thread = threading.Thread(target=self._run, name="routerwatch-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._startup_error:
            raise self._startup_error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._stopping = False

        def on_error(lp: asyncio.AbstractEventLoop, ctx: dict) -> None:
            if not self._stopping:  # connections torn down by stop() are expected to complain
                lp.default_exception_handler(ctx)

        loop.set_exception_handler(on_error)
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle, self.host, self.port, limit=HEAD_LIMIT, backlog=512))
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # reported to start()
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            rest = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in rest:
                t.cancel()
            if rest:
                loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, give open connections `grace` seconds, then close them."""
        loop = self._loop
        if loop is None or not loop.is_running():
            return

        async def _shutdown() -> None:
            assert self._server is not None
            self._stopping = True
            self._server.close()
            deadline = time.monotonic() + grace
            while self.active and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        fut = asyncio.run_coroutine_threadsafe(_shutdown(), loop)
        with contextlib.suppress(Exception):
            fut.result(grace + 10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread:
            self._thread.join(10)

    # -- one agent connection ----------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One agent connection, start to end: read its request, refuse it or open the upstream leg,
        then relay (see _serve); whatever happens, both legs are closed and the sink hears of the end."""
        self.active += 1
        me = asyncio.current_task()
        if me is not None:
            self._tasks.add(me)
        legs = _Legs(reader, writer)
        conn: ProxiedConnection | None = None
        try:
            req = await self._read_request(reader, writer)
            if req is None:
                return
            conn = ProxiedConnection(
                conn_id=secrets.token_hex(8), client=_ep(writer.get_extra_info("peername")),  # type: ignore[arg-type]
                listen=_ep(writer.get_extra_info("sockname")), target_host=req.host,  # type: ignore[arg-type]
                target_port=req.port, scheme=req.scheme, ts_start=time.time())
            if not self.fail_open and not self.sink.healthy:
                await self._reply(writer, 503, "routerwatch proxy cannot record traffic (fail-closed)")
                self.sink.event(conn, "refused", "sink unhealthy")
                return
            self.sink.connection_opened(conn)
            await self._serve(req, conn, legs)
        except asyncio.CancelledError:
            if conn:
                conn.error = conn.error or "proxy stopped"
        except Exception as exc:  # one broken connection never stops the proxy
            if conn:
                conn.error = conn.error or f"proxy: {_reason(exc)}"
        finally:
            self.active -= 1
            self._tasks.discard(me)  # type: ignore[arg-type]
            for w in (writer, legs.up_writer):
                if w is not None:
                    w.close()
            if conn is not None:
                conn.ts_end = time.time()
                self.sink.connection_closed(conn)

    async def _read_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Request | None:
        """The agent's first request head: CONNECT host:port, or an absolute http:// URL (else 400)."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return None
        line, _, rest = head.partition(b"\r\n")
        parts = line.decode("latin-1").split()
        if len(parts) != 3:
            await self._reply(writer, 400, "malformed request line")
            return None
        method, target, _version = parts
        if method.upper() == "CONNECT":
            host, port = _split_authority(target, 443)
            return _Request(method, target, rest, host, port, "https")
        if target.lower().startswith("http://"):
            u = urlsplit(target)
            return _Request(method, target, rest, u.hostname or "", u.port or 80, "http")
        await self._reply(writer, 400, "this is a proxy: send CONNECT or an absolute http:// URL")
        return None

    async def _serve(self, req: _Request, conn: ProxiedConnection, legs: _Legs) -> None:
        """Upstream first (its certificate checked before the agent hears `200`), the agent's process
        looked up meanwhile; then a plain-HTTP relay, a tunnel, or TLS with the agent and a relay
        through a tap, after matching the upstream leg's protocol to the agent's."""
        # who is connecting: looked up now, while the agent's socket surely exists
        attributing = asyncio.get_running_loop().run_in_executor(None, self.sink.attribute, conn)
        host, port = req.host, req.port
        tunnel = req.scheme == "https" and host.lower() in self.passthrough
        key = f"{host.lower()}:{port}"
        first_ctx = self._first_context(key) if req.scheme == "https" and not tunnel else None
        if not await self._connect_upstream(conn, legs, first_ctx,
                                            "routerwatch proxy: " if req.scheme == "https" else ""):
            return
        # the agent waits for this connection, so its process still exists while it is looked up
        # (a short-lived agent could otherwise exit before a busy worker thread got to it)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(attributing), 5)
        if first_ctx is not None and self.http2:
            if conn.alpn == H2:
                self.upstream_h2[key] = True
            elif first_ctx is self.upstream_ssl:
                self.upstream_h2[key] = False
        if req.scheme != "https":
            # plain HTTP: origin-form request line and one exchange per connection, so a keep-alive
            # connection can never carry a request for another origin to the wrong server
            first = _plain_http_head(req.method, req.target, req.rest)
            await self._relay(*legs.both(), conn, self._tap(conn, h2=False, default_port=80), first=first)
            return
        legs.writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        await legs.writer.drain()
        if tunnel:
            conn.scheme = "tunnel"
            await self._relay(*legs.both(), conn, None)
            return
        agent_proto = await self._agent_tls(conn, legs, key)
        if agent_proto is None:
            return
        if agent_proto != (conn.alpn if conn.alpn == H2 else H1) and not await self._match_upstream(conn, legs,
                                                                                                    agent_proto):
            return
        await self._relay(*legs.both(), conn, self._tap(conn, h2=agent_proto == H2, default_port=443))

    async def _connect_upstream(self, conn: ProxiedConnection, legs: _Legs, ctx: ssl.SSLContext | None,
                                reply_prefix: str | None) -> bool:
        """Open the upstream leg (TLS with `ctx`, plain without). On failure: recorded, and a 502 to
        the agent unless `reply_prefix` is None (an h2 agent past its handshake is just disconnected)."""
        host, port = conn.target_host, conn.target_port
        try:
            legs.up_reader, legs.up_writer = await asyncio.wait_for(
                self._open_upstream(host, port, tls=ctx is not None, ctx=ctx), CONNECT_TIMEOUT)
        except (TimeoutError, OSError, ssl.SSLError, ConnectionError, ValueError) as exc:
            reason = _reason(exc)
            conn.error = f"upstream: {reason}"
            self.sink.event(conn, "upstream-failed", reason)
            if reply_prefix is not None:
                await self._reply(legs.writer, 502, f"{reply_prefix}upstream {host}:{port}: {reason}")
            return False
        self._upstream_info(conn, legs.up_writer, ctx)
        return True

    async def _agent_tls(self, conn: ProxiedConnection, legs: _Legs, key: str) -> str | None:
        """TLS with the agent under a leaf for its target, offering h2 only where the router spoke it;
        the protocol the agent picked, or None when it rejected our certificate (fail-open: that host
        is tunnelled from then on)."""
        host = conn.target_host
        offer = (H2, H1) if self.http2 and self.upstream_h2.get(key) else (H1,)
        try:
            await legs.writer.start_tls(self.ca.server_context(host, alpn=offer))
        except (ssl.SSLError, OSError, ConnectionError) as exc:
            reason = _reason(exc)
            conn.error = f"agent rejected the proxy certificate: {reason}"
            self.sink.event(conn, "client-tls-failed", reason)
            if self.fail_open:
                self.passthrough.add(host.lower())
                self.sink.event(conn, "passthrough", f"{host} is tunnelled without inspection from now on")
            return None
        agent_ssl = legs.writer.get_extra_info("ssl_object")
        agent_proto = H2 if agent_ssl is not None and agent_ssl.selected_alpn_protocol() == H2 else H1
        conn.extra["agent_alpn"] = agent_proto
        self.agent_proto[key] = agent_proto
        return agent_proto

    async def _match_upstream(self, conn: ProxiedConnection, legs: _Legs, agent_proto: str) -> bool:
        """Both legs must speak one protocol: a fresh upstream connection offering the agent's."""
        assert legs.up_writer is not None
        legs.up_writer.close()
        ctx = self.upstream_ssl if agent_proto == H2 else self.upstream_ssl_h1
        if not await self._connect_upstream(conn, legs, ctx, "routerwatch proxy: " if agent_proto == H1 else None):
            return False
        conn.extra["upstream_reconnect"] = True
        if (conn.alpn == H2) != (agent_proto == H2):
            conn.error = f"the router selected {conn.alpn or 'no ALPN'}, the agent {agent_proto}"
            self.sink.event(conn, "alpn-mismatch", conn.error)
            return False
        return True

    def _tap(self, conn: ProxiedConnection, h2: bool, default_port: int) -> Http1Tap | H2Tap:
        """The parser beside the relay for one connection; its exchanges go to the sink."""
        port = conn.target_port
        authority = f"{conn.target_host}:{port}" if port != default_port else conn.target_host
        emit = functools.partial(self._emit, conn)
        return H2Tap(authority, emit) if h2 else Http1Tap(authority, emit)

    def _first_context(self, key: str) -> ssl.SSLContext:
        """The upstream offer for a new connection: h2 + http/1.1, unless this router is known to
        speak h2 while the last agent here picked http/1.1 (then http/1.1 only: no second handshake)."""
        if self.http2 and self.upstream_h2.get(key) and self.agent_proto.get(key) == H1:
            return self.upstream_ssl_h1
        return self.upstream_ssl

    @staticmethod
    def _upstream_info(conn: ProxiedConnection, up_writer: asyncio.StreamWriter, ctx: ssl.SSLContext | None) -> None:
        if ctx is not None:
            conn.extra["upstream_offer"] = ",".join(getattr(ctx, "routerwatch_alpn", (H1,)))
        conn.upstream_local = _ep(up_writer.get_extra_info("sockname"))
        conn.upstream_peer = _ep(up_writer.get_extra_info("peername"))
        sslobj = up_writer.get_extra_info("ssl_object")
        if sslobj is not None:
            conn.tls_version, conn.alpn = sslobj.version(), sslobj.selected_alpn_protocol()
            conn.cipher = (sslobj.cipher() or (None,))[0]

    def _emit(self, conn: ProxiedConnection, ex: Exchange) -> None:
        conn.exchanges += 1
        self.sink.exchange(conn, ex)

    async def _open_upstream(self, host: str, port: int, tls: bool, ctx: ssl.SSLContext | None = None
                             ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        ctx = (ctx or self.upstream_ssl) if tls else None
        if self.upstream_proxy is None:
            return await asyncio.open_connection(host, port, ssl=ctx, server_hostname=host if tls else None,
                                                 limit=READ_SIZE)
        up = self.upstream_proxy
        r, w = await asyncio.open_connection(up.hostname, up.port or 80, limit=READ_SIZE)
        w.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        await w.drain()
        reply = await r.readuntil(b"\r\n\r\n")
        status = reply.split(b" ", 2)[1:2]
        if status != [b"200"]:
            w.close()
            first_line = reply.split(b"\r\n", 1)[0].decode("latin-1")
            raise ConnectionError(f"upstream proxy answered {first_line}")
        if tls:
            await w.start_tls(ctx, server_hostname=host)  # type: ignore[arg-type]
        return r, w

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter,
                     conn: ProxiedConnection, tap: Http1Tap | H2Tap | None, first: bytes = b"") -> None:
        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, outbound: bool) -> None:
            feed = None if tap is None else (tap.client_data if outbound else tap.server_data)
            pending = first if outbound else b""
            try:
                while True:
                    data = pending or await src.read(READ_SIZE)
                    pending = b""
                    if not data:
                        break
                    dst.write(data)
                    ts = time.time()
                    if outbound:
                        conn.bytes_out += len(data)
                    else:
                        conn.bytes_in += len(data)
                    if feed is not None:
                        feed(data, ts)
                    await dst.drain()
            except (ConnectionError, ssl.SSLError, OSError):
                pass
            finally:
                half_close(dst)

        gate = self._connection_gate(conn) if tap is not None else None
        if gate is not None:
            from collector.proxy.gate.relay import GateTap, gated_pump

            tap = GateTap(tap, gate)  # the agent's bytes also reach the gate (to pair responses with requests)
        t_out = asyncio.ensure_future(pump(reader, up_writer, True))
        if gate is None:
            t_in = asyncio.ensure_future(pump(up_reader, writer, False))
        else:
            def counted(n: int) -> None:
                conn.bytes_in += n

            def abort() -> None:
                conn.error = conn.error or f"gate: {gate.error or 'failed closed'}"
                for w in (writer, up_writer):
                    w.close()

            t_in = asyncio.ensure_future(gated_pump(up_reader, writer, gate, tap.server_data, counted,  # type: ignore[union-attr]
                                                    lambda j: self.sink.gate_decisions(conn, j), abort))
        try:
            await asyncio.gather(t_out, t_in)
        finally:
            for t in (t_out, t_in):
                t.cancel()
            if tap is not None:
                tap.close(time.time())
                if tap.error:
                    self.sink.event(conn, "parse-error", tap.error)

    def _connection_gate(self, conn: ProxiedConnection):  # noqa: ANN205
        """The policy gate for one intercepted connection (None when the proxy only observes)."""
        if self.gate is None:
            return None
        from collector.proxy.gate import connection_gate

        ctx = self.gate.context(conn.target_host, conn.target_port, conn.pid)
        return connection_gate(conn.extra.get("agent_alpn", H1), self.gate.judge, ctx)

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, status: int, text: str) -> None:
        reason = {400: "Bad Request", 502: "Bad Gateway", 503: "Service Unavailable"}.get(status, "Error")
        body = (text + "\n").encode()
        writer.write(f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {len(body)}\r\n"
                     f"connection: close\r\n\r\n".encode() + body)
        with contextlib.suppress(Exception):
            await writer.drain()


def _plain_http_head(method: str, target: str, rest: bytes) -> bytes:
    """Absolute-form request head -> origin-form, `Connection: close` unless it is an Upgrade."""
    u = urlsplit(target)
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    lines = rest[:-4].split(b"\r\n") if rest.endswith(b"\r\n\r\n") else rest.split(b"\r\n")
    upgrade = any(ln.lower().startswith(b"upgrade:") for ln in lines)
    keep = [ln for ln in lines if ln and (upgrade or not ln.lower().startswith((b"connection:", b"proxy-connection:",
                                                                                 b"keep-alive:")))]
    keep = [ln for ln in keep if not ln.lower().startswith(b"proxy-")]
    if not upgrade:
        keep.append(b"Connection: close")
    return f"{method} {path} HTTP/1.1\r\n".encode() + b"\r\n".join(keep) + b"\r\n\r\n"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]
