"""The live decryptor cuts flows out of the segment dumpcap is still writing, which ends inside a
packet whenever the host is busy: mergecap (exit 2) and tcpdump (exit 1) then report the cut but have
written every whole packet; that is not a failure (a flood of loopback connects made it one in CI)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from collector.live.decrypt import _run_cut_ok

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus" / "public"


def _truncated(tmp_path: Path) -> tuple[Path, Path]:
    whole = next(p for p in sorted(CORPUS.glob("*.pcap")) if p.stat().st_size > 4096)
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole.read_bytes()[:-5])
    return whole, cut


def test_tools_report_a_cut_file_and_it_is_tolerated(tmp_path):
    whole, cut = _truncated(tmp_path)
    out = tmp_path / "out.pcap"
    _run_cut_ok(["tcpdump", "-r", str(cut), "-w", str(out), "tcp or udp"])
    n = subprocess.run(["capinfos", "-c", "-M", str(out)], capture_output=True, text=True, check=True).stdout
    assert int(n.split(":")[-1]) > 0
    merged = tmp_path / "merged.pcap"  # the segment being written is the newest: last in the merge
    _run_cut_ok(["mergecap", "-a", "-F", "pcap", "-w", str(merged), str(whole), str(cut)])
    assert merged.stat().st_size > whole.stat().st_size


def test_other_failures_still_raise(tmp_path):
    with pytest.raises(subprocess.CalledProcessError):
        _run_cut_ok(["tcpdump", "-r", str(tmp_path / "missing.pcap"), "-w", str(tmp_path / "o.pcap")])
    _whole, cut = _truncated(tmp_path)
    with pytest.raises(subprocess.CalledProcessError):  # a bad filter is not a cut file
        _run_cut_ok(["tcpdump", "-r", str(cut), "-w", str(tmp_path / "o.pcap"), "tcp and and"])
