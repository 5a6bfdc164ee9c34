"""CI variant of `bench/soak.py` (2.5 minutes): the main job (`up`) under ~100 loopback connections/s
with a wrapped agent meeting an injecting router, manual analyze, ingest, sql, dashboard pages, canary
and compaction all at once on one store. No command fails, every injected exchange becomes a finding,
rows generated equal rows stored, nothing is lost.

Latencies depend on the machine's load (2 cores shared by several people while this runs): the test
prints them with the load average and, per exchange, when the analyzer run that covered it started and
how long it took. Five exchanges in 2.5 minutes give a median, not a p99: the test holds the median
finding latency to the 10 s target and the slowest to 15 s while the load stays at or below 8 (4
runnable tasks per core), both x load/8 above that. The worst of five is the one exchange whose run
met another CPU burst (an ingest, a page load): on 2026-12-07 it passed 10 s in 5 of 12 runs (10.3-14.3
s) whose medians were 2.8-11.0 s. The p99 target belongs to the 10-minute `bench/soak.py` (docs/performance.md).
`routerwatch sql` is held to its peer, the same command on an idle store run right after it (median
difference under 1 s, none over 10 s x load/8). tests/collector/store/test_lockup.py holds reads to 2 s
directly."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.collector.live.conftest import needs_ebpf
from tests.conftest import REPO

pytestmark = [pytest.mark.ebpf, pytest.mark.slow, needs_ebpf]
MINUTES = os.environ.get("ROUTERWATCH_SOAK_MINUTES", "2.5")


def test_soak_ci(tmp_path):
    out = tmp_path / "soak.json"
    p = subprocess.run([sys.executable, str(REPO / "bench/soak.py"), "--minutes", MINUTES, "--json", str(out),
                        "--workdir", str(tmp_path / "work"), "--ingest-every", "40", "--page-every", "20"],
                       cwd=REPO, capture_output=True, text=True, timeout=1200)
    print(p.stdout[-6000:])
    assert out.exists(), p.stderr[-4000:]
    r = json.loads(out.read_text())
    acc = r["accept"]
    assert acc["0 failed commands"], {k: v for k, v in r["commands"].items() if v["failed"]}
    assert acc["every injected exchange has its finding"], r["rows"]
    assert acc["rows exact"], r["rows"]
    assert r["collector_lost_events"] == 0 and r["tracebacks_in_up_log"] == 0 and r["up_exit"] == 0
    kinds = r["commands"]
    for kind in ("agent (wrapped)", "analyze (manual)", "sql", "ingest", "dashboard page", "canary new",
                 "store compact", "report", "ledger verify"):
        assert kinds.get(kind, {}).get("run", 0) >= 1, kind
    load = r["load_average"]["max_1min"]
    bound = 10.0 * max(1.0, load / 8)
    fl = r["finding_latency_s"]
    assert fl["n"] >= 3 and fl["p50"] <= bound and fl["max"] <= 1.5 * bound, (fl, load)
    # a read held up by the store would be slower than its idle-store peer run after run; at load 40
    # single pairs differ by +-4 s either way, so the median difference is what is held to 1 s
    extra = r["sql_minus_idle_s"]
    assert extra["p50"] < 1.0 and extra["max"] < 10.0 * max(1.0, load / 8), (extra, load)
    assert r["reader_query_s"]["errors"] == []
