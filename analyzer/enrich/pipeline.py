"""Run the enrichers over the rows new since the last analyze and write their tables.

Input rows come from the engine's `new_<table>` temp views; outputs are appended in the engine's
transaction. Python touches only what needs Python (tool-call text, headers, stream summaries, one
row per distinct destination); flows are classified by a join in DuckDB.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import pyarrow as pa

from analyzer.enrich.exchanges import (
    Classifier,
    dest_of,
    fingerprint,
    model_family,
    parse_headers,
    stream_anomalies,
)
from collector.catalog import Catalog
from collector.catalog.loader import router_label
from collector.toolcalls import analyze_tool_call, check_package, is_execution

Insert = Callable[[str, "list[dict] | pa.Table"], int]


def enrich_tool_calls(con: duckdb.DuckDBPyConnection, catalog: Catalog, insert: Insert,
                      kinds: dict[str, set[str]] | None = None) -> dict[tuple[str, int], int]:
    """Tool-call screening (collector.toolcalls) of new tool calls -> tool_call_indicators,
    tool_call_hosts, package_installs. Returns {(exchange_id, idx): execution-strength signals}
    (execution indicators and typosquat installs); fills `kinds` with each exchange's indicator kinds
    (run text only), so the baseline need not read them back from the lake."""
    rows = con.execute(
        """
        SELECT t.exchange_id, t.idx, coalesce(t.direction, 'response') AS direction,
               coalesce(t.ts, e.ts) AS ts, coalesce(t.host_id, e.host_id) AS host_id, t.name, t.arguments
        FROM new_tool_calls t LEFT JOIN llm_exchanges e USING (exchange_id)
        WHERE coalesce(t.direction, 'response') = 'response'
        """
    ).fetchall()
    max_d = int(catalog.setting("typosquat_max_distance", 2))
    ind_rows: list[dict] = []
    host_rows: list[dict] = []
    pkg_rows: list[dict] = []
    suspicious: dict[tuple[str, int], int] = {}
    for exchange_id, idx, direction, ts, host_id, name, arguments in rows:
        a = analyze_tool_call(name, arguments)
        base = {"ts": ts, "host_id": host_id, "exchange_id": exchange_id, "idx": idx, "direction": direction}
        for i in a.indicators:
            if kinds is not None and i.context == "command":
                kinds.setdefault(exchange_id, set()).add(i.kind)
            strong = is_execution(i, catalog.is_package_source, catalog.is_allowlisted)
            ind_rows.append({**base, "kind": i.kind, "detail": i.detail, "host": i.host, "context": i.context,
                             "execution": strong, "path": i.path})
            if strong:
                suspicious[(exchange_id, idx)] = suspicious.get((exchange_id, idx), 0) + 1
        for h in a.hosts:
            host_rows.append({**base, "host": h.host, "port": h.port, "url": h.url, "intent": h.intent,
                              "allowlisted": catalog.is_allowlisted(h.host, h.port)})
        for p in a.installs:
            v = check_package(p.manager, p.package, max_d)
            pkg_rows.append(
                {**base, "manager": p.manager, "package": p.package, "popular": v.popular, "nearest": v.nearest, "distance": v.distance}
            )
            if v.nearest is not None:
                suspicious[(exchange_id, idx)] = suspicious.get((exchange_id, idx), 0) + 1
    insert("tool_call_indicators", ind_rows)
    insert("tool_call_hosts", host_rows)
    insert("package_installs", pkg_rows)
    return suspicious


def enrich_exchanges(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, classifier: Classifier, insert: Insert,
    suspicious: dict[tuple[str, int], int],
) -> tuple[set[tuple[str, int | None]], dict[str, str | None]]:
    """Classify new exchanges, recognise router software, normalise model families, check streams.
    The destination is the Host header (the flow's SNI/IP when that is missing and the flow arrived in
    the same run). Returns the (dest, port) pairs newly seen as suspected routers, and each exchange's router."""
    rows = con.execute(
        """
        SELECT e.ts, e.host_id, e.exchange_id, e.flow_uid, e.api, e.host, e.path, e.model_requested,
               e.model_returned, e.router_headers, e.stream_events, f.server_name, f.dst_ip, f.dst_port
        FROM new_llm_exchanges e
        LEFT JOIN (SELECT flow_uid, any_value(server_name) AS server_name, any_value(dst_ip) AS dst_ip,
                          any_value(dst_port) AS dst_port
                   FROM new_flows WHERE flow_uid IN (SELECT flow_uid FROM new_llm_exchanges) GROUP BY flow_uid) f
          USING (flow_uid)
        """
    ).fetchall()
    aliases = catalog.model_aliases()
    sus_by_ex: dict[str, int] = {}
    for (ex, _idx), n in suspicious.items():
        sus_by_ex[ex] = sus_by_ex.get(ex, 0) + n
    out: list[dict] = []
    anomalies: list[dict] = []
    suspected: set[tuple[str, int | None]] = set()
    for (ts, host_id, ex, flow_uid, api, host, path, m_req, m_ret, rh, se, sni, dst_ip, dst_port) in rows:
        dest, port = dest_of(host)
        if dest is None:
            dest = (sni or dst_ip or "").lower() or None
        port = port or dst_port
        d = classifier.classify(dest, dst_ip, port)
        headers = parse_headers(rh)
        software = classifier.software(headers, path, port)
        cls, router = d.cls, d.name
        if cls == "other" and api:
            cls = "suspected_router"
            router = router_label(dest, port)
            if dest:
                suspected.add((dest, port))
        out.append(
            {
                "ts": ts, "host_id": host_id, "exchange_id": ex, "flow_uid": flow_uid, "dest": dest,
                "class": cls, "router": router, "provider": d.provider, "software": software or None,
                "dst_port": port, "brand": classifier.brand(dest),
                "family_requested": model_family(m_req, aliases), "family_returned": model_family(m_ret, aliases),
                "suspicious_tool_calls": sus_by_ex.get(ex, 0), "fingerprint": fingerprint(headers, software),
            }
        )
        for kind, detail in stream_anomalies(api, se):
            anomalies.append({"ts": ts, "host_id": host_id, "exchange_id": ex, "kind": kind, "detail": detail})
    insert("exchange_classes", out)
    insert("stream_anomalies", anomalies)
    return suspected, {r["exchange_id"]: r["router"] for r in out}


