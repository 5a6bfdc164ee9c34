"""Append-only hash chain over LLM exchanges: what was asked of which router, and what came back.

Entry n commits to entry n-1: hash_n = sha256(json([prev_hash, seq, exchange_id, host_id,
exchange_ts, router, request_digest, response_digest])). `verify()` recomputes the chain and
cross-checks it against `llm_exchanges` and against the head every analyze run recorded, so a
modified entry, a deleted or reordered entry, a truncated tail, or a changed/deleted exchange all
show. A chain anyone can recompute is only as good as its anchors: the head printed by
`routerwatch ledger verify` and sent in EVE `ledger` events belongs somewhere outside the store.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa

GENESIS = "0" * 64


TS_SQL = "strftime({col}, '%Y-%m-%dT%H:%M:%S.%f')"  # the timestamp as hashed: fixed width, microseconds


def entry_hash(prev: str, seq: int, exchange_id: str | None, host_id: str | None, exchange_ts: str | None,
               router: str | None, request_digest: str | None, response_digest: str | None) -> str:
    """`exchange_ts` is the text of TS_SQL (so Python and SQL agree on its form)."""
    payload = json.dumps([prev, int(seq), exchange_id, host_id, exchange_ts, router, request_digest, response_digest],
                         separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def head(con: duckdb.DuckDBPyConnection) -> tuple[int, str]:
    row = con.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
    return (int(row[0]), row[1]) if row else (0, GENESIS)


def append(con: duckdb.DuckDBPyConnection, now: dt.datetime, routers: dict[str, str | None]) -> tuple[pa.Table, int, str]:
    """Ledger rows (an Arrow table) for the exchanges in `new_llm_exchanges`, ordered by time then id;
    `routers` maps exchange ids to the router the classifier named."""
    seq0, prev = head(con)
    t = con.execute(
        f"SELECT exchange_id, host_id, ts AS exchange_ts, {TS_SQL.format(col='ts')} AS ts_text, router, host, "
        "request_digest, response_digest FROM new_llm_exchanges ORDER BY ts, exchange_id"
    ).to_arrow_table()
    exs, hosts, tss = t["exchange_id"].to_pylist(), t["host_id"].to_pylist(), t["ts_text"].to_pylist()
    own, host = t["router"].to_pylist(), t["host"].to_pylist()
    rqs, rss = t["request_digest"].to_pylist(), t["response_digest"].to_pylist()
    n = len(exs)
    router_col: list[str | None] = [None] * n
    prevs: list[str] = [""] * n
    hashes: list[str] = [""] * n
    for i in range(n):
        router = routers.get(exs[i]) or own[i] or host[i]
        h = entry_hash(prev, seq0 + i + 1, exs[i], hosts[i], tss[i], router, rqs[i], rss[i])
        router_col[i], prevs[i], hashes[i] = router, prev, h
        prev = h
    out = pa.table({
        "seq": pa.array(np.arange(seq0 + 1, seq0 + n + 1, dtype=np.int64)),
        "ts": pa.array(np.full(n, np.datetime64(now, "us"))),
        "host_id": t["host_id"], "exchange_id": t["exchange_id"], "exchange_ts": t["exchange_ts"],
        "router": pa.array(router_col, pa.string()), "request_digest": t["request_digest"],
        "response_digest": t["response_digest"], "prev_hash": pa.array(prevs, pa.string()),
        "hash": pa.array(hashes, pa.string()),
    })
    return out, seq0 + n, prev


@dataclass
class Verification:
    entries: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(con: duckdb.DuckDBPyConnection, expected_head: str | None = None, max_problems: int = 50) -> Verification:
    """Recompute the chain; compare with the exchanges, the recorded run heads and `expected_head`."""
    v = Verification()

    def problem(msg: str) -> None:
        if len(v.problems) < max_problems:
            v.problems.append(msg)

    rows = con.execute(
        f"SELECT seq, exchange_id, host_id, {TS_SQL.format(col='exchange_ts')}, router, request_digest, response_digest, "
        "prev_hash, hash FROM ledger ORDER BY rowid"
    ).fetchall()
    prev = GENESIS
    expected_seq = 1
    hashes: dict[int, str] = {}
    for seq, ex, host_id, ts, router, rq, rs, prev_hash, h in rows:
        v.entries += 1
        if seq != expected_seq:
            if seq is not None and seq > expected_seq:
                problem(f"entries {expected_seq}..{seq - 1} are missing (deleted)")
            else:
                problem(f"entry {seq} is out of order (expected {expected_seq}): reordered or duplicated")
        if prev_hash != prev:
            problem(f"entry {seq}: prev_hash does not match the previous entry (deleted or reordered entries)")
        calc = entry_hash(prev_hash or "", seq or 0, ex, host_id, ts, router, rq, rs)
        if calc != h:
            problem(f"entry {seq} (exchange {ex}): contents were modified (hash mismatch)")
        hashes[seq] = h
        prev = h
        expected_seq = (seq or expected_seq) + 1
    if rows:
        v.head_seq, v.head_hash = int(rows[-1][0] or 0), rows[-1][8]
    # the exchanges the entries commit to
    for ex, seq, why in con.execute(
        """
        SELECT l.exchange_id, l.seq,
               CASE WHEN e.exchange_id IS NULL THEN 'missing'
                    WHEN e.request_digest IS DISTINCT FROM l.request_digest
                      OR e.response_digest IS DISTINCT FROM l.response_digest
                      OR e.ts IS DISTINCT FROM l.exchange_ts THEN 'changed' END AS why
        FROM ledger l
        LEFT JOIN (SELECT exchange_id, any_value(request_digest) AS request_digest,
                          any_value(response_digest) AS response_digest, any_value(ts) AS ts
                   FROM llm_exchanges GROUP BY exchange_id) e USING (exchange_id)
        WHERE e.exchange_id IS NULL OR e.request_digest IS DISTINCT FROM l.request_digest
           OR e.response_digest IS DISTINCT FROM l.response_digest OR e.ts IS DISTINCT FROM l.exchange_ts
        ORDER BY l.seq LIMIT 1000
        """
    ).fetchall():
        problem(f"entry {seq}: exchange {ex} was {'deleted from llm_exchanges' if why == 'missing' else 'modified in llm_exchanges'}")
    # the heads every analyze run recorded
    for run_id, seq, h in con.execute(
        "SELECT run_id, ledger_seq, ledger_head FROM analyzer_runs WHERE ledger_seq > 0 ORDER BY ts"
    ).fetchall():
        if seq > v.head_seq:
            problem(f"run {run_id} recorded entry {seq}, but the ledger ends at {v.head_seq} (tail deleted)")
        elif hashes.get(seq) != h:
            problem(f"run {run_id} recorded head {h[:16]}… at entry {seq}; the chain now has {str(hashes.get(seq))[:16]}…")
    if expected_head and expected_head not in (v.head_hash, *hashes.values()):
        problem(f"the anchored head {expected_head[:16]}… is not in the chain")
    return v
