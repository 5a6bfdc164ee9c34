"""Live capture ring: dumpcap writes time-rotated pcap segments; old segments go under a disk cap.

dumpcap (Wireshark's capture engine, installed with tshark) is used rather than tcpdump because it
never changes uid or chowns its files: it works with only CAP_NET_RAW + CAP_NET_ADMIN, as the
collector's systemd unit grants, and reports kernel drops when it stops.

Drops are also read live, every stats interval: the collector duplicates dumpcap's AF_PACKET socket
(`pidfd_getfd`, needs CAP_SYS_PTRACE, which the unit grants) and reads `PACKET_STATISTICS`. The
kernel resets those counters on each read, so dumpcap's own report at exit then holds only the
remainder: the two are summed, and every drop is counted once.

Segments rotate on time, so one connection may span several: decryption of a closed connection
concatenates every segment overlapping its lifetime (a connection cut at a rotation boundary
cannot be decrypted from one segment alone). Key logs are never written here.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

from collector.config import routerwatch_dir

DEFAULT_FILTER = "tcp or (udp port 53)"
_DROPS = re.compile(r"received/dropped on interface '[^']*': (\d+)/(\d+)")
_SEG = re.compile(r"seg_\d+_(\d{14})\.pcap$")
_SYS_PIDFD_GETFD = 438  # same number on every architecture (unified syscall table)
_SOL_PACKET, _PACKET_STATISTICS = 263, 6
PID_FILE = ".dumpcap.pid"  # the writing dumpcap's pid: readers (the dashboard) know the newest segment is open
SETTLE_S = 1.0  # slack after a stopped segment's last write (packet timestamps precede the write)


def _pidfd_getfd(pid: int, target_fd: int) -> int:
    """A duplicate of another process's descriptor (Linux >= 5.6; Python 3.11 has no wrapper)."""
    pidfd = os.pidfd_open(pid)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.syscall(_SYS_PIDFD_GETFD, pidfd, target_fd, 0)
        if fd < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        return fd
    finally:
        os.close(pidfd)


def packet_sockets(pid: int) -> list[socket.socket]:
    """Duplicates of every AF_PACKET socket `pid` holds (dumpcap: one per interface it captures on)."""
    out = []
    fd_dir = Path(f"/proc/{pid}/fd")
    for entry in fd_dir.iterdir():
        try:
            if not os.readlink(entry).startswith("socket:"):
                continue
            fd = _pidfd_getfd(pid, int(entry.name))
        except (OSError, ValueError):
            continue
        sock = socket.socket(fileno=fd)
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN) == socket.AF_PACKET:
            out.append(sock)
        else:
            sock.close()
    return out


def take_packet_drops(sock: socket.socket) -> int:
    """Drops since the last read of PACKET_STATISTICS on this socket (the kernel resets on read)."""
    raw = sock.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, 12)  # tpacket_stats(_v3): packets, drops[, freeze]
    return struct.unpack_from("II", raw)[1]


def default_capture_dir() -> Path:
    return routerwatch_dir(None, "/var/lib/routerwatch-capture", lambda: Path.home() / ".cache/routerwatch/capture")


