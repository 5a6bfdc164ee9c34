"""Two processes: one ingests a large capture in committed batches while another runs
`routerwatch sql` in a loop. The reader never errors and its counts only grow."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from tests.conftest import BIN
from tests.support.gen_capture import generate

COUNT = "SELECT (SELECT count(*) FROM flows) + (SELECT count(*) FROM dns) + (SELECT count(*) FROM tls) AS n"


def test_reader_sees_counts_grow_while_ingest_writes(tmp_path: Path) -> None:
    cap = tmp_path / "big.pcap"
    info = generate(str(cap), packets=200_000, data=20)
    store = tmp_path / "store"
    # the store exists (empty) before the ingest starts, as it would next to a running collector
    subprocess.run([str(BIN / "python"), "-c", f"from collector.store import Store; Store.open({str(store)!r}).close()"],
                   check=True)
    writer = subprocess.Popen(
        [str(BIN / "routerwatch"), "ingest", "--store", str(store), "--batch-rows", "500", str(cap)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    seen: list[int] = []
    errors: list[str] = []
    deadline = time.monotonic() + 500
    while time.monotonic() < deadline:
        done = writer.poll() is not None
        p = subprocess.run([str(BIN / "routerwatch"), "sql", "--store", str(store), "--format", "json", COUNT],
                           capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            errors.append(p.stderr.strip())
        else:
            seen.append(json.loads(p.stdout)[0]["n"])
        if done:
            break
    out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    assert not errors, errors
    assert seen == sorted(seen), f"counts went down: {seen}"
    total = info["tcp_flows"] + info["udp_flows"] + info["udp_flows"] + info["tcp_flows"]  # flows, DNS, TLS
    assert seen[-1] == total
    assert seen[0] < total, "the reader never saw the store before the ingest finished"
    print(f"reader saw {len(seen)} counts, {len(set(seen))} distinct: {seen}")
