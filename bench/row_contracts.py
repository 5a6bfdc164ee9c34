"""Row-contract cost: checking a batch of flow rows against the table's declaration
(collector.store.schema.conform, what every writer's `add` runs) against the conversion the writer did
before the contracts (pyarrow's from_pylist with the schema, or a cast per column), as the peer in the
same run. Both the dict path (rows built one by one: proxy sink, analyzer) and the Arrow path (bulk
tables: ingest, the live collector) are timed.

    .venv/bin/python bench/row_contracts.py [--rows 10000] [--repeat 7]

Prints CPU microseconds per batch (best of --repeat) for each path, before and after, and the ratio.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable
from pathlib import Path

# run as `python bench/row_contracts.py`: the repo root first, this folder out of the way
HERE = Path(__file__).resolve().parent
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

import pyarrow as pa  # noqa: E402

from collector.store.schema import arrow_schema, conform  # noqa: E402

T0 = dt.datetime(2026, 3, 1)


def flow_rows(n: int) -> list[dict]:
    """Flow rows as the proxy sink builds them (the widest dict builder of the product)."""
    return [{
        "flow_uid": f"F{i:08x}", "community_id": "1:abcdefghijklmnopqrstuvwxyz0=", "host_id": "bench",
        "ts_start": T0 + dt.timedelta(microseconds=i), "ts_end": T0 + dt.timedelta(seconds=1, microseconds=i),
        "proto": "tcp", "src_ip": "10.0.0.1", "src_port": 40000 + i % 20000, "dst_ip": "192.0.2.7", "dst_port": 443,
        "bytes_out": 1000 + i, "bytes_in": 20000 + i, "server_name": "api.example", "pid": 4242,
        "process_start": 1.5, "source": "proxy", "proxy_leg": "agent", "proxy_scheme": "https",
    } for i in range(n)]


def before(table: str, rows: list[dict] | pa.Table) -> pa.Table:
    """The writer's conversion before row contracts (main before this change): no checks."""
    schema = arrow_schema(table)
    if isinstance(rows, pa.Table):
        cols = [rows.column(f.name).cast(f.type) if f.name in rows.column_names else pa.nulls(rows.num_rows, f.type)
                for f in schema]
        return pa.Table.from_arrays(cols, schema=schema)
    return pa.Table.from_pylist(list(rows), schema=schema)


def best_cpu_us(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000, help="flow rows per batch (default 10000)")
    ap.add_argument("--repeat", type=int, default=7, help="runs per measurement; the best is kept (default 7)")
    args = ap.parse_args()
    rows = flow_rows(args.rows)
    # the bulk path's input: what a collector builds (narrower Arrow types, cast by the writer)
    arrow = pa.Table.from_pylist(rows).set_column(
        pa.Table.from_pylist(rows).column_names.index("src_port"), "src_port",
        pa.array([r["src_port"] for r in rows], pa.int64()))
    assert before("flows", rows).equals(conform("flows", rows))
    assert before("flows", arrow).equals(conform("flows", arrow))
    print(f"{args.rows} flow rows per batch, CPU microseconds per batch (best of {args.repeat})")
    for name, data in (("dict rows", rows), ("arrow table", arrow)):
        b = best_cpu_us(lambda d=data: before("flows", d), args.repeat)
        a = best_cpu_us(lambda d=data: conform("flows", d), args.repeat)
        print(f"  {name:12s} before {b:10.0f}  contract {a:10.0f}  ratio {a / b:5.2f}  "
              f"(+{a - b:.0f} us per batch, {(a - b) / args.rows:.2f} us per row)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
