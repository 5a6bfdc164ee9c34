"""Store workloads run as separate processes (what the collector, an analyzer and a reader do to one
store at once): `python -m tests.support.store_load KIND STORE SECONDS`, one JSON line of results.

- `long`: write transactions that read, hold for `--hold` seconds, then insert 500 rows (an analyzer)
- `batches`: BatchWriter flushes of `--rows` rows, back to back (an ingest with --batch-rows 50)
- `reads`: a read-only connection counting rows every 0.1 s; latency of each read
Every error is counted, never raised, so the caller sees all of them.
"""

from __future__ import annotations

import argparse
import json
import time

from collector.store import BatchWriter, Store

TABLE = "dns"  # any declared table; rows carry the worker's tag in `query`


def _long(store: Store, seconds: float, hold: float, tag: str) -> dict:
    out = {"ok": 0, "failed": 0, "errors": [], "rows": 0}
    end = time.monotonic() + seconds
    k = 0
    while time.monotonic() < end:
        def body(con, k=k):
            con.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
            time.sleep(hold)
            con.execute(f"INSERT INTO {TABLE} (query, trans_id) SELECT '{tag}', {k} FROM range(500)")
        try:
            store.write(body, what="long test write", rows=500)
            out["ok"] += 1
            out["rows"] += 500
        except Exception as exc:
            out["failed"] += 1
            out["errors"].append(str(exc).splitlines()[0][:300])
        k += 1
    return out


def _batches(store: Store, seconds: float, rows: int, tag: str) -> dict:
    out = {"ok": 0, "failed": 0, "errors": [], "rows": 0}
    end = time.monotonic() + seconds
    w = BatchWriter(store, max_rows=10**9, max_delay=3600)
    k = 0
    while time.monotonic() < end:
        w.add(TABLE, [{"query": tag, "trans_id": k} for _ in range(rows)])
        try:
            out["rows"] += w.flush()
            out["ok"] += 1
        except Exception as exc:
            out["failed"] += 1
            out["errors"].append(str(exc).splitlines()[0][:300])
        k += 1
    try:
        out["rows"] += w.flush()
    except Exception as exc:
        out["failed"] += 1
        out["errors"].append(str(exc).splitlines()[0][:300])
    return out


def _reads(spec: str, seconds: float) -> dict:
    out = {"ok": 0, "failed": 0, "errors": [], "latency": [], "counts": []}
    end = time.monotonic() + seconds
    with Store.open(spec, read_only=True) as store:
        while time.monotonic() < end:
            t0 = time.monotonic()
            try:
                out["counts"].append(store.sql(f"SELECT count(*) FROM {TABLE}").fetchone()[0])
                out["ok"] += 1
            except Exception as exc:
                out["failed"] += 1
                out["errors"].append(str(exc).splitlines()[0][:300])
            out["latency"].append(round(time.monotonic() - t0, 4))
            time.sleep(0.1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["long", "batches", "reads"])
    ap.add_argument("store")
    ap.add_argument("seconds", type=float)
    ap.add_argument("--hold", type=float, default=1.0)
    ap.add_argument("--rows", type=int, default=50)
    ap.add_argument("--tag", default="load")
    a = ap.parse_args()
    if a.kind == "reads":
        res = _reads(a.store, a.seconds)
    else:
        with Store.open(a.store) as store:
            res = (_long(store, a.seconds, a.hold, a.tag) if a.kind == "long"
                   else _batches(store, a.seconds, a.rows, a.tag))
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
