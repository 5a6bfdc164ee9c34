"""Load: at least 50k short loopback connections; collector_stats accounts for every one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from collector.store import Store
from tests.collector.live.conftest import needs_ebpf

pytestmark = [pytest.mark.ebpf, needs_ebpf]
LOAD = Path(__file__).with_name("load.py")
N = int(os.environ.get("ROUTERWATCH_LOAD_CONNECTIONS", "50000"))


def test_every_connection_is_recorded_or_counted_lost(live):
    server = subprocess.Popen([sys.executable, str(LOAD), "serve"], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        c = live("--no-capture", "--no-ssl", "--interval", "2", "--max-delay", "2")
        out = subprocess.run([sys.executable, str(LOAD), "storm", str(port), str(N)], capture_output=True,
                             text=True, check=True, timeout=600)
        secs = float(out.stdout)
        assert c.stop() == 0, c.output()
    finally:
        server.kill()
        server.wait()
    with Store.open(str(c.store), read_only=True) as s:
        mine = s.sql("SELECT count(*), count(DISTINCT flow_uid), count(pid) FROM flows WHERE dst_port = ? "
                     "AND direction = 'outbound'", [port]).fetchone()
        detail = json.loads(s.sql("SELECT detail FROM collector_stats ORDER BY ts DESC LIMIT 1").fetchone()[0])
        total_flows = s.sql("SELECT count(*) FROM flows").fetchone()[0]
    generated = detail["kernel_conn_seen"]
    recorded = detail["conn_recorded"]
    lost = detail["kernel_conn_lost"]
    print(f"{N} connections in {secs:.1f}s ({N / secs:.0f}/s); kernel saw {generated} sockets, "
          f"recorded {recorded}, lost {lost}, unconnected {detail['kernel_conn_unconnected']}")
    assert recorded + lost + detail["kernel_conn_unconnected"] == generated
    assert recorded == total_flows
    assert lost == 0
    assert mine == (N, N, N)
