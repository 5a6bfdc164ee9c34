"""The mapped capture's pages leave the process's resident set behind the readers and the header
walk (MappedFile.release), and reading in slices changes no field."""

from __future__ import annotations

import subprocess
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from collector.capture import headers, records
from collector.capture.records import MappedFile, read_records
from tests.support.gen_capture import generate

MB = 1 << 20


def mapping_rss(path: Path) -> int:
    """Resident bytes of this process's mappings of `path` (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(maxsplit=1)[0]
            if "-" in head and not head.endswith(":"):
                inside = line.rstrip().endswith(str(path))
            elif inside and head == "Rss:":
                total += int(line.split()[1]) * 1024
    return total


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | int]:
    d = tmp_path_factory.mktemp("bulk")
    pcap = d / "bulk.pcap"
    info = generate(str(pcap), 60_000, data=2000)  # few long flows: ~46 MB
    pcapng = d / "bulk.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(pcap), str(pcapng)], check=True)
    return {"pcap": pcap, "pcapng": pcapng, "packets": info["packets"]}


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_readers_and_header_walk_leave_little_of_the_capture_resident(captures, fmt: str, monkeypatch) -> None:
    cap = captures[fmt]
    size = cap.stat().st_size
    assert size > 40 * MB
    monkeypatch.setattr(records, "GATHER_CHUNK", 4096)  # slices of a test-sized capture
    with MappedFile(cap) as mf:
        rec = read_records(cap, mf)
        after_read = mapping_rss(cap)
        walked = headers.walk_mapped(mf, rec, chunk=8192)
        after_walk = mapping_rss(cap)
        whole = headers.walk(mf.buf, rec)  # one pass over all records keeps every page it touched
        after_whole = mapping_rss(cap)
    assert len(rec) == captures["packets"] and not rec.truncated
    assert after_whole > 0.9 * size, after_whole
    # the record walk releases every 16 MB, the gathers every slice: at most about one window stays
    assert after_read < 20 * MB, after_read
    assert after_walk < 4 * MB, after_walk
    for f in fields(headers.Headers):
        np.testing.assert_array_equal(getattr(walked, f.name), getattr(whole, f.name), err_msg=f.name)


def test_release_of_a_range_and_of_an_empty_file(tmp_path: Path) -> None:
    cap = tmp_path / "x.bin"
    cap.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    with MappedFile(cap) as mf:
        assert int(mf.buf.sum()) == 4096 * sum(range(256))
        mf.release(end=600_000, start=10)  # an unaligned start: from its page on
        assert mapping_rss(cap) <= (1 << 20) - 580_000
        assert mf.buf[123_456] == 123_456 % 256  # a released page reads back the same bytes
        mf.release(end=10 << 20)  # past the end: up to the end
        assert mapping_rss(cap) < 64 * 1024
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with MappedFile(empty) as mf:
        mf.release()
