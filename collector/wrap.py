"""`routerwatch wrap -- CMD…`: run an agent so that its TLS plaintext can be recovered.

Two modes:

* **key log** (default): the agent writes its TLS secrets to a per-run key log that the live
  collector uses to decrypt the agent's captured flows. SSLKEYLOGFILE covers OpenSSL-based
  programs (curl, Python's `create_default_context`), the sitecustomize hook covers Python clients
  that build their own SSLContext (httpx2 in the openai/anthropic SDKs), and
  `NODE_OPTIONS=--tls-keylog=FILE` covers Node. Bun, rustls and Go agents write no key log: use
  proxy mode for them.
* **proxy** (`--proxy`): a local TLS-intercepting proxy (collector.proxy) that the agent is pointed
  at through the variables it honours; the proxy decodes every exchange into the store itself.

Key-log files are as sensitive as private keys. Each run gets, in `collector.config.keylog_dir()`
(mode 0700), `wrap-<id>.keylog` (created 0600 before the agent starts, because Python would
create it 0644) and `wrap-<id>.json`, a sidecar with the agent's pid, process start time, command
and (at exit) its exit status, so the live collector can tie the keys to the agent's flows.
Deletion: the collector deletes a key log after it has decrypted the run's flows when the sidecar
says `"delete_after_use": true`; it marks a run it has taken over by creating `wrap-<id>.claimed`.
When the agent exits and no collector has claimed the run (wrap waits up to 2 s for a claim after a
run that wrote keys), nobody will ever use the keys, so
wrap deletes them itself. `--keep-keys` keeps them (for an offline `routerwatch ingest --keylog`).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from collector import config

HOOK_DIR = Path(__file__).resolve().parent / "wrap_hooks"

# Signals the wrapper passes on to the agent. SIGINT/SIGQUIT typed at a terminal already reach the
# agent (same process group): only those sent with kill() are forwarded, so a Ctrl-C counts once.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
CLAIM_WAIT = 2.0  # seconds wrap waits, after a run that wrote keys, for a live collector's claim
_SI_USER = 0
_SI_QUEUE = -1
_SI_TKILL = -6


@dataclass
class KeylogRun:
    """One wrapped run's key log and sidecar."""

    run_id: str
    keylog: Path
    sidecar: Path
    keep: bool
    meta: dict = field(default_factory=dict)

    @property
    def claim_marker(self) -> Path:
        return self.sidecar.with_suffix(".claimed")

    def write_sidecar(self, **updates: object) -> None:
        """Atomically (re)write the sidecar JSON (0600) with `updates` merged in."""
        self.meta.update(updates)
        tmp = self.sidecar.with_name(f".{self.sidecar.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.meta, f, indent=1, sort_keys=True)
        os.replace(tmp, self.sidecar)

    def finish(self, claim_wait: float = CLAIM_WAIT) -> bool:
        """At the agent's exit: delete the keys unless kept or claimed by a collector. True if deleted.
        A collector rescans the directory every half second, so a short run that wrote keys waits
        up to `claim_wait` seconds for the claim before concluding nobody will use them."""
        if self.keep:
            return False
        try:
            wrote = self.keylog.stat().st_size > 0
        except OSError:
            wrote = False
        deadline = time.monotonic() + (claim_wait if wrote else 0)
        while not self.claim_marker.exists():
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        if self.claim_marker.exists():
            return False
        for p in (self.keylog, self.sidecar):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        return True


def secure_dir(path: Path) -> Path:
    """Create `path` (and parents) and make it 0700: key material lives there."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def create_keylog_run(cmd: Sequence[str], keylog_dir: Path | None = None, keep: bool = False) -> KeylogRun:
    """Create the 0600 key-log file and the sidecar for one run (before the agent starts)."""
    d = secure_dir(Path(keylog_dir) if keylog_dir else config.keylog_dir())
    run_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(4)
    keylog = d / f"wrap-{run_id}.keylog"
    os.close(os.open(keylog, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    run = KeylogRun(run_id, keylog, d / f"wrap-{run_id}.json", keep)
    run.write_sidecar(
        run_id=run_id,
        keylog=keylog.name,
        cmd=redact_argv(cmd),
        wrapper_pid=os.getpid(),
        uid=os.getuid(),
        host_id=config.host_id(),
        delete_after_use=not keep,
        status="starting",
    )
    return run


def redact_argv(cmd: Sequence[str]) -> list[str]:
    """The command for the sidecar: values an option or variable names as secrets, and credential
    shapes, become `<redacted>` (the rules of the store's command lines: collector.secrets)."""
    from collector.secrets import command_secrets, detect

    out = list(cmd)
    spans: dict[int, list[tuple[int, int]]] = {}
    for i, s, e, _kind in command_secrets(out):
        spans.setdefault(i, []).append((s, e))
    for i, a in enumerate(out):
        for m in detect(a):
            spans.setdefault(i, []).append((m.start, m.end))
    for i, found in spans.items():
        merged: list[list[int]] = []
        for s, e in sorted(found):
            if merged and s < merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        for s, e in reversed(merged):
            out[i] = out[i][:s] + "<redacted>" + out[i][e:]
    return out


def keylog_env(base: Mapping[str, str], keylog: Path) -> dict[str, str]:
    """The agent's environment with key logging switched on for Python, Node and OpenSSL programs."""
    env = dict(base)
    env["SSLKEYLOGFILE"] = str(keylog)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HOOK_DIR), base.get("PYTHONPATH", "")) if p)
    node_opts = [o for o in shlex.split(base.get("NODE_OPTIONS", "")) if not o.startswith("--tls-keylog")]
    env["NODE_OPTIONS"] = shlex.join([*node_opts, f"--tls-keylog={keylog}"])
    return env


