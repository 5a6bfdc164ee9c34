"""Process details for attribution: exe, cmdline (secrets redacted), ppid chain, uid, start time,
cgroup and container id. Read from /proc in userspace and cached per (pid, start_time).

Short-lived processes are gone before userspace can look at /proc, so the eBPF exec and connect
records carry what the kernel knew at the time (ppid, start time, uid, cgroup id, comm, filename,
argv); /proc only fills in what is still there. Every process is written once per (pid, start).
"""

from __future__ import annotations

import os
import re
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from collector.secrets import CMDLINE_SCAN_MAX, Fingerprinter, redact_command, secret_row

PROC = Path("/proc")
CGROUP_ROOT = Path("/sys/fs/cgroup")
_CONTAINER_RE = re.compile(
    r"(?:docker|cri-containerd|crio|libpod|containerd)[-/:]([0-9a-f]{12,64})|/([0-9a-f]{64})(?:\.scope)?(?:/|$)"
)
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
CMDLINE_MAX = 4096


@dataclass
class ProcInfo:
    pid: int
    ppid: int | None
    start_time: float | None  # seconds since the epoch, 10 ms resolution (as /proc reports it)
    exe: str | None = None
    cmdline: str | None = None
    uid: int | None = None
    container_id: str | None = None
    comm: str | None = None
    cgroup: str | None = None
    # the raw argument list (memory only, until the process table redacts it into `cmdline`)
    argv: list[str] | None = field(default=None, repr=False)


ROW_FIELDS = ("pid", "ppid", "start_time", "exe", "cmdline", "uid", "container_id", "comm", "cgroup")


def container_id(cgroup_path: str | None) -> str | None:
    """The container id in a cgroup path (docker, containerd, CRI-O, podman, Kubernetes pods)."""
    if not cgroup_path:
        return None
    found = list(_CONTAINER_RE.finditer(cgroup_path))
    if not found:
        return None
    return found[-1].group(1) or found[-1].group(2)  # the innermost container


def args_text(raw: bytes) -> str:
    """NUL-separated argv -> one command line (NOT redacted: for display of a process of one's own)."""
    return " ".join(args_list(raw))[:CMDLINE_MAX]


def args_list(raw: bytes) -> list[str]:
    """NUL-separated argv (an exec record's, /proc/PID/cmdline) -> the arguments (what a command line
    redaction needs: `--password 'a b'` is two arguments, not three words)."""
    return raw[:CMDLINE_SCAN_MAX].rstrip(b"\0").decode("utf-8", "replace").split("\0") if raw.strip(b"\0") else []


def boot_time() -> float:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    raise RuntimeError("no btime in /proc/stat")


def read_proc(pid: int, btime: float | None = None) -> ProcInfo | None:
    """What /proc says about `pid` now (None if it is gone). cmdline and argv are NOT redacted here: the
    process table redacts them (redact_command) before anything is stored."""
    base = PROC / str(pid)
    try:
        stat = (base / "stat").read_text()
    except OSError:
        return None
    rp = stat.rfind(")")
    comm = stat[stat.find("(") + 1 : rp]
    fields = stat[rp + 2 :].split()
    ppid = int(fields[1])
    btime = boot_time() if btime is None else btime
    start = round(btime + int(fields[19]) / CLK_TCK, 2)
    info = ProcInfo(pid=pid, ppid=ppid, start_time=start, comm=comm)
    try:
        info.exe = os.readlink(base / "exe")
    except OSError:
        pass
    try:
        raw = (base / "cmdline").read_bytes()
        info.argv = args_list(raw)
        info.cmdline = " ".join(info.argv)[:CMDLINE_MAX]
    except OSError:
        pass
    try:
        for line in (base / "status").read_text().splitlines():
            if line.startswith("Uid:"):
                info.uid = int(line.split()[1])
                break
    except OSError:
        pass
    try:
        cg = (base / "cgroup").read_text().strip().splitlines()
        path = next((line.split(":", 2)[2] for line in cg if line.startswith("0::")), cg[0].split(":", 2)[2] if cg else None)
        info.cgroup = path
        info.container_id = container_id(path)
    except (OSError, IndexError):
        pass
    return info


class CgroupNames:
    """cgroup v2 id (the directory's inode, what bpf_get_current_cgroup_id returns) -> path."""

    def __init__(self, root: Path = CGROUP_ROOT, min_rescan_s: float = 5.0):
        self.root = root
        self.min_rescan_s = min_rescan_s
        self._names: dict[int, str] = {}
        self._scanned = 0.0

    def _scan(self) -> None:
        names: dict[int, str] = {}
        for dirpath, _dirs, _files in os.walk(self.root):
            try:
                names[os.stat(dirpath).st_ino] = "/" + os.path.relpath(dirpath, self.root).lstrip(".")
            except OSError:
                continue
        self._names = names
        self._scanned = time.monotonic()

    def path(self, cgroup_id: int) -> str | None:
        if not cgroup_id:
            return None
        p = self._names.get(cgroup_id)
        if p is None and time.monotonic() - self._scanned >= self.min_rescan_s:
            self._scan()
            p = self._names.get(cgroup_id)
        return p