def classify_flows(
    con: duckdb.DuckDBPyConnection, classifier: Classifier,
    new_suspected: set[tuple[str, int | None]], first_run: bool = False,
) -> int:
    """Append a flow_classes row for every new flow (class per distinct destination, first-seen
    per host and destination); flows already classified 'other' whose destination turned out to
    serve LLM exchanges are upgraded to 'suspected_router'."""
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _rw_nf AS
        SELECT host_id, flow_uid, ts_start, dest, dst_ip, dst_port,
               coalesce(dest, '') || '|' || coalesce(dst_ip, '') || '|' || coalesce(dst_port, -1) AS k
        FROM (SELECT *, lower(coalesce(nullif(server_name, ''), dst_ip)) AS dest FROM new_flows)
        """
    )
    dests = con.execute("SELECT DISTINCT dest, dst_ip, dst_port FROM _rw_nf").fetchall()
    sus = set(
        con.execute("SELECT DISTINCT dest, dst_port FROM exchange_classes WHERE class = 'suspected_router'").fetchall()
    ) | new_suspected
    dc = {"dest": [], "dst_ip": [], "dst_port": [], "class": [], "router": []}
    for dest, ip, port in dests:
        c = classifier.classify(dest, ip, port)
        cls, router = c.cls, c.name
        if cls == "other" and ((dest, port) in sus or (ip, port) in sus):
            cls, router = "suspected_router", router_label(dest, port)
        dc["dest"].append(dest)
        dc["dst_ip"].append(ip)
        dc["dst_port"].append(port)
        dc["class"].append(cls)
        dc["router"].append(router)
    dc["k"] = [f"{d or ''}|{ip or ''}|{-1 if p is None else p}" for d, ip, p in zip(dc["dest"], dc["dst_ip"], dc["dst_port"], strict=True)]
    con.register("_rw_dc", pa.table(dc, schema=pa.schema([
        ("dest", pa.string()), ("dst_ip", pa.string()), ("dst_port", pa.int32()), ("class", pa.string()), ("router", pa.string()),
        ("k", pa.string()),
    ])))
    try:
        # first flow per (host, destination, port) that no earlier run has seen: a GROUP BY, not a window sort
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE _rw_first AS
            SELECT arg_min(nf.flow_uid, nf.ts_start) AS flow_uid
            FROM _rw_nf nf
            LEFT JOIN (SELECT DISTINCT coalesce(host_id, '') AS h, coalesce(dest, '') AS d, coalesce(dst_port, -1) AS p
                       FROM flow_classes) old
              ON old.h = coalesce(nf.host_id, '') AND old.d = coalesce(nf.dest, '') AND old.p = coalesce(nf.dst_port, -1)
            WHERE old.h IS NULL
            GROUP BY nf.host_id, nf.dest, nf.dst_port
            """
        )
        n = con.execute(
            """
            INSERT INTO flow_classes BY NAME
            SELECT nf.ts_start AS ts, nf.host_id, nf.flow_uid, nf.dest, nf.dst_port, dc.class, dc.router,
                   fi.flow_uid IS NOT NULL AS first_seen
            FROM _rw_nf nf
            JOIN _rw_dc dc ON dc.k = nf.k
            LEFT JOIN _rw_first fi ON fi.flow_uid = nf.flow_uid
            """
        ).fetchone()[0]
    finally:
        con.unregister("_rw_dc")
    for dest, port in ([] if first_run else new_suspected):  # older flows to a newly suspected router
        label = router_label(dest, port)
        con.execute(
            "UPDATE flow_classes SET class = 'suspected_router', router = ? "
            "WHERE class = 'other' AND dest = ? AND (dst_port IS NOT DISTINCT FROM ? OR ? IS NULL)",
            [label, dest, port, port],
        )
    return int(n or 0)
