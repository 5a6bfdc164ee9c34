"""Live capture ring: tcpdump writes time-rotated pcap segments; old segments go under a disk cap.

Segments rotate on time, so one connection may span several: decryption of a closed connection
concatenates every segment overlapping its lifetime (a connection cut at a rotation boundary
cannot be decrypted from one segment alone). Key logs are never written here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

DEFAULT_FILTER = "tcp or (udp port 53)"
_DROPS = re.compile(r"(\d+) packets? dropped by kernel")


def default_capture_dir() -> Path:
    return Path("/var/lib/routerwatch-capture") if os.geteuid() == 0 else Path.home() / ".cache/routerwatch/capture"


class CaptureRing:
    def __init__(self, directory: str | Path | None = None, *, iface: str = "any", bpf_filter: str = DEFAULT_FILTER,
                 rotate_s: int = 30, retain_mb: int = 512, retain_s: float = 24 * 3600, snaplen: int = 0):
        self.dir = Path(directory) if directory else default_capture_dir()
        self.iface = iface
        self.filter = bpf_filter
        self.rotate_s = rotate_s
        self.retain_bytes = retain_mb << 20
        self.retain_s = retain_s
        self.snaplen = snaplen
        self.proc: subprocess.Popen | None = None
        self.drops = 0
        self.deleted = 0
        self._next_gc = 0.0

    def start(self) -> None:
        tool = shutil.which("tcpdump")
        if not tool:
            raise RuntimeError("tcpdump not found (deploy/deps.sh installs it)")
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        cmd = [tool, "-i", self.iface, "-n", "-U", "-s", str(self.snaplen), "-G", str(self.rotate_s),
               "-Z", "root", "-w", str(self.dir / "seg-%s.pcap"), self.filter]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)
        if self.proc.poll() is not None:
            err = self.proc.stderr.read().strip() if self.proc.stderr else ""
            raise RuntimeError(f"tcpdump exited: {err.splitlines()[-1] if err else self.proc.returncode}")

    def segments(self) -> list[tuple[float, Path]]:
        """(start epoch, path) for every retained segment, oldest first."""
        out = []
        for p in self.dir.glob("seg-*.pcap"):
            try:
                out.append((float(p.stem[4:]), p))
            except ValueError:
                continue
        return sorted(out)

    def covering(self, ts_start: float, ts_end: float) -> list[Path]:
        """Segments that may hold packets between ts_start and ts_end."""
        segs = self.segments()
        out = []
        for i, (start, p) in enumerate(segs):
            end = segs[i + 1][0] if i + 1 < len(segs) else float("inf")
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
        return {"capture_drops": self.drops, "capture_segments_deleted": self.deleted}

    def close(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        m = _DROPS.search(err or "")
        if m:
            self.drops += int(m.group(1))
