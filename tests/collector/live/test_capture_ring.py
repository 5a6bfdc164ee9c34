"""CaptureRing.covering(): which retained segments may hold a time range. The newest segment is
open-ended only while dumpcap is still writing it; after it stopped, the segment ends at its last
write (mtime), so a later flow gets no stale segment (the decrypt path and the dashboard rely on it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collector.live.capture import CaptureRing


def _segment(directory: Path, n: int, start: float, last_write: float) -> Path:
    name = time.strftime("%Y%m%d%H%M%S", time.localtime(start))
    p = directory / f"seg_{n:05d}_{name}.pcap"
    p.write_bytes(b"\xd4\xc3\xb2\xa1" + b"\0" * 20)
    os.utime(p, (last_write, last_write))
    return p


def test_stopped_ring_bounds_the_newest_segment_by_its_last_write(tmp_path):
    t0 = float(int(time.time()) - 3600)
    a = _segment(tmp_path, 1, t0, t0 + 30)
    b = _segment(tmp_path, 2, t0 + 30, t0 + 45)  # dumpcap stopped 15 s into the second segment
    ring = CaptureRing(tmp_path)
    assert ring.covering(t0 + 10, t0 + 20) == [a]
    assert ring.covering(t0 + 25, t0 + 40) == [a, b]
    assert ring.covering(t0 + 40, t0 + 44) == [b]
    assert ring.covering(t0 + 600, t0 + 610) == []  # after the capture stopped: nothing, not segment b
    assert ring.covering(t0 - 100, t0 - 50) == []


def test_running_writer_keeps_the_newest_segment_open(tmp_path):
    """While the dumpcap that writes the ring is alive (known from the ring's pid file, so a reader
    such as the dashboard sees it too), packets of a just-closed flow may still be in its buffer."""
    t0 = float(int(time.time()) - 3600)
    b = _segment(tmp_path, 1, t0, t0 + 5)
    # a stand-in process whose command line names dumpcap and this ring (what CaptureRing.start writes)
    fake = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "dumpcap", "-w",
                             str(tmp_path / "seg.pcap")])
    try:
        deadline = time.monotonic() + 10  # until the child has exec'd (its command line is the parent's before)
        while b"dumpcap" not in Path(f"/proc/{fake.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        (tmp_path / ".dumpcap.pid").write_text(str(fake.pid))
        assert CaptureRing(tmp_path).covering(t0 + 600, t0 + 610) == [b]
    finally:
        fake.kill()
        fake.wait()
    assert CaptureRing(tmp_path).covering(t0 + 600, t0 + 610) == []  # the writer is gone: bounded again


needs_root_capture = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("dumpcap"),
                                        reason="capturing on lo needs root and dumpcap (deploy/deps.sh installs tshark)")
OWNER = """
import sys, time
from collector.live.capture import CaptureRing
ring = CaptureRing(sys.argv[1], iface="lo", bpf_filter="tcp port 9")
ring.start()
print(ring.proc.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        return b"dumpcap" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@needs_root_capture
def test_a_dumpcap_orphaned_by_a_killed_collector_is_ended_by_the_next_one(tmp_path):
    """kill -9 of the collector leaves its dumpcap writing the ring (it runs in its own session); the
    next collector on the ring ends it before starting its own. While the first collector still runs,
    a second one refuses the directory instead of taking it over."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    orphan = int(owner.stdout.readline())
    second = CaptureRing(tmp_path, iface="lo", bpf_filter="tcp port 9")
    try:
        with pytest.raises(RuntimeError, match="in use by another collector"):
            second.start()
        assert _alive(orphan)
        owner.kill()
        owner.wait()
        time.sleep(0.5)
        assert _alive(orphan), "the scenario: dumpcap outlives a collector killed with -9"
        ring = CaptureRing(tmp_path, iface="lo", bpf_filter="tcp port 9")
        ring.start()
        try:
            assert not _alive(orphan) and ring.writer_alive()
        finally:
            ring.close()
    finally:
        owner.kill()
        owner.wait()
        second.close()
        if _alive(orphan):
            os.kill(orphan, 9)
