"""Per-exchange accounting: every exchange and flow a finding accounts for, recorded append-only.

A rule's evidence rows are deduplicated into findings (one per dedup key within the rule's
suppression window), so a finding raised by the first of two substituted exchanges used to name
only that one. Every evidence row now becomes a `finding_coverage` row tying its exchange / flow
to the finding it belongs to (the one raised now, or the earlier finding with the same key): as
coverage grows, rows are added; a stored finding is never edited. A rule may also return
`exchange_ids` / `flow_uids` lists when one evidence row stands for several.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from typing import Any

import duckdb
import pyarrow as pa

from analyzer.rules import Rule


def coverage_rows(con: duckdb.DuckDBPyConnection, candidates: list[tuple[Rule, list[dict]]],
                  findings: list[dict], run_id: str) -> list[dict]:
    """finding_coverage rows for this run's evidence rows (`candidates`, before dedup) given the
    findings raised from them; rows already recorded are not repeated (runs stay idempotent)."""
    if not candidates:
        return []
    keys = sorted({f"{rule.id}:{r['dedup']}" for rule, rows in candidates for r in rows})
    by_key: dict[str, list[tuple[dt.datetime, str]]] = defaultdict(list)
    con.register("__rw_cov_keys", pa.table({"dedup_key": pa.array(keys, pa.string())}))
    try:
        for key, fid, ts in con.execute(
            "SELECT f.dedup_key, f.finding_id, f.ts FROM findings f JOIN __rw_cov_keys k USING (dedup_key)"
        ).fetchall():
            by_key[key].append((ts or dt.datetime.min, fid))
    finally:
        con.unregister("__rw_cov_keys")
    new_ids = {f["finding_id"] for f in findings}
    for f in findings:
        by_key[f["dedup_key"]].append((f["ts"] or dt.datetime.min, f["finding_id"]))
    for v in by_key.values():
        v.sort()
    raised = {(f["finding_id"], f["exchange_id"], f["flow_uid"]) for f in findings}
    out: list[dict] = []
    for rule, rows in candidates:
        for r in rows:
            key = f"{rule.id}:{r['dedup']}"
            owners = by_key.get(key)
            if not owners:
                continue
            # the finding in force at this row's time: the latest raised at or before it, else the first
            ts = r.get("ts") or dt.datetime.min
            i = bisect.bisect_right([t for t, _ in owners], ts) - 1
            fid = owners[max(i, 0)][1]
            for ex, flow in _ids(r):
                out.append({
                    "ts": r.get("ts"), "host_id": r.get("host_id"), "finding_id": fid, "rule_id": rule.id,
                    "dedup_key": key, "exchange_id": ex, "flow_uid": flow, "pid": r.get("pid"), "run_id": run_id,
                    "raised": fid in new_ids and (fid, ex, flow) in raised,
                })
    return _new_only(con, out)


def _ids(r: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    pairs = [(r.get("exchange_id"), r.get("flow_uid"))]
    for ex in r.get("exchange_ids") or []:
        pairs.append((ex, None))
    for fl in r.get("flow_uids") or []:
        pairs.append((None, fl))
    return [p for p in dict.fromkeys(pairs) if p != (None, None)]


def _new_only(con: duckdb.DuckDBPyConnection, rows: list[dict]) -> list[dict]:
    """Drop (finding, exchange, flow) triples already stored or repeated in `rows`."""
    if not rows:
        return []
    fids = sorted({r["finding_id"] for r in rows})
    con.register("__rw_cov_fids", pa.table({"finding_id": pa.array(fids, pa.string())}))
    try:
        seen = {tuple(t) for t in con.execute(
            "SELECT c.finding_id, c.exchange_id, c.flow_uid FROM finding_coverage c JOIN __rw_cov_fids f USING (finding_id)"
        ).fetchall()}
    finally:
        con.unregister("__rw_cov_fids")
    out = []
    for r in rows:
        k = (r["finding_id"], r["exchange_id"], r["flow_uid"])
        if k in seen:
            continue
        seen.add(k)
        out.append(r)
    return out