class CaptureRing:
    def __init__(self, directory: str | Path | None = None, *, iface: str = "any", bpf_filter: str = DEFAULT_FILTER,
                 rotate_s: int = 30, retain_mb: int = 512, retain_s: float = 24 * 3600, snaplen: int = 0,
                 prefix: list[str] | None = None):
        self.dir = Path(directory) if directory else default_capture_dir()
        self.iface = iface
        self.filter = bpf_filter
        self.rotate_s = rotate_s
        self.retain_bytes = retain_mb << 20
        self.retain_s = retain_s
        self.snaplen = snaplen
        self.prefix = list(prefix or [])  # e.g. nsenter --net=PATH: capture inside a scoped collector's netns (it execs)
        self.proc: subprocess.Popen | None = None
        self._err = None
        self.drops = 0
        self.deleted = 0
        self.live_drops = True  # False when dumpcap's socket cannot be read (no CAP_SYS_PTRACE): drops at exit only
        self._socks: list[socket.socket] = []
        self._next_gc = 0.0

    def start(self) -> None:
        tool = shutil.which("dumpcap")
        if not tool:
            raise RuntimeError("dumpcap not found (deploy/deps.sh installs tshark, which brings it)")
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._end_orphan()
        cmd = [tool, "-q", "-i", self.iface, "-f", self.filter, "-P", "-b", f"duration:{self.rotate_s}",
               "-w", str(self.dir / "seg.pcap")]
        if self.snaplen:
            cmd[2:2] = ["-s", str(self.snaplen)]
        cmd = self.prefix + cmd
        self._err = open(self.dir / ".dumpcap.log", "w+")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self._err, text=True,
                                     start_new_session=True)  # a terminal's Ctrl-C goes to the collector only
        (self.dir / PID_FILE).write_text(str(self.proc.pid))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not self.segments():
            if self.proc.poll() is not None:
                self._err.seek(0)
                err = self._err.read().strip()
                raise RuntimeError(f"dumpcap exited: {err.splitlines()[-1] if err else self.proc.returncode}")
            time.sleep(0.05)
        try:
            self._socks = packet_sockets(self.proc.pid)
        except OSError:
            self._socks = []
        self.live_drops = bool(self._socks)

    def _writer_pid(self) -> int | None:
        """The pid of a dumpcap that writes this ring now (from the pid file, checked against its
        command line: a reused pid is never taken for it), else None."""
        try:
            pid = int((self.dir / PID_FILE).read_text().strip())
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        target = str(self.dir / "seg.pcap").encode()
        return pid if any(a.endswith(b"dumpcap") for a in argv) and target in argv else None

    def _end_orphan(self) -> None:
        """A dumpcap left writing this ring by a collector that was killed (-9, an OOM kill: it gets
        no chance to stop its child, and outside a service manager's cgroup nobody else does) is
        ended before a new one starts: two would write the same segment names. One whose parent
        still runs is another collector's, and this one refuses the directory instead."""
        pid = self._writer_pid()
        if pid is None:
            return
        try:
            ppid = int(next(ln.split()[1] for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
                            if ln.startswith("PPid:")))
            parent = Path(f"/proc/{ppid}/cmdline").read_bytes()
        except (OSError, StopIteration, ValueError):
            return  # it has just exited
        if b"routerwatch" in parent or b"collector" in parent:
            raise RuntimeError(f"capture directory {self.dir} is in use by another collector (pid {ppid}); "
                               "give each collector its own --capture-dir")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)  # it finishes its segment
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self._writer_pid() == pid:
            time.sleep(0.05)
        if self._writer_pid() == pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def poll_drops(self) -> int:
        """Add the kernel's drops since the last call to `drops`; returns the running total."""
        for sock in self._socks:
            try:
                self.drops += take_packet_drops(sock)
            except OSError:
                pass
        return self.drops

    def segments(self) -> list[tuple[float, Path]]:
        """(start epoch, path) for every retained segment, oldest first (dumpcap names them in local time)."""
        out = []
        for p in self.dir.glob("seg_*.pcap"):
            m = _SEG.search(p.name)
            if m:
                out.append((time.mktime(time.strptime(m.group(1), "%Y%m%d%H%M%S")), p))
        return sorted(out)

    def writer_alive(self) -> bool:
        """Is a dumpcap still writing this ring (ours, or, for a reader like the dashboard, the one
        named in the pid file whose command line writes into this directory)?"""
        if self.proc is not None:
            return self.proc.poll() is None
        return self._writer_pid() is not None

    def covering(self, ts_start: float, ts_end: float) -> list[Path]:
        """Segments that may hold packets between ts_start and ts_end. A segment ends where the next
        one starts; the newest is open-ended while dumpcap writes it, else it ends at its last write."""
        segs = self.segments()
        out = []
        alive = self.writer_alive() if segs else False
        for i, (start, p) in enumerate(segs):
            if i + 1 < len(segs):
                end = segs[i + 1][0]
            elif alive:
                end = float("inf")
            else:
                try:
                    end = p.stat().st_mtime + SETTLE_S
                except OSError:
                    continue
            if start <= ts_end and end >= ts_start:
                out.append(p)
        return out

    def gc(self) -> None:
        segs = self.segments()
        total = 0
        sizes = []
        for start, p in segs:
            try:
                size = p.stat().st_size
            except OSError:
                size = 0
            sizes.append((start, p, size))
            total += size
        now = time.time()
        for start, p, size in sizes[:-1]:  # never the segment being written
            if total <= self.retain_bytes and now - start <= self.retain_s:
                break
            p.unlink(missing_ok=True)
            total -= size
            self.deleted += 1

    def poll(self, final: bool = False):
        now = time.monotonic()
        if now >= self._next_gc:
            self.gc()
            self._next_gc = now + 10
        return []

    def counters(self) -> dict[str, int]:
        if self.proc is not None and self.proc.poll() is None:
            self.poll_drops()
        return {"capture_drops": self.drops, "capture_segments_deleted": self.deleted}

    def close(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.poll_drops()
        for sock in self._socks:
            sock.close()
        self._socks = []
        self.proc.send_signal(signal.SIGINT)  # dumpcap finishes the segment and prints its drop counts
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._err.seek(0)
        for m in _DROPS.finditer(self._err.read()):
            self.drops += int(m.group(2))  # only what the live reads had not taken yet
        self._err.close()
        (self.dir / PID_FILE).unlink(missing_ok=True)
