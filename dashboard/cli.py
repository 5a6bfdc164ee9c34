"""`routerwatch dashboard` and `routerwatch up` (registered through the `routerwatch.commands` entry point).

The dashboard is `streamlit run dashboard/guarded_app.py` (app.py behind the Host/Origin guard of
host_guard.py) with safe server flags. It binds 127.0.0.1 by default; bound to any other address, or
serving a non-loopback `--allowed-host` name, it refuses to start unless authentication is configured
(a token, or OIDC through Streamlit's built-in auth), and warns when that happens over plain HTTP.
`up` is the main job: `routerwatch collect`, the continuous analyzer (`routerwatch analyze --follow`)
and the dashboard, each its own process on one store (data flows collector -> store -> analyzer ->
dashboard); it forwards SIGTERM/SIGINT to all of them and stops the others when one exits.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from collector.cli import UserError, add_store_arg
from collector.config import resolve_store
from dashboard import auth, host_guard

APP = Path(__file__).with_name("guarded_app.py")  # app.py behind the Host/Origin guard (host_guard.py)
DEFAULT_PORT = 8501


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def auth_env(args: argparse.Namespace) -> dict[str, str]:
    """The auth settings for the app process; refuses a non-loopback bind without authentication."""
    token = None
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise UserError(f"cannot read --token-file {args.token_file}: {exc.strerror}") from None
    elif os.environ.get(auth.TOKEN_ENV):
        token = os.environ[auth.TOKEN_ENV].strip()
    if token is not None and len(token) < auth.MIN_TOKEN_LEN:
        raise UserError(f"the dashboard token must be at least {auth.MIN_TOKEN_LEN} characters "
                        "(e.g. `openssl rand -hex 24`)")
    if args.oidc_secrets:
        path = Path(args.oidc_secrets)
        if not path.is_file() or "[auth]" not in path.read_text():
            raise UserError(f"--oidc-secrets {path} must be a Streamlit secrets.toml with an [auth] section")
        if token:
            raise UserError("choose one: a token or OIDC, not both")
        return {auth.MODE_ENV: "oidc"}
    if token:
        return {auth.MODE_ENV: "token", auth.TOKEN_ENV: token}
    exposed = [h for h in getattr(args, "allowed_host", None) or () if not is_loopback(h)]
    if not is_loopback(args.host) or exposed:
        where = args.host if not is_loopback(args.host) else f"{args.host} for {', '.join(exposed)}"
        raise UserError(
            f"refusing to serve the dashboard on {where} without authentication: set "
            f"{auth.TOKEN_ENV} or pass --token-file FILE (at least {auth.MIN_TOKEN_LEN} characters), or "
            "--oidc-secrets secrets.toml for OIDC; or bind 127.0.0.1 and use an SSH tunnel")
    return {auth.MODE_ENV: "none"}


def host_env(args: argparse.Namespace) -> dict[str, str]:
    """What the Host/Origin guard serves (dashboard/host_guard.py): the bind address, loopback, --allowed-host."""
    names = []
    for h in getattr(args, "allowed_host", None) or ():
        h = h.strip().strip("[]").lower().rstrip(".")
        if not h or host_guard.split_host(h if ":" not in h else f"[{h}]") is None or "*" in h:
            raise UserError(f"--allowed-host {h!r}: give a host name or address, without scheme, port or wildcard")
        names.append(h)
    return {host_guard.BIND_ENV: args.host, host_guard.ALLOWED_ENV: ",".join(names)}


def tls_options(args: argparse.Namespace) -> list[str]:
    """Streamlit's certificate options from --tls-cert/--tls-key (both or neither, both readable)."""
    cert, key = getattr(args, "tls_cert", None), getattr(args, "tls_key", None)
    if not cert and not key:
        return []
    if not (cert and key):
        raise UserError("--tls-cert and --tls-key go together (a PEM certificate chain and its private key)")
    for flag, f in (("--tls-cert", cert), ("--tls-key", key)):
        try:
            head = Path(f).read_bytes()[:4096]
        except OSError as exc:
            raise UserError(f"cannot read {flag} {f}: {exc.strerror}") from None
        if b"-----BEGIN " not in head:
            raise UserError(f"{flag} {f} is not a PEM file")
    if Path(key).stat().st_mode & 0o077:
        print(f"routerwatch: warning: the TLS key {key} is readable by other users (chmod 600 it)",
              file=sys.stderr)
    return ["--server.sslCertFile", str(Path(cert).absolute()), "--server.sslKeyFile", str(Path(key).absolute())]


def sql_env(args: argparse.Namespace) -> dict[str, str]:
    """The SQL page's sandbox limits (ROUTERWATCH_SQL_*), from --sql-timeout / --sql-memory-limit."""
    from analyzer.sandbox import MEMORY_ENV, TIMEOUT_ENV, Limits

    out = {}
    timeout, memory = getattr(args, "sql_timeout", None), getattr(args, "sql_memory_limit", None)
    try:
        Limits.from_env(timeout, memory)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if timeout is not None:
        out[TIMEOUT_ENV] = str(timeout)
    if memory is not None:
        out[MEMORY_ENV] = memory
    return out


