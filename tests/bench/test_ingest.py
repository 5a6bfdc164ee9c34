"""`bench/ingest.py` on a small generated capture: the peers that are there are timed against ingest in
the same run, a peer that is missing is skipped in one line naming the command that installs it (CI has
tshark but neither Suricata nor nfstream: bench/install_peers.sh installs those for the bench only)."""

from __future__ import annotations

import re
import shutil

import pytest

from bench import ingest


def test_tshark_timed_and_missing_suricata_skipped(tmp_path, monkeypatch, capsys):
    if shutil.which("suricata"):
        pytest.skip("a system-wide suricata is on PATH: the bench would use it, nothing is missing")
    monkeypatch.setattr(ingest, "SURICATA_DIR", tmp_path / "no-suricata")
    assert ingest.main(["--packets", "2000", "--peers", "tshark,suricata"]) == 0
    out = capsys.readouterr().out
    assert ("skipped suricata: not installed; install it for the bench with "
            "`sudo bash bench/install_peers.sh suricata`\n") in out
    assert "Traceback" not in out
    # the generator's 2,000-packet capture: 68 TLS connections, 34 DNS exchanges
    assert "routerwatch store: 102 flows, 68 TLS handshakes" in out
    for label in ("routerwatch ingest, new store", "routerwatch ingest, existing store", "tshark -T fields"):
        assert re.search(rf"^{re.escape(label)}.* \d+\.\d\d +\d+\.\d\d .* -?\d+$", out, re.M), label
    assert re.search(r"^ratio vs tshark, +new store +wall \d+\.\d\dx +cpu \d+\.\d\dx", out, re.M)
    assert re.search(r"^own peak RSS, ingest \(new store\) / tshark: -?\d+ / -?\d+ MB", out, re.M)
    assert "ratio vs suricata" not in out


def test_unknown_peer_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        ingest.main(["--peers", "tshark,zeek"])
    assert e.value.code == 2
    assert "unknown peer(s) zeek" in capsys.readouterr().err