def process_start_time(pid: int) -> float | None:
    """The process's start time in seconds since the epoch (with pid, the key of `processes`)."""
    from collector.processes import read_proc

    info = read_proc(pid)
    return info.start_time if info else None


def spawn_and_wait(cmd: Sequence[str], env: Mapping[str, str], on_start: Callable[[int], None] | None = None) -> int:
    """Run `cmd`, forward signals to it, and return its exit status (128+N when killed by signal N).

    Signals are blocked and collected with sigwaitinfo, which tells who sent them: only signals
    sent by another process are forwarded (the terminal already delivered Ctrl-C to the agent).
    Call this from the main thread before starting other threads, so they inherit the mask.
    """
    exe = shutil.which(cmd[0], path=env.get("PATH")) if os.sep not in cmd[0] else cmd[0]
    if not exe:
        raise FileNotFoundError(cmd[0])
    waited = {*FORWARDED, signal.SIGCHLD}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    try:
        pid = os.posix_spawn(exe, list(cmd), dict(env), setsigmask=old_mask - waited if old_mask else ())
        if on_start:
            on_start(pid)
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
            info = signal.sigtimedwait(waited, 1.0)
            if info is None or info.si_signo == signal.SIGCHLD:
                continue
            if info.si_code in (_SI_USER, _SI_QUEUE, _SI_TKILL) or info.si_signo not in (signal.SIGINT, signal.SIGQUIT):
                try:
                    os.kill(pid, info.si_signo)
                except ProcessLookupError:
                    pass
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def run_keylog(cmd: Sequence[str], *, keylog_dir: Path | None = None, keep_keys: bool = False,
               env: Mapping[str, str] | None = None) -> tuple[int, KeylogRun]:
    """Key-log mode: run `cmd` with key logging on; returns (exit status, the run's files)."""
    run = create_keylog_run(cmd, keylog_dir, keep_keys)
    agent_env = keylog_env(os.environ if env is None else env, run.keylog)

    def started(pid: int) -> None:
        run.write_sidecar(pid=pid, process_start=process_start_time(pid), start_time=time.time(), status="running")

    try:
        code = spawn_and_wait(cmd, agent_env, started)
    except BaseException:
        run.write_sidecar(status="failed", end_time=time.time())
        run.finish(claim_wait=0)
        raise
    run.write_sidecar(status="exited", exit_code=code, end_time=time.time())
    run.finish()
    return code, run


# -- proxy mode -----------------------------------------------------------------------------------
# Variables naming extra CAs an agent trusts: the proxy trusts them upstream too.
AGENT_CA_VARS = ("SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "CODEX_CA_CERTIFICATE", "REQUESTS_CA_BUNDLE",
                 "CURL_CA_BUNDLE")
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]", "ip6-localhost"}


def system_ca_file() -> str | None:
    import ssl

    paths = ssl.get_default_verify_paths()
    for f in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if f and Path(f).is_file():
            return f
    return None


def agent_ca_files(env: Mapping[str, str]) -> list[str]:
    """The CA files the agent was configured to trust (the proxy trusts them upstream as well)."""
    return [env[v] for v in AGENT_CA_VARS if env.get(v) and Path(env[v]).is_file()]


def _no_proxy_without_loopback(value: str) -> str:
    keep = [h for h in (x.strip() for x in value.split(",")) if h and h.lower() not in LOOPBACK_NAMES
            and not h.startswith("127.") and h != "*"]
    return ",".join(keep)


