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


# a stand-in for an unpacked Suricata 7 (ROUTERWATCH_BENCH_SURICATA_DIR/usr/bin/suricata): it answers
# -V, and for a run writes the events the real one writes for the generator's 2,000-packet capture
# (102 flows, 68 TLS), naming the server only when its YAML asks for extended TLS records
FAKE_SURICATA = """#!{python}
import json, sys
from pathlib import Path
if "-V" in sys.argv:
    print("This is Suricata version 7.0.10 RELEASE")
    sys.exit(0)
conf = Path(sys.argv[sys.argv.index("-c") + 1]).read_text()
log = Path(sys.argv[sys.argv.index("-l") + 1])
tls = {{"sni": "api.example.com", "version": "TLS 1.3"}} if "- tls:\\n            extended: yes" in conf else {{}}
events = [{{"event_type": "flow"}}] * 102 + [{{"event_type": "tls", "tls": tls}}] * 68
(log / "eve.json").write_text("".join(json.dumps(e) + "\\n" for e in events))
"""


def test_suricata_is_checked_for_the_same_flows_tls_and_server_names(tmp_path):
    """The Suricata peer's events are checked against the store: flows, TLS events, and TLS events that
    name the server (its extended TLS record: the basic one is an empty object)."""
    exe = tmp_path / "suricata" / "usr" / "bin" / "suricata"
    exe.parent.mkdir(parents=True)
    exe.write_text(FAKE_SURICATA.format(python=sys.executable))
    exe.chmod(0o755)
    p = _bench("--packets", "2000", "--peers", "suricata", env={"ROUTERWATCH_BENCH_SURICATA_DIR": str(tmp_path / "suricata")})
    assert p.returncode == 0, p.stderr
    assert "routerwatch store: 102 flows, 68 TLS handshakes, 68 with SNI" in p.stdout
    assert "suricata: 102 flows, 68 tls, 68 tls_sni  (same as routerwatch)" in p.stdout
    assert re.search(r"^ratio vs suricata, new store +wall \d+\.\d\dx +cpu \d+\.\d\dx +\(target 1x\)", p.stdout, re.M)
