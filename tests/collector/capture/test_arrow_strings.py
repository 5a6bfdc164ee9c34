"""collector.capture.arrow_strings builds the same string arrays pa.array builds from Python strings."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from collector.capture import arrow_strings


@pytest.mark.parametrize("values", [["tcp", "udp"], ["SF", None, "", "RSTOS0"], ["ünïcødé", "日本", None], ["one"], [None]])
def test_coded_equals_pa_array_of_the_values(values: list[str | None]) -> None:
    rng = np.random.default_rng(5)
    for n in (0, 1, 7, 1000):
        codes = rng.integers(0, len(values), n)
        got = arrow_strings.coded(codes, values)
        got.validate(full=True)
        want = pa.array([values[c] for c in codes.tolist()], pa.string())
        assert got.type == pa.string() and got.equals(want)
        assert got.null_count == sum(values[c] is None for c in codes.tolist())


def test_constant_and_fixed_width() -> None:
    for value, n in (("pcap", 5), ("", 3), ("x" * 40, 0)):
        got = arrow_strings.constant(value, n)
        got.validate(full=True)
        assert got.to_pylist() == [value] * n
    chars = np.frombuffer(b"C0123" * 4, np.uint8).reshape(4, 5)
    got = arrow_strings.fixed_width(chars[[3, 0, 2]])  # a gathered (reordered) matrix, as the flows table passes
    got.validate(full=True)
    assert got.to_pylist() == ["C0123"] * 3
    assert arrow_strings.fixed_width(np.zeros((0, 33), np.uint8)).to_pylist() == []
    assert arrow_strings.fixed_width(np.zeros((2, 0), np.uint8)).to_pylist() == ["", ""]


def test_more_bytes_than_int32_offsets_hold_falls_back_to_pa_array(monkeypatch) -> None:
    monkeypatch.setattr(arrow_strings, "_MAX_BYTES", 10)
    codes = np.array([0, 1, 0, 1, 0])
    assert arrow_strings.coded(codes, ["abcd", None]).to_pylist() == ["abcd", None, "abcd", None, "abcd"]
    chars = np.frombuffer(b"abcdef" * 2, np.uint8).reshape(3, 4)
    assert arrow_strings.fixed_width(chars).to_pylist() == ["abcd", "efab", "cdef"]
