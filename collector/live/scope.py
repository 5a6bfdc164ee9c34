"""A collector's scope: the network namespace and/or cgroup whose traffic it records.

On a real fleet each host runs one collector and records the whole host. Several collectors on one
machine (tests, a fleet rehearsal, a host carved into namespaces per tenant) each need only their
own "host": eBPF probes see the whole kernel, so the filter runs in the kernel (probes.bpf.c,
SCOPE_NETNS / SCOPE_CGROUP) and the capture ring runs dumpcap inside the namespace (nsenter).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

NETNS_DIR = Path("/run/netns")  # where `ip netns add NAME` bind-mounts a namespace


def cgroup2_root() -> Path | None:
    """Where the unified (v2) hierarchy is mounted: /sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid
    hosts. bpf_get_current_cgroup_id() always answers in this hierarchy."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    found = [Path(f[1]) for f in (line.split() for line in mounts) if len(f) > 2 and f[2] == "cgroup2"]
    return min(found, key=lambda p: len(p.parts)) if found else None


class ScopeError(ValueError):
    """The namespace or cgroup named does not exist or is not one."""


@dataclass(frozen=True)
class Scope:
    netns_path: Path | None = None
    netns_inum: int | None = None
    cgroup_path: Path | None = None
    cgroup_id: int | None = None
    cgroup_level: int = 0

    @property
    def whole_host(self) -> bool:
        return self.netns_inum is None and self.cgroup_id is None

    def describe(self) -> str:
        parts = []
        if self.netns_path is not None:
            parts.append(f"netns {self.netns_path} (net:[{self.netns_inum}])")
        if self.cgroup_path is not None:
            parts.append(f"cgroup {self.cgroup_path} (id {self.cgroup_id})")
        return ", ".join(parts) or "whole host"

    def command_prefix(self) -> list[str]:
        """Run a command (dumpcap) inside the scope's network namespace."""
        if self.netns_path is None:
            return []
        tool = shutil.which("nsenter")
        if tool is None:
            raise ScopeError("nsenter not found (util-linux; deploy/deps.sh installs it)")
        return [tool, f"--net={self.netns_path}"]


def netns_path(spec: str) -> Path:
    """NAME (as `ip netns` names it), pid:N (that process's namespace) or a path to an nsfs file."""
    if spec.startswith("pid:"):
        pid = spec[4:]
        if not pid.isdigit():
            raise ScopeError(f"--netns {spec!r}: pid:N needs a process id")
        return Path(f"/proc/{pid}/ns/net")
    if "/" in spec:
        return Path(spec)
    if spec in ("", ".", ".."):
        raise ScopeError(f"--netns {spec!r}: not a namespace name")
    return NETNS_DIR / spec


def resolve(netns: str | None = None, cgroup: str | None = None) -> Scope:
    """Check what was named and turn it into the numbers the kernel compares against."""
    kw: dict = {}
    if netns:
        path = netns_path(netns)
        try:
            st = path.stat()
            nsfs_dev = Path("/proc/self/ns/net").stat().st_dev
        except OSError as exc:
            raise ScopeError(f"--netns {netns!r}: {path}: {exc.strerror}") from None
        if st.st_dev != nsfs_dev:  # every namespace file lives on the one nsfs device
            raise ScopeError(f"--netns {netns!r}: {path} is not a network namespace")
        kw.update(netns_path=path, netns_inum=st.st_ino)
    if cgroup:
        root = cgroup2_root()
        if root is None:
            raise ScopeError("--cgroup needs the unified cgroup v2 hierarchy mounted (none in /proc/self/mounts)")
        path = Path(cgroup)
        if not path.is_absolute():
            path = root / cgroup.lstrip("/")
        path = Path(os.path.normpath(path))
        try:
            rel = path.relative_to(root)
        except ValueError:
            raise ScopeError(f"--cgroup {cgroup!r}: not under the cgroup v2 mount {root}") from None
        if not (path / "cgroup.procs").is_file():
            raise ScopeError(f"--cgroup {cgroup!r}: {path} is not a cgroup")
        kw.update(cgroup_path=path, cgroup_id=path.stat().st_ino, cgroup_level=len(rel.parts))
    return Scope(**kw)
