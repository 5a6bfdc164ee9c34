"""Capture loopback traffic to a pcap file with tcpdump (or dumpcap) for the duration of a block.

Used by `routerwatch demo` and by the tests (tests/support/capture.py re-exports it).

    with capture_loopback(tmp_path / "cap.pcap", ports=[router.port]) as cap:
        ... drive clients ...
    cap.path, cap.stats          # the file, and tcpdump's captured/received/dropped counts

Readiness is real, not a sleep: tcpdump prints "listening on" only after the capture socket is open and
the BPF filter installed, and we also wait for the file header. The optional probe sends one UDP datagram
to a port inside the filter and waits until it lands in the file (proof the pipeline writes packets);
it is off by default because it adds a packet the ingest will see.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PCAP_HEADER = 24


@dataclass
class Capture:
    path: Path
    filter: str
    tool: str
    pid: int = 0
    stderr: list[str] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)


def capture_tool() -> str | None:
    """The capture program available here (tcpdump preferred), or None."""
    for tool in ("tcpdump", "dumpcap"):
        if shutil.which(tool):
            return tool
    return None


def bpf_for_ports(ports: Iterable[int], udp_probe_port: int | None = None) -> str:
    parts = [f"tcp port {int(p)}" for p in ports]
    if udp_probe_port:
        parts.append(f"udp port {udp_probe_port}")
    return " or ".join(parts) if parts else "tcp or udp"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_quiet(path: Path, quiet: float, limit: float) -> None:
    """Wait until the file has stopped growing for `quiet` seconds (tcpdump may lag behind the kernel
    ring on a busy machine, and packets still in the ring when it is stopped are lost silently)."""
    end = time.monotonic() + limit
    size, since = -1, time.monotonic()
    while time.monotonic() < end:
        now_size = path.stat().st_size if path.exists() else 0
        if now_size != size:
            size, since = now_size, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.05)


def _command(tool: str, interface: str, filt: str, path: Path, buffer_mib: int,
             netns: str | None) -> tuple[list[str], str]:
    """The capture tool's command line, and the stderr text that says it is capturing."""
    if tool == "tcpdump":
        # -Z root: do not drop to the tcpdump user (it could not write into a 0700 tmp dir);
        # -U + --immediate-mode: every packet is written as it arrives.
        # -B: a 64 MiB kernel ring (the 2 MiB default holds ~32 64-KiB loopback segments and drops on a busy
        # machine; one lost segment makes a TLS stream undecryptable).
        cmd = ["tcpdump", "-i", interface, "-U", "--immediate-mode", "-s", "0", "-n", "-Z", "root",
               "-B", str(buffer_mib * 1024), "-w", str(path), filt]
        ready_marker = "listening on"
    else:
        cmd = ["dumpcap", "-i", interface, "-P", "-s", "0", "-B", str(buffer_mib), "-f", filt, "-w", str(path)]
        ready_marker = "Capturing on"
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    return cmd, ready_marker


def _counts(stderr: str) -> dict[str, int]:
    """captured / received / dropped from tcpdump's or dumpcap's closing lines."""
    out: dict[str, int] = {}
    for key, pattern in (("captured", r"(\d+) packets? captured"), ("received", r"(\d+) packets? received by filter"),
                         ("dropped", r"(\d+) packets? dropped by kernel"), ("captured", r"Packets captured: (\d+)"),
                         ("dropped", r"Packets dropped: (\d+)")):
        m = re.search(pattern, stderr)
        if m:
            out[key] = int(m.group(1))
    return out


@contextmanager
def capture_loopback(
    path: str | os.PathLike,
    ports: Iterable[int] = (),
    *,
    bpf: str | None = None,
    interface: str = "lo",
    probe: bool = False,
    settle: float = 0.3,
    timeout: float = 15.0,
    netns: str | None = None,
    buffer_mib: int = 64,
) -> Iterator[Capture]:
    """Capture `interface` (default lo) into `path` while the block runs; stop by PID on exit.

    `ports` builds the BPF filter (`tcp port A or tcp port B`), `bpf` replaces it. `settle` seconds pass
    without the file growing must pass before stopping, so the last segments (FIN/ACK) are written. `netns` runs the capture inside a named
    network namespace; `buffer_mib` sizes the kernel capture buffer. Check `cap.stats["dropped"]` after
    the block: a busy machine can still drop. Raises RuntimeError if the capture does not start within `timeout`.
    """
    tool = capture_tool()
    if tool is None:
        raise RuntimeError("neither tcpdump nor dumpcap is installed (apt-get install tcpdump)")
    path = Path(path)
    path.unlink(missing_ok=True)
    probe_port = _free_udp_port() if probe else None
    filt = bpf or bpf_for_ports(ports, probe_port)
    if probe and bpf:
        filt = f"({bpf}) or udp port {probe_port}"
    cmd, ready_marker = _command(tool, interface, filt, path, buffer_mib, netns)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    cap = Capture(path=path, filter=filt, tool=tool, pid=proc.pid)
    ready = threading.Event()

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            cap.stderr.append(line.rstrip("\n"))
            if ready_marker in line:
                ready.set()
        ready.set()  # EOF: the process ended (check returncode below)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + timeout
        ready.wait(timeout)
        while proc.poll() is None and time.monotonic() < deadline:
            if path.exists() and path.stat().st_size >= PCAP_HEADER:
                break
            time.sleep(0.01)
        if proc.poll() is not None or not path.exists() or path.stat().st_size < PCAP_HEADER:
            raise RuntimeError(f"{tool} did not start: {' | '.join(cap.stderr[-5:])}")
        if probe_port:
            size0 = path.stat().st_size
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                while path.stat().st_size == size0:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{tool} is running but wrote no probe packet")
                    s.sendto(b"routerwatch-capture-probe", ("127.0.0.1", probe_port))
                    time.sleep(0.05)
        yield cap
    finally:
        if proc.poll() is None:
            _wait_quiet(path, settle, limit=max(5.0, settle))
            os.kill(proc.pid, signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
        reader.join(5)
        cap.stats.update(_counts("\n".join(cap.stderr)))
