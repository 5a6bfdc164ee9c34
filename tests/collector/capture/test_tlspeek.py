"""The ClientHellos parsed in Python (tlspeek) equal tshark's dissection of the same packets."""

from __future__ import annotations

import subprocess

import pytest

from collector.capture import dissect, flows, headers, tshark
from collector.capture.records import MappedFile, read_records
from tests.conftest import CORPUS

CAPTURES = sorted(p for p in CORPUS.glob("*.pcap*")) if CORPUS.is_dir() else []
FIELDS = ("sni", "alpn", "legacy_version", "version", "ciphers", "extensions", "supported_versions", "sig_algs")


def _python_hellos(path) -> dict[int, dissect.Hello]:
    """Frame number -> ClientHello, as ingest's selection parses them."""
    with MappedFile(path) as mf:
        rec = read_records(path, mf, None)
        if not all(lt in headers.FAST_LINKTYPES for lt in set(rec.linktypes)):
            return {}
        hd = headers.walk(mf.buf, rec)
        fa = flows.assign(hd)
        sel = flows.select_for_dissection(hd, fa, mf, rec.data_off + rec.caplen)
        return {r + 1: h for r, h in sel.client_hellos.values()}


def _tshark_hellos(path) -> dict[int, dissect.Hello]:
    args = tshark.base_args() + ["-r", str(path), "-Y", "tls.handshake.type == 1 && tcp"]
    out = subprocess.run(args + tshark.fields_args(dissect.FIELDS), capture_output=True, text=True).stdout
    return {h.frame: h for h in dissect.parse(out)[1] if h.client}


def test_client_hello_fields_match_tshark() -> None:
    if not CAPTURES:
        pytest.skip(f"the shared corpus is not beside this checkout ({CORPUS}); CI always has it")
    parsed = 0
    for path in CAPTURES:
        mine, theirs = _python_hellos(path), _tshark_hellos(path)
        for frame, h in mine.items():
            assert frame in theirs, (path.name, frame)
            t = theirs[frame]
            assert {k: getattr(h, k) for k in FIELDS} == {k: getattr(t, k) for k in FIELDS}, (path.name, frame)
            assert h.ja4("t") == t.ja4("t"), (path.name, frame)
        parsed += len(mine)
    assert parsed >= 10  # the corpus has many single-segment hellos: the Python path is exercised
