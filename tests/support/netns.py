"""Network namespaces for tests: each one a separate "host" with its own loopback, made with
`ip netns` (iproute2) and removed afterwards. Needs root (CI runs as root)."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path


def netns_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    if subprocess.run(["ip", "-V"], capture_output=True).returncode != 0:
        return "iproute2 (ip) is not installed"
    return None


class Netns:
    """`ip netns add` a namespace with loopback up; `run`/`popen` start commands inside it."""

    def __init__(self, prefix: str = "rwt") -> None:
        self.name = f"{prefix}-{secrets.token_hex(3)}"
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True, capture_output=True)
        self.path = Path("/run/netns") / self.name
        self.inum = self.path.stat().st_ino

    def use_resolver(self, ip: str = "127.0.0.1") -> None:
        """Make `ip` this namespace's DNS server: `ip netns exec` bind-mounts /etc/netns/NAME/resolv.conf
        over /etc/resolv.conf for every command it starts."""
        d = Path("/etc/netns") / self.name
        d.mkdir(parents=True, exist_ok=True)
        (d / "resolv.conf").write_text(f"nameserver {ip}\noptions timeout:1 attempts:1\n")
        self._etc = d

    def argv(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(self, *cmd: str, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.argv(*cmd), **kw)

    def popen(self, *cmd: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*cmd), **kw)

    def close(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)
        etc = getattr(self, "_etc", None)
        if etc is not None:
            import shutil

            shutil.rmtree(etc, ignore_errors=True)

    def __enter__(self) -> Netns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
