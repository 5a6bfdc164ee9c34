"""Ledger cost: appending v2 entries (every stored column of each exchange, its tool calls) and verifying
them, against the v1 chain (raw digests only) over the same rows as the peer in the same run.

    .venv/bin/python bench/ledger.py [--exchanges 100000] [--repeat 3]

Prints CPU seconds (best of --repeat), microseconds per exchange and the v2/v1 ratio.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

# run as `python bench/ledger.py`: the repo root first (for tests.support), this folder out of the way
HERE = Path(__file__).resolve().parent
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

from analyzer import ledger  # noqa: E402
from collector.store import Store  # noqa: E402
from tests.support.sample_data import seed  # noqa: E402


def v1_append(con) -> str:
    """The peer: what a v1 entry covers (exchange id, host, time, router, raw digests), chained."""
    prev = ledger.GENESIS
    rows = con.execute(
        f"SELECT exchange_id, host_id, {ledger.TS_SQL.format(col='ts')}, coalesce(router, host), request_digest, "
        "response_digest FROM new_llm_exchanges ORDER BY ts, exchange_id").fetchall()
    for i, (ex, host, ts, router, rq, rs) in enumerate(rows, start=1):
        prev = ledger.entry_hash(prev, i, ex, host, ts, router, rq, rs)
    return prev


def best(fn, repeat: int) -> tuple[float, float]:
    cpu = wall = float("inf")
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - t), min(cpu, time.process_time() - c)
    return cpu, wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exchanges", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d, Store.open(str(Path(d) / "store")) as s:
        counts = seed(s, flows=1000, exchanges=a.exchanges, hosts=3).counts
        con = s.con
        con.execute("CREATE TEMP TABLE new_llm_exchanges AS SELECT * FROM llm_exchanges")
        con.execute("CREATE TEMP TABLE new_tool_calls AS SELECT * FROM tool_calls")
        n = counts["llm_exchanges"]
        print(f"{n:,} exchanges, {counts['tool_calls']:,} tool calls")
        now = dt.datetime(2026, 1, 1)
        peer = best(lambda: v1_append(con), a.repeat)
        append = best(lambda: ledger.append(con, now, {}), a.repeat)
        entries, _, _ = ledger.append(con, now, {})
        con.execute("BEGIN")
        from analyzer.engine import insert

        insert(con, "ledger", entries)
        check = best(lambda: ledger.verify(con), a.repeat)
        con.execute("ROLLBACK")
        for name, (cpu, wall) in (("v1 chain (peer)", peer), ("v2 append", append), ("v2 verify", check)):
            print(f"{name:16s} CPU {cpu:6.2f} s ({cpu / n * 1e6:5.0f} us/exchange), wall {wall:6.2f} s")
        print(f"v2 append / v1 chain: {append[0] / peer[0]:.1f}x CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