class ProcessTable:
    """Cache of processes seen, producing one `processes` row per (pid, start_time).

    Rows are built when a process is first seen (exec, connect, DNS) together with its ancestors,
    so a flow's parent chain can be rebuilt from the table even after every process has exited.
    """

    def __init__(self, host_id: str, fingerprinter: Fingerprinter, max_entries: int = 65536,
                 btime: float | None = None):
        self.host_id = host_id
        self.fp = fingerprinter
        self.max_entries = max_entries
        self.btime = boot_time() if btime is None else btime
        self.cgroups = CgroupNames()
        self._by_key: OrderedDict[tuple[int, float], ProcInfo] = OrderedDict()
        self._latest: dict[int, tuple[int, float]] = {}  # pid -> key of its newest incarnation
        self._rows: list[dict] = []
        self._secrets: list[dict] = []

    # -- lookups ------------------------------------------------------------------------------
    def get(self, pid: int, start: float | None = None) -> ProcInfo | None:
        key = (pid, start) if start is not None else self._latest.get(pid)
        return self._by_key.get(key) if key else None

    def chain(self, pid: int, start: float | None = None, depth: int = 32) -> list[ProcInfo]:
        """The process and its ancestors, nearest first (as far as they are known)."""
        out: list[ProcInfo] = []
        p = self.get(pid, start)
        while p is not None and len(out) < depth:
            out.append(p)
            if not p.ppid or p.ppid == p.pid:
                break
            p = self.get(p.ppid)
        return out

    # -- observations -------------------------------------------------------------------------
    def seen(self, pid: int, *, ppid: int | None = None, start: float | None = None, uid: int | None = None,
             cgroup_id: int = 0, comm: str | None = None, exe: str | None = None,
             argv: bytes | Sequence[str] | None = None, ts: float | None = None, is_exec: bool = False) -> ProcInfo:
        """Record that `pid` (started at `start`) was active; returns its cached details. `argv`: the
        exec record's NUL-separated arguments, or an argument list (its command line is redacted here)."""
        key = (pid, start) if start is not None else self._latest.get(pid)
        known = self._by_key.get(key) if key else None
        if known is not None and not is_exec:
            self._by_key.move_to_end(key)
            return known
        live = read_proc(pid, self.btime)
        if live is not None and start is not None and live.start_time is not None and abs(live.start_time - start) > 0.011:
            live = None  # the pid was reused: /proc describes another process
        info = live or ProcInfo(pid=pid, ppid=ppid, start_time=start)
        if start is not None:
            info.start_time = start
        if ppid:
            info.ppid = ppid
        info.uid = uid if uid is not None else info.uid
        info.comm = comm or info.comm
        if is_exec:
            info.exe = (live.exe if live and live.exe else None) or exe or info.exe
            if argv:
                info.argv = args_list(argv) if isinstance(argv, bytes) else list(argv)
                info.cmdline = None
        if not info.exe and info.ppid:  # forked without exec: same image as the parent
            parent = self.get(info.ppid)
            if parent is not None:
                info.exe = parent.exe
        if info.cgroup is None and cgroup_id:
            info.cgroup = self.cgroups.path(cgroup_id)
            info.container_id = container_id(info.cgroup)
        self._remember(info, ts)
        if info.ppid and info.ppid != pid and self.get(info.ppid) is None:
            self._ensure_ancestors(info.ppid, ts)
        return info

    def _ensure_ancestors(self, pid: int, ts: float | None) -> None:
        for _ in range(32):
            if pid <= 0 or self.get(pid) is not None:
                return
            info = read_proc(pid, self.btime)
            if info is None:
                return
            self._remember(info, ts)
            if not info.ppid or info.ppid == pid:
                return
            pid = info.ppid

    def _remember(self, info: ProcInfo, ts: float | None) -> None:
        raw = info.argv if info.argv is not None else info.cmdline
        info.argv = None  # the raw arguments go; only the redacted command line stays (and is stored)
        if raw:
            red, pairs = redact_command(raw, self.fp)
            info.cmdline = red[:CMDLINE_MAX]
            for m, f in pairs:
                self._secrets.append(secret_row(m, f, direction="cmdline", location="cmdline", pid=info.pid,
                                                host_id=self.host_id, ts=_ts(ts)))
        key = (info.pid, info.start_time if info.start_time is not None else -1.0)
        self._by_key[key] = info
        self._latest[info.pid] = key
        row = {k: getattr(info, k) for k in ROW_FIELDS}
        row.update(ts=_ts(ts), host_id=self.host_id)
        self._rows.append(row)
        while len(self._by_key) > self.max_entries:
            old_key, old = self._by_key.popitem(last=False)
            if self._latest.get(old.pid) == old_key:
                del self._latest[old.pid]

    def take_rows(self) -> tuple[list[dict], list[dict]]:
        """New `processes` rows and `secrets_seen` rows (from command lines) since the last call."""
        rows, self._rows = self._rows, []
        secrets, self._secrets = self._secrets, []
        return rows, secrets


def _ts(ts: float | None):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts if ts is not None else time.time(), UTC).replace(tzinfo=None)
