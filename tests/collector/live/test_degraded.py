"""Without eBPF the collector says so at start and still records connections from /proc/net."""

from __future__ import annotations

import socket
import time

from collector.store import Store


def test_no_ebpf_degrades_to_procnet_polling_and_says_so(live):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    c = live("--no-ebpf", "--no-capture", "--interval", "1")
    assert "DEGRADED" in c.banner and "mode=procnet" in c.banner
    cli = socket.create_connection(("127.0.0.1", port))
    a, _ = srv.accept()
    time.sleep(2.5)  # longer than the poll period: the connection is seen while open
    cli.close()
    a.close()
    srv.close()
    time.sleep(1.5)
    assert c.stop() == 0, c.output()
    with Store.open(str(c.store), read_only=True) as s:
        rows = s.sql("SELECT source, direction FROM flows WHERE dst_port = ? ORDER BY direction", [port]).fetchall()
        mode = s.sql("SELECT DISTINCT mode FROM collector_stats").fetchall()
    assert ("procnet", "outbound") in rows, rows
    assert mode == [("procnet",)]