def dashboard_command(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The streamlit command line and environment for these arguments."""
    hosts = host_env(args)  # checks --allowed-host before auth_env counts its names as exposure
    env = dict(os.environ)
    env.pop(auth.TOKEN_ENV, None)
    env.update(auth_env(args))
    env.update(hosts)
    env.update(sql_env(args))
    tls = tls_options(args)
    if not tls and not is_loopback(args.host):
        print(f"routerwatch: warning: serving the dashboard on {args.host} over plain HTTP: the sign-in token and "
              "everything shown cross the network in the clear; pass --tls-cert/--tls-key or put a TLS reverse "
              "proxy in front (docs/security.md)", file=sys.stderr)
    env["ROUTERWATCH_STORE"] = resolve_store(args.store)
    if args.state_dir:
        env["ROUTERWATCH_DASHBOARD_STATE"] = str(Path(args.state_dir).absolute())
    if args.capture_dir:
        env["ROUTERWATCH_CAPTURE_DIR"] = str(Path(args.capture_dir).absolute())
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", args.host, "--server.port", str(args.port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false",  # no telemetry: appliances are offline
        "--server.fileWatcherType", "none", "--server.runOnSave", "false", "--global.developmentMode", "false",
        "--server.enableXsrfProtection", "true", "--client.toolbarMode", "viewer",
        "--client.showErrorDetails", "false" if env[auth.MODE_ENV] != "none" else "true",
        "--theme.base", "light", "--runner.magicEnabled", "false",
        *tls,
    ]
    if args.host not in host_guard.WILDCARDS:  # Streamlit's own websocket Host check too (exact names only)
        policy = host_guard.HostPolicy(args.host, env[host_guard.ALLOWED_ENV].split(","))
        for name in sorted(policy.names):
            cmd += ["--server.allowedHosts", name]
    if args.oidc_secrets:
        cmd += ["--secrets.files", str(Path(args.oidc_secrets).absolute())]
    return cmd, env


STOP_GRACE_S = {"collector": 90.0, "analyzer": 60.0}  # the collector's unit allows 90 s to flush (others: 15 s)


def supervise(procs: dict[str, subprocess.Popen]) -> int:
    """Wait for the children; on SIGTERM/SIGINT, or when one exits, stop the others.

    They stop one after the other, in the order given (the data flow: collector, analyzer, dashboard),
    each waited for: the collector flushes its last rows, then the analyzer makes its last run over
    them, then the dashboard goes."""
    stopping: int | None = None

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = signum

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        first: tuple[str, int] | None = None
        while first is None and stopping is None:
            for name, p in procs.items():
                rc = p.poll()
                if rc is not None:
                    first = (name, rc)
                    break
            else:
                time.sleep(0.2)
        if first is not None and stopping is None and len(procs) > 1:
            print(f"routerwatch: {first[0]} exited with status {first[1]}; stopping the rest", file=sys.stderr)
        for name, p in procs.items():
            if p.poll() is None:
                p.send_signal(stopping or signal.SIGTERM)
            try:
                p.wait(timeout=STOP_GRACE_S.get(name, 15.0))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        codes = [p.returncode for p in procs.values()]
        if stopping is not None:  # a requested stop: a child ended by the forwarded signal is a clean exit
            return 0 if all(c in (0, -signal.SIGTERM, -signal.SIGINT, 130, 143) for c in codes) else 1
        assert first is not None
        rc = first[1]
        return rc if rc else (1 if any(codes) else 0)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def dashboard_url(args: argparse.Namespace, cmd: list[str]) -> str:
    """Where the dashboard answers (https when it serves TLS itself)."""
    scheme = "https" if "--server.sslCertFile" in cmd else "http"
    return f"{scheme}://{args.host}:{args.port}/"


def cmd_dashboard(args: argparse.Namespace) -> int:
    cmd, env = dashboard_command(args)
    print(f"routerwatch dashboard: {dashboard_url(args, cmd)} (store {env['ROUTERWATCH_STORE']}, "
          f"auth {env[auth.MODE_ENV]})", file=sys.stderr, flush=True)
    return supervise({"dashboard": subprocess.Popen(cmd, env=env)})


def collect_available() -> bool:
    """Whether this build has `routerwatch collect` (the live collector)."""
    from collector.cli import build_parser

    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return "collect" in action.choices
    return False


def cmd_up(args: argparse.Namespace) -> int:
    if not collect_available():
        raise UserError("`routerwatch collect` (the live collector) is not part of this build; run "
                        "`routerwatch dashboard` on an ingested store instead")
    if args.analyze_interval <= 0:
        raise UserError("--analyze-interval must be a positive number of seconds")
    cmd, env = dashboard_command(args)  # validates auth before anything starts
    store = env["ROUTERWATCH_STORE"]
    quiet_env = {k: v for k, v in env.items() if k != auth.TOKEN_ENV}  # only the dashboard gets the token
    extra = args.collect_args[1:] if args.collect_args[:1] == ["--"] else args.collect_args
    if args.capture_dir and "--capture-dir" not in extra:  # the ring the Flows page drills into
        extra = ["--capture-dir", str(Path(args.capture_dir).absolute()), *extra]
    collect = [sys.executable, "-m", "collector.cli", "collect", "--store", store, *extra]
    parts = [f"collector -> {store}"]
    procs = {"collector": subprocess.Popen(collect, env=quiet_env)}
    if not args.no_analyzer:
        analyze = [sys.executable, "-m", "collector.cli", "analyze", "--follow", "--store", store,
                   "--interval", str(args.analyze_interval)]
        for flag, value in (("--eve", args.eve), ("--webhook", args.webhook), ("--rules-dir", args.rules_dir)):
            if value:
                analyze += [flag, value]
        procs["analyzer"] = subprocess.Popen(analyze, env=quiet_env)
        parts.append("analyzer (continuous" + (f", alerts to {args.eve}" if args.eve else "") + ")")
    if not args.no_dashboard:
        procs["dashboard"] = subprocess.Popen(cmd, env=env)
        parts.append(f"dashboard {dashboard_url(args, cmd)} (auth {env[auth.MODE_ENV]})")
    print(f"routerwatch up: {'; '.join(parts)}", file=sys.stderr, flush=True)
    return supervise(procs)


def _dashboard_args(p: argparse.ArgumentParser) -> None:
    add_store_arg(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; any other address requires a token or OIDC)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--token-file", metavar="FILE",
                   help=f"file holding the access token (else ${auth.TOKEN_ENV}); required off-loopback unless OIDC")
    p.add_argument("--oidc-secrets", metavar="FILE",
                   help="a Streamlit secrets.toml with an [auth] section: log in through OIDC (st.login)")
    p.add_argument("--state-dir", metavar="DIR",
                   help="where acknowledgements, notes and saved queries live (default "
                        "$ROUTERWATCH_DASHBOARD_STATE, else ~/.local/state/routerwatch/dashboard)")
    p.add_argument("--capture-dir", metavar="DIR", help="the live collector's capture ring (packet drill-down)")
    p.add_argument("--allowed-host", action="append", metavar="NAME",
                   help="also serve requests for this host name (repeatable), e.g. the name a TLS reverse proxy "
                        "forwards; only the bind address and localhost are served otherwise (DNS-rebinding defence)")
    p.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate chain (with --tls-key)")
    p.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    p.add_argument("--sql-timeout", type=float, metavar="SECONDS",
                   help="time limit of a query on the SQL page (default $ROUTERWATCH_SQL_TIMEOUT, else 30)")
    p.add_argument("--sql-memory-limit", metavar="SIZE",
                   help="DuckDB memory of a query on the SQL page (default $ROUTERWATCH_SQL_MEMORY_LIMIT, else 1GiB)")


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("dashboard", help="the Streamlit dashboard over the store (read-only)",
                       description="Serve the dashboard: routers, destinations, exchanges, findings, flows, SQL. "
                       "Binds 127.0.0.1 by default; any other address requires authentication.")
    _dashboard_args(d)
    d.set_defaults(func=cmd_dashboard)
    u = sub.add_parser("up", help="the main job: live collector, continuous analyzer and dashboard together",
                       description="Start `routerwatch collect`, the continuous analyzer (`routerwatch analyze "
                       "--follow`: findings and alerts within seconds, nobody needs to run analyze) and the dashboard "
                       "on the same store, each its own process; SIGTERM or Ctrl-C stops all of them; if one exits, "
                       "the others are stopped. Arguments after `--` go to collect.")
    _dashboard_args(u)
    u.add_argument("--eve", metavar="FILE", help="the analyzer appends EVE-style JSON-lines alerts to FILE")
    u.add_argument("--webhook", metavar="URL", help="the analyzer POSTs new findings as JSON to URL")
    u.add_argument("--rules-dir", metavar="DIR", help="extra rules (default: DIR/rules beside the store, if present)")
    u.add_argument("--analyze-interval", type=float, default=1.0, metavar="S",
                   help="the analyzer looks for new commits every S seconds (default 1)")
    u.add_argument("--no-analyzer", action="store_true",
                   help="no analyzer here (a fleet's central analyzer, or `routerwatch analyze --follow` elsewhere)")
    u.add_argument("--no-dashboard", action="store_true", help="collector and analyzer only (e.g. in a container)")
    u.add_argument("collect_args", nargs=argparse.REMAINDER, metavar="-- COLLECT-ARGS",
                   help="extra arguments for `routerwatch collect`")
    u.set_defaults(func=cmd_up)