def proxy_env(base: Mapping[str, str], proxy_url: str, ca_pem: Path, bundle: Path) -> dict[str, str]:
    """The agent's environment pointed at the proxy the ways each runtime honours:
    HTTPS_PROXY/HTTP_PROXY (every runtime), NODE_EXTRA_CA_CERTS (Node, Bun: Claude Code, Gemini
    CLI, opencode), CODEX_CA_CERTIFICATE (Codex), SSL_CERT_FILE/REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE
    (OpenSSL and rustls-native-certs programs, Python). NO_PROXY keeps its entries except loopback
    ones, so an agent configured for a router on this host is still seen."""
    env = dict(base)
    for v in PROXY_VARS:
        env[v] = proxy_url
    for v in ("NO_PROXY", "no_proxy"):
        if v in env:
            env[v] = _no_proxy_without_loopback(env[v])
    env["NODE_EXTRA_CA_CERTS"] = str(ca_pem)
    env["NODE_USE_ENV_PROXY"] = "1"  # Node >= 24: fetch() honours HTTPS_PROXY only with this
    env["CODEX_CA_CERTIFICATE"] = str(bundle)
    for v in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        env[v] = str(bundle)
    return env


def write_bundle(directory: Path, ca_pem: bytes, base: Mapping[str, str]) -> tuple[Path, Path]:
    """ca.pem (the proxy CA) and bundle.pem (the proxy CA + what the agent trusted before) for one run."""
    ca = directory / "proxy-ca.pem"
    ca.write_bytes(ca_pem)
    trusted_before = base.get("SSL_CERT_FILE") or system_ca_file()
    extra = Path(trusted_before).read_bytes() if trusted_before and Path(trusted_before).is_file() else b""
    bundle = directory / "bundle.pem"
    bundle.write_bytes(ca_pem + b"\n" + extra)
    return ca, bundle


def upstream_proxy_of(base: Mapping[str, str]) -> str | None:
    """A proxy the agent already used (corporate egress): the intercepting proxy chains to it."""
    for v in ("HTTPS_PROXY", "https_proxy"):
        if base.get(v, "").startswith("http://"):
            return base[v]
    return None


def proxy_gate(store: str | None, policy: str | os.PathLike | None = None, gate_fail_open: bool = False):  # noqa: ANN201
    """The policy gate for `wrap --proxy --enforce` (collector.policy.judge.gate_inputs: the policy and
    the catalog beside the store). `gate_fail_open` lets responses the gate cannot parse or judge in
    time through; it is not `--fail-open`, which is about certificates and recording."""
    from collector.policy.judge import gate_inputs
    from collector.proxy.gate.relay import build_gate

    pol, cat = gate_inputs(store, str(policy) if policy else None, gate_fail_open)
    return build_gate(pol, catalog=cat)


def run_proxy(cmd: Sequence[str], *, store: str | None = None, fail_open: bool = False,
              ca_dir: Path | None = None, env: Mapping[str, str] | None = None,
              on_ready: Callable[[str], None] | None = None, gate=None) -> int:  # noqa: ANN001
    """Proxy mode: run `cmd` through the intercepting proxy; every exchange goes to the store. With
    `gate` (`proxy_gate()`), responses pass the policy gate before the agent sees them."""
    import tempfile

    from collector.proxy.ca import CertificateAuthority
    from collector.proxy.server import InterceptingProxy, upstream_context
    from collector.proxy.sink import ProcessSink

    base = dict(os.environ if env is None else env)
    # Block the signals we forward before any thread exists (DuckDB's, the proxy's): a process-wide
    # SIGTERM must reach the main thread's sigwaitinfo, not kill the process from another thread.
    waited = {*FORWARDED, signal.SIGCHLD}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    try:
        with tempfile.TemporaryDirectory(prefix="rw-wrap-") as tmp:
            try:
                sink = ProcessSink(config.resolve_store(store), config.host_id())
            except RuntimeError as exc:
                from collector.store.errors import StoreError

                raise StoreError(str(exc)) from None
            ca = CertificateAuthority(ca_dir)
            try:
                proxy = InterceptingProxy(ca, sink, upstream_ssl=upstream_context(agent_ca_files(base)),
                                          fail_open=fail_open, upstream_proxy=upstream_proxy_of(base),
                                          gate=gate).start()
            except BaseException:
                sink.close()
                raise
            try:
                ca_pem, bundle = write_bundle(Path(tmp), ca.cert_pem, base)
                agent_env = proxy_env(base, proxy.url, ca_pem, bundle)
                if on_ready:
                    on_ready(proxy.url)
                code = spawn_and_wait(cmd, agent_env, sink.set_root_pid)
            finally:
                proxy.stop(grace=2.0)
                sink.close()
        return code
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
