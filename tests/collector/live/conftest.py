"""Fixtures for live-collector tests: a real `routerwatch collect` process and loopback servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BIN


def ebpf_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "eBPF needs root (CI runs as root)"
    try:
        import bcc  # noqa: F401
    except ImportError:
        return "bcc is not importable (deploy/deps.sh links python3-bpfcc into the venv)"
    if not Path("/sys/kernel/btf/vmlinux").exists():
        return "the kernel has no BTF (/sys/kernel/btf/vmlinux)"
    return None


needs_ebpf = pytest.mark.skipif(ebpf_skip_reason() is not None, reason=ebpf_skip_reason() or "")


class LiveCollector:
    """`routerwatch collect` in the background; `stop()` sends SIGTERM (or SIGKILL) and waits."""

    def __init__(self, store: Path, *args: str, env: dict | None = None):
        e = dict(os.environ)
        e.update(env or {})
        self.store = store
        self.log = store.parent / "collect.log"
        self._logf = open(self.log, "w")
        self.proc = subprocess.Popen(
            [str(BIN / "routerwatch"), "collect", "--store", str(store), *args],
            stdout=self._logf, stderr=subprocess.STDOUT, env=e, text=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            text = self.log.read_text()
            if "mode=" in text:
                self.banner = text
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"collector exited early: {text}")
            time.sleep(0.1)
        self.stop(signal.SIGKILL)
        raise AssertionError(f"collector did not start: {self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        self._logf.close()
        return rc

    def output(self) -> str:
        return self.log.read_text()


@pytest.fixture
def live(tmp_path: Path) -> Iterator:
    started: list[LiveCollector] = []

    def start(*args: str, env: dict | None = None) -> LiveCollector:
        c = LiveCollector(tmp_path / "store", *args, env=env)
        started.append(c)
        return c

    yield start
    for c in started:
        if c.proc.poll() is None:
            c.stop(signal.SIGKILL)


class SizedServer:
    """Loopback TCP server: reads until the client half-closes or `request_size` bytes arrived,
    answers `response_size` bytes, closes. Records what each connection really carried."""

    def __init__(self, request_size: int | None, response: bytes, host: str = "127.0.0.1", http: bool = False):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.request_size = request_size
        self.response = response
        self.http = http
        self.received: list[int] = []
        self.sent: list[int] = []
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                data = b""
                while True:
                    if self.request_size is not None and len(data) >= self.request_size:
                        break
                    if self.http and b"\r\n\r\n" in data:
                        break
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                c.sendall(self.response)
                self.received.append(len(data))
                self.sent.append(len(self.response))
                try:
                    c.shutdown(socket.SHUT_WR)
                    while c.recv(65536):
                        pass
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()
