"""The mapped capture's pages leave the process's resident set behind the readers and the header
walk (MappedFile.release), and reading in slices changes no field."""

from __future__ import annotations

import subprocess
import threading
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from collector.capture import headers, records
from collector.capture.records import MappedFile, read_records, rows
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
def test_readers_and_header_walk_leave_little_of_the_capture_resident(captures, fmt: str) -> None:
    cap = captures[fmt]
    size = cap.stat().st_size
    assert size > 40 * MB
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
        if f.name == "ipid" and walked.ipid.strides == (0,):  # no fragments: walk_mapped keeps no IP ids
            assert not (whole.frag_first.any() or whole.frag_later.any())
            continue
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


def test_dissection_selection_reads_a_flow_dense_capture_a_span_at_a_time(tmp_path: Path, monkeypatch) -> None:
    """A few payload bytes of every flow (first client and server packets, DNS ids, hellos, the
    frames handed to tshark) are read in file order: the capture is never resident as a whole."""
    from collector.capture import flows, tshark

    cap = tmp_path / "dense.pcap"
    generate(str(cap), 120_000)  # ~4,000 short flows
    size = cap.stat().st_size
    seen: list[int] = []
    release = MappedFile.release

    def watched(self: MappedFile, end: int | None = None, start: int = 0) -> None:
        seen.append(mapping_rss(cap))
        release(self, end, start)

    with MappedFile(cap) as mf:
        rec = read_records(cap, mf)
        hd = headers.walk_mapped(mf, rec)
        fa = flows.assign(hd)
        monkeypatch.setattr(MappedFile, "release", watched)
        sel = flows.select_for_dissection(hd, fa, mf, rec.data_off + rec.caplen)
        tshark.small_pcapng(mf, rec, sel.records)
        monkeypatch.undo()
        after = mapping_rss(cap)
    assert size > 60 * MB and len(sel.client_hellos) > 3000
    assert len(seen) > 10
    assert max(seen) < 24 * MB, (max(seen), size)  # a 16 MiB span and the kernel's fault-around
    assert after < 1 * MB


def test_dns_read_and_dissection_selection_each_pass_over_the_file_once(tmp_path: Path, monkeypatch) -> None:
    """Each pass over the file maps the capture's pages again. read_dns reads the DNS rule's first
    bytes and the datagrams' bytes in one pass (there were two); the selection reads the first
    payload bytes, the ClientHellos whole in their first segment and the ServerHellos in one (there
    were three)."""
    from collector.capture import flows

    cap = tmp_path / "dense.pcap"
    generate(str(cap), 20_000)
    walks: list[int] = []
    in_file_order = MappedFile.in_file_order

    def counted(self: MappedFile, offsets: np.ndarray):
        walks.append(len(offsets))
        return in_file_order(self, offsets)

    with MappedFile(cap) as mf:
        rec = read_records(cap, mf)
        hd = headers.walk_mapped(mf, rec)
        fa = flows.assign(hd)
        end = rec.data_off + rec.caplen
        monkeypatch.setattr(MappedFile, "in_file_order", counted)
        dns, messages, _ = flows.read_dns(hd, fa, mf, rec.data_off, end)
        assert len(walks) == 1 and len(messages) > 200, walks
        sel = flows.select_for_dissection(hd, fa, mf, end, dns)
    assert len(sel.client_hellos) > 500 and len(sel.server_hellos) > 500
    assert len(walks) == 2, walks


def test_take_and_slices_at_the_ends_of_the_file(tmp_path: Path) -> None:
    cap = tmp_path / "x.bin"
    data = bytes(range(256)) * 40
    cap.write_bytes(data)
    with MappedFile(cap) as mf:
        offs = np.array([5000, -1, 0, len(data) - 2, len(data) + 9], np.int64)
        got = mf.take(offs, 4)
        assert got.tolist() == [list(data[5000:5004]), [0, 0, 1, 2], list(data[:4]), list(data[-2:]) + [0, 0],
                                [0, 0, 0, 0]]
        wide = mf.take(np.array([10], np.int64), len(data) + 100)  # wider than the file
        assert bytes(wide[0, :len(data) - 10]) == data[10:] and not wide[0, len(data) - 10:].any()
        assert mf.slices(np.array([7, -5, len(data) - 3, 20]), np.array([9, 2, len(data) + 50, 20])) == [
            data[7:9], data[:2], data[-3:], b""]
        assert mf.take(np.zeros(0, np.int64), 3).shape == (0, 3) and mf.slices(np.zeros(0), np.zeros(0)) == []


