"""Per-router behaviour baseline across runs and hosts (table `router_baseline`, append-only).

For every router with new exchanges, a run appends one snapshot: the previous snapshot merged with
this run's exchanges (counts added, lists unioned, latency mean/variance combined), so the cost of a
run does not grow with the history. What it tracks is what a conditional-delivery router (AC-1.b)
changes when it turns: the tool-call indicators its responses carry (clean vs execution-strength),
its response fingerprint (router headers, server, software), the model families it returns for the
families requested, and its latency. The conditional-injection rule compares the turn against the
router's earlier exchanges; the Routers page shows the latest snapshot.

An exchange is counted when its llm_exchanges row is new. Tool calls that arrive in a later run than
their exchange add their indicator kinds and execution count then (the exchange was already counted
clean: the clean count is not corrected). A run reads only its own rows (the exchanges it refers to,
read once by the engine as `run_llm_exchanges` / `run_exchange_classes`, and what its enrichment
found), never the history.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable

import duckdb
import pyarrow as pa

LIST_CAP = 64  # entries kept per list (hosts, fingerprints, families, kinds)

Insert = Callable[[str, list[dict]], int]


def update_baselines(con: duckdb.DuckDBPyConnection, run_id: str, now: dt.datetime, insert: Insert,
                     suspicious: dict[tuple[str, int], int] | None = None,
                     kinds: dict[str, set[str]] | None = None) -> int:
    """Append one router_baseline snapshot per router touched by this run's new exchanges or tool calls.
    `suspicious` and `kinds` are what the run's tool-call enrichment found (execution-strength signals
    per tool call, indicator kinds per exchange): the lake's indicator tables are not read back."""
    bad = sorted({ex for (ex, _idx), n in (suspicious or {}).items() if n})
    kind_rows = [(ex, sorted(k)) for ex, k in (kinds or {}).items()]
    con.register("__rw_bl_bad", pa.table({"exchange_id": pa.array(bad, pa.string())}))
    con.register("__rw_bl_kinds", pa.table({"exchange_id": pa.array([k for k, _ in kind_rows], pa.string()),
                                             "kinds": pa.array([v for _, v in kind_rows], pa.list_(pa.string()))}))
    try:
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE _rw_bl AS
            WITH ids AS (SELECT exchange_id FROM new_llm_exchanges UNION SELECT exchange_id FROM new_tool_calls)
            SELECT ec.router, e.exchange_id, e.ts, e.host_id, e.latency_ms, coalesce(e.tool_call_count, 0) AS tool_calls,
                   ec.fingerprint, ec.family_requested, ec.family_returned, b.exchange_id IS NOT NULL AS bad,
                   coalesce(k.kinds, []) AS kinds, e.exchange_id IN (SELECT exchange_id FROM new_llm_exchanges) AS is_new
            FROM (SELECT * FROM run_exchange_classes WHERE exchange_id IN (SELECT exchange_id FROM ids)) ec
            JOIN (SELECT * FROM run_llm_exchanges WHERE exchange_id IN (SELECT exchange_id FROM ids)) e USING (exchange_id)
            LEFT JOIN __rw_bl_bad b USING (exchange_id)
            LEFT JOIN __rw_bl_kinds k USING (exchange_id)
            WHERE ec.router IS NOT NULL
            """
        )
    finally:
        con.unregister("__rw_bl_bad")
        con.unregister("__rw_bl_kinds")
    agg = con.execute(
        """
        SELECT router, min(ts) FILTER (WHERE is_new), max(ts) FILTER (WHERE is_new),
               count(*) FILTER (WHERE is_new), count(*) FILTER (WHERE is_new AND tool_calls > 0),
               count(*) FILTER (WHERE is_new AND NOT bad), count(*) FILTER (WHERE bad),
               min(ts) FILTER (WHERE bad),
               list(DISTINCT host_id) FILTER (WHERE host_id IS NOT NULL),
               list_distinct(flatten(list(kinds))),
               list(DISTINCT coalesce(family_requested, '?') || '->' || coalesce(family_returned, '?'))
                   FILTER (WHERE is_new AND (family_requested IS NOT NULL OR family_returned IS NOT NULL)),
               list(DISTINCT fingerprint) FILTER (WHERE is_new AND fingerprint IS NOT NULL),
               count(latency_ms) FILTER (WHERE is_new), avg(latency_ms) FILTER (WHERE is_new),
               coalesce(var_pop(latency_ms) FILTER (WHERE is_new), 0) * count(latency_ms) FILTER (WHERE is_new),
               max(latency_ms) FILTER (WHERE is_new)
        FROM _rw_bl GROUP BY router
        """
    ).fetchall()
    if not agg:
        return 0
    routers = [a[0] for a in agg]
    prev = {r[0]: r for r in con.execute(
        """
        SELECT router, first_seen, last_seen, exchanges, tool_call_exchanges, clean_exchanges, execution_exchanges,
               first_execution_ts, hosts, indicator_kinds, families, fingerprints, latency_n, latency_mean_ms,
               latency_m2, latency_max_ms
        FROM router_baseline WHERE router IN (SELECT unnest(?))
        QUALIFY row_number() OVER (PARTITION BY router ORDER BY ts DESC, exchanges DESC) = 1
        """, [routers]).fetchall()}
    rows = []
    for (router, first, last, n, ntc, clean, nbad, first_bad, hosts, kinds, fams, fps, ln, lmean, lm2, lmax) in agg:
        p = prev.get(router)
        if p is not None:
            first = _min(p[1], first)
            last = _max(p[2], last)
            n, ntc, clean, nbad = n + (p[3] or 0), ntc + (p[4] or 0), clean + (p[5] or 0), nbad + (p[6] or 0)
            first_bad = _min(p[7], first_bad)
            hosts, kinds, fams, fps = (_union(p[8], hosts), _union(p[9], kinds), _union(p[10], fams), _union(p[11], fps))
            ln, lmean, lm2 = _combine((p[12] or 0, p[13], p[14]), (ln or 0, lmean, lm2))
            lmax = _max(p[15], lmax)
        rows.append({
            "ts": now, "run_id": run_id, "router": router, "first_seen": first, "last_seen": last, "exchanges": n,
            "tool_call_exchanges": ntc, "clean_exchanges": clean, "execution_exchanges": nbad,
            "first_execution_ts": first_bad, "hosts": _cap(hosts), "indicator_kinds": _cap(kinds),
            "families": _cap(fams), "fingerprints": _cap(fps), "latency_n": ln, "latency_mean_ms": lmean,
            "latency_m2": lm2, "latency_max_ms": lmax,
        })
    return insert("router_baseline", rows)


def latency_std(m2: float | None, n: int | None) -> float | None:
    return math.sqrt(m2 / n) if m2 is not None and n else None


def _combine(a: tuple, b: tuple) -> tuple[int, float | None, float | None]:
    """Chan et al.'s pairwise combination of (count, mean, sum of squared deviations)."""
    na, ma, sa = a
    nb, mb, sb = b
    if not na:
        return nb, mb, sb
    if not nb:
        return na, ma, sa
    n = na + nb
    delta = mb - ma
    return n, ma + delta * nb / n, (sa or 0) + (sb or 0) + delta * delta * na * nb / n


def _union(a: list | None, b: list | None) -> list:
    return list(dict.fromkeys([*(a or []), *(b or [])]))


def _cap(v: list | None) -> list:
    return list(v or [])[:LIST_CAP]  # the first seen are kept: they are the baseline


def _min(a, b):  # noqa: ANN001, ANN202
    return b if a is None else a if b is None else min(a, b)


def _max(a, b):  # noqa: ANN001, ANN202
    return b if a is None else a if b is None else max(a, b)
