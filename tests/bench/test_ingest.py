"""`bench/ingest.py` on a small generated capture: the peers that are there are timed against ingest in
the same run, a peer that is missing is skipped in one line naming the command that installs it (CI has
tshark but neither Suricata nor nfstream: bench/install_peers.sh installs those for the bench only)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _bench(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "bench/ingest.py"), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


def test_tshark_timed_and_missing_suricata_skipped(tmp_path):
    if shutil.which("suricata"):
        pytest.skip("a system-wide suricata is on PATH: the bench would use it, nothing is missing")
    p = _bench("--packets", "2000", "--peers", "tshark,suricata",
               env={"ROUTERWATCH_BENCH_SURICATA_DIR": str(tmp_path / "no-suricata")})
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert ("skipped suricata: not installed; install it for the bench with "
            "`sudo bash bench/install_peers.sh suricata`\n") in out
    assert "Traceback" not in out + p.stderr
    # the generator's 2,000-packet capture: 68 TLS connections, 34 DNS exchanges
    assert "routerwatch store: 102 flows, 68 TLS handshakes" in out
    for label in ("routerwatch ingest, new store", "routerwatch ingest, existing store", "tshark -T fields"):
        assert re.search(rf"^{re.escape(label)}.* \d+\.\d\d +\d+\.\d\d .* -?\d+$", out, re.M), label
    assert re.search(r"^ratio vs tshark, +new store +wall \d+\.\d\dx +cpu \d+\.\d\dx", out, re.M)
    assert re.search(r"^own peak RSS, ingest \(new store\) / tshark: -?\d+ / -?\d+ MB", out, re.M)
    assert "ratio vs suricata" not in out


def test_unknown_peer_is_a_usage_error():
    p = _bench("--peers", "tshark,zeek")
    assert p.returncode == 2
    assert "unknown peer(s) zeek" in p.stderr and "Traceback" not in p.stderr
