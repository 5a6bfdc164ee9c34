"""Degraded mode without eBPF: poll /proc/net/tcp{,6} for connections and /proc/*/fd for owners.

Polling misses connections shorter than the poll period and sees no byte counts; the collector
says so at start and marks these rows `source = 'procnet'`.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from datetime import UTC, datetime
from pathlib import Path

from collector.capture.community_id import community_id
from collector.processes import ProcessTable

TCP_ESTABLISHED, TCP_LISTEN = "01", "0A"


def _addr(hexaddr: str) -> tuple[str, int]:
    ip, port = hexaddr.split(":")
    raw = bytes.fromhex(ip)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1]), int(port, 16)
    words = struct.unpack("<4I", raw)
    return socket.inet_ntop(socket.AF_INET6, struct.pack(">4I", *words)), int(port, 16)


def read_tcp(paths=("/proc/net/tcp", "/proc/net/tcp6")) -> list[tuple[str, int, str, int, str, int, int]]:
    """(local ip, port, remote ip, port, state, uid, inode) for every TCP socket in this netns."""
    out = []
    for p in paths:
        try:
            lines = Path(p).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            lip, lport = _addr(f[1])
            rip, rport = _addr(f[2])
            out.append((lip, lport, rip, rport, f[3], int(f[7]), int(f[9])))
    return out


def socket_owners(inodes: set[int]) -> dict[int, int]:
    """inode -> pid, scanning /proc/*/fd only while some inode is still unresolved."""
    found: dict[int, int] = {}
    if not inodes:
        return found
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                ino = int(link[8:-1])
                if ino in inodes:
                    found[ino] = int(pid)
        if len(found) == len(inodes):
            break
    return found


class ProcNetPoller:
    """Emits one `flows` row per TCP connection when it disappears from /proc/net/tcp."""

    def __init__(self, host_id: str, processes: ProcessTable, clock=None, period: float = 1.0):
        self.host_id = host_id
        self.processes = processes
        self.period = period
        self._open: dict[int, dict] = {}
        self._next = 0.0
        self.seen = 0

    def poll(self, final: bool = False):
        now = time.monotonic()
        if now < self._next and not final:
            return []
        self._next = now + self.period
        socks = read_tcp()
        listening = {lport for _l, lport, _r, _rp, st, _u, _i in socks if st == TCP_LISTEN}
        current = {}
        for lip, lport, rip, rport, st, _uid, ino in socks:
            if st != TCP_ESTABLISHED or ino == 0:
                continue
            current[ino] = (lip, lport, rip, rport)
        new = set(current) - set(self._open)
        owners = socket_owners(new)
        ts = datetime.now(UTC).replace(tzinfo=None)
        for ino in new:
            lip, lport, rip, rport = current[ino]
            outbound = lport not in listening
            src, sp, dst, dp = (lip, lport, rip, rport) if outbound else (rip, rport, lip, lport)
            pid = owners.get(ino)
            start = None
            if pid:
                info = self.processes.seen(pid)
                start = info.start_time
            self._open[ino] = {
                "flow_uid": f"P{self.host_id}-{ino}", "community_id": community_id("tcp", src, sp, dst, dp),
                "host_id": self.host_id, "ts_start": ts, "proto": "tcp", "src_ip": src, "src_port": sp,
                "dst_ip": dst, "dst_port": dp, "pid": pid, "process_start": start, "source": "procnet",
                "direction": "outbound" if outbound else "inbound",
            }
            self.seen += 1
        closed = [ino for ino in self._open if ino not in current or final]
        rows = []
        for ino in closed:
            row = self._open.pop(ino)
            row["ts_end"] = ts
            rows.append(row)
        return [("flows", rows)] if rows else []

    def counters(self) -> dict[str, int]:
        return {"procnet_connections": self.seen}

    def close(self) -> None:
        pass