def test_a_clean_copy_of_a_whole_capture_is_written_a_chunk_at_a_time(captures, tmp_path: Path) -> None:
    """The tshark fallbacks write every record into a temporary pcapng: the frames stream through
    (pcapng_parts yields a chunk at a time), never a copy of the whole capture in memory."""
    import tracemalloc

    from collector.capture import tshark

    cap = captures["pcap"]
    out = tmp_path / "copy.pcapng"
    with MappedFile(cap) as mf:
        rec = read_records(cap, mf)
        tracemalloc.start()
        try:
            with open(out, "wb") as f:
                for part in tshark.pcapng_parts(mf, rec, np.arange(len(rec))):
                    f.write(part)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        frames = [bytes(mf.buf[o:o + c]) for o, c in zip(rec.data_off[[0, 7, -1]].tolist(),
                                                          rec.caplen[[0, 7, -1]].tolist(), strict=True)]
    assert cap.stat().st_size > 40 * MB
    assert peak < 16 * MB, peak  # a chunk of frames and the per-record headers, not the capture (63 MB before)
    with MappedFile(out) as mf:
        copy = read_records(out, mf)
        assert len(copy) == len(rec) and not copy.truncated
        assert np.array_equal(copy.ts_ns, rec.ts_ns)
        assert [bytes(mf.buf[o:o + c]) for o, c in zip(copy.data_off[[0, 7, -1]].tolist(),
                                                       copy.caplen[[0, 7, -1]].tolist(), strict=True)] == frames


def test_rows_equal_a_sliding_window_gather() -> None:
    """records.rows (one void-item copy per row) gives the bytes indexing a sliding window gives."""
    rng = np.random.default_rng(7)
    buf = rng.integers(0, 256, 10_000, dtype=np.uint8)
    for width in (1, 3, 5, 14, 20, 64):
        at = rng.integers(0, len(buf) - width + 1, 2_000)
        want = np.lib.stride_tricks.sliding_window_view(buf, width)[at]
        got = rows(buf, at, width)
        assert got.shape == (2_000, width) and got.dtype == np.uint8 and np.array_equal(got, want)
    assert rows(buf, np.zeros(0, np.int64), 16).shape == (0, 16)
    assert rows(buf[:4], np.zeros(0, np.int64), 16).shape == (0, 16)
    with pytest.raises(IndexError):
        rows(buf[:4], np.zeros(1, np.int64), 16)
    with pytest.raises(IndexError):
        rows(buf, np.array([len(buf) - 15]), 16)


@pytest.mark.parametrize("dtype", ["<u2", ">u2", "<u4"])
def test_positions_equal_matches_flatnonzero_across_blocks(dtype: str, monkeypatch) -> None:
    """The chain scans' blocked comparison finds exactly np.flatnonzero(values == value): hits on
    both sides of every block boundary, in the last partial block, none at all, and an empty input."""
    monkeypatch.setattr(records, "SCAN_BLOCK", 1000)
    monkeypatch.setattr(records, "_scan", threading.local())  # a scratch of the patched size
    rng = np.random.default_rng(7)
    values = rng.integers(0, 5, 4321).astype(dtype)
    values[[0, 999, 1000, 1999, 2000, 4320]] = 3
    for value in (3, 9):
        got = records.positions_equal(values, value)
        assert got.dtype == np.int64
        assert np.array_equal(got, np.flatnonzero(values == value))
    assert records.positions_equal(values[:0], 3).tolist() == []
    part = values[1000:2001]  # a view starting at a block boundary, one element past the next
    assert np.array_equal(records.positions_equal(part, 3), np.flatnonzero(part == 3))
