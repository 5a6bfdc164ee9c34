"""`routerwatch report`: what the analyzer knows, as Markdown, HTML or JSON.

One data-gathering function (`gather`) and three renderers, so the formats never disagree.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from typing import Any

import duckdb

from analyzer.engine import SEVERITY_RANK


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict]:
    cur = con.execute(sql, params or [])
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def gather(con: duckdb.DuckDBPyConnection, since: dt.datetime | None = None, limit: int = 500) -> dict[str, Any]:
    since = since or dt.datetime(1970, 1, 1)
    findings = _rows(
        con,
        "SELECT finding_id, ts, severity, rule_id, rule_rev, attack_class, title, summary, host_id, pid, flow_uid, "
        "exchange_id, router, evidence FROM findings WHERE ts >= ? ORDER BY ts DESC LIMIT ?",
        [since, limit],
    )
    findings.sort(key=lambda f: (-SEVERITY_RANK.get(f["severity"], 0), str(f["ts"])))
    for f in findings:
        try:
            f["evidence"] = json.loads(f["evidence"] or "{}")
        except ValueError:
            pass
    by_sev = _rows(con, "SELECT severity, count(*) AS n FROM findings WHERE ts >= ? GROUP BY 1", [since])
    by_rule = _rows(
        con,
        "SELECT rule_id, attack_class, any_value(title) AS title, count(*) AS n FROM findings WHERE ts >= ? "
        "GROUP BY 1, 2 ORDER BY n DESC",
        [since],
    )
    routers = _rows(
        con,
        """
        SELECT coalesce(ec.router, ec.dest) AS router, ec.class, count(*) AS exchanges,
               count(DISTINCT ec.host_id) AS hosts, min(ec.ts) AS first_seen, max(ec.ts) AS last_seen,
               (SELECT count(*) FROM findings f WHERE f.router = coalesce(ec.router, ec.dest) AND f.ts >= ?) AS findings
        FROM exchange_classes ec WHERE ec.ts >= ?
        GROUP BY 1, 2 ORDER BY findings DESC, exchanges DESC LIMIT 100
        """,
        [since, since],
    )
    run = _rows(con, "SELECT run_id, ts, ledger_seq, ledger_head, duration_s FROM analyzer_runs ORDER BY ts DESC LIMIT 1")
    counts = {
        t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        for t in ("flows", "llm_exchanges", "tool_calls", "secrets_seen", "findings")
    }
    return {
        "generated": dt.datetime.now(dt.UTC).replace(tzinfo=None),
        "since": since,
        "counts": counts,
        "severity": {r["severity"]: r["n"] for r in by_sev},
        "rules": by_rule,
        "routers": routers,
        "findings": findings,
        "last_run": run[0] if run else None,
    }


def to_json(data: dict[str, Any]) -> str:
    return json.dumps(data, default=str, indent=2, sort_keys=True)


def _md_cell(v: Any) -> str:
    return str("" if v is None else v).replace("|", "\\|").replace("\n", " ")


def to_markdown(data: dict[str, Any]) -> str:
    out = [f"# routerwatch report\n\nGenerated {data['generated']:%Y-%m-%d %H:%M:%S} UTC."]
    c = data["counts"]
    out.append(
        f"\n{c['flows']:,} flows, {c['llm_exchanges']:,} LLM exchanges, {c['tool_calls']:,} tool calls, "
        f"{c['secrets_seen']:,} secret sightings, {c['findings']:,} findings."
    )
    sev = data["severity"]
    out.append("\n## Findings by severity\n")
    out.append(" · ".join(f"**{s}**: {sev.get(s, 0)}" for s in ("critical", "high", "medium", "low", "info")))
    if data["rules"]:
        out.append("\n## Findings by rule\n\n| rule | class | title | count |\n|---|---|---|---|")
        out += [f"| {r['rule_id']} | {r['attack_class']} | {_md_cell(r['title'])} | {r['n']} |" for r in data["rules"]]
    out.append("\n## Routers and providers\n")
    if data["routers"]:
        out.append("| router | class | exchanges | hosts | findings | first seen | last seen |\n|---|---|---|---|---|---|---|")
        out += [
            f"| {_md_cell(r['router'])} | {r['class']} | {r['exchanges']} | {r['hosts']} | {r['findings']} | "
            f"{r['first_seen']} | {r['last_seen']} |"
            for r in data["routers"]
        ]
    else:
        out.append("No LLM exchanges analysed yet.")
    out.append("\n## Findings\n")
    if not data["findings"]:
        out.append("None.")
    for f in data["findings"]:
        out.append(f"### [{f['severity']}] {_md_cell(f['title'])}\n")
        out.append(f"- **summary**: {_md_cell(f['summary'])}")
        out.append(f"- **rule**: {f['rule_id']} rev {f['rule_rev']} ({f['attack_class']}) · **time**: {f['ts']}")
        ids = ", ".join(f"{k} `{f[k]}`" for k in ("host_id", "router", "exchange_id", "flow_uid", "pid") if f.get(k) is not None)
        out.append(f"- **evidence ids**: {ids}")
        out.append(f"- **evidence**: `{_md_cell(json.dumps(f['evidence'], default=str, sort_keys=True))}`\n")
    if data["last_run"]:
        r = data["last_run"]
        out.append(f"\n---\nLedger: {r['ledger_seq']} entries, head `{r['ledger_head']}` (last analyze {r['ts']}).")
    return "\n".join(out) + "\n"


_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em;max-width:1200px;color:#1d1d1f}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f6}.critical{color:#fff;background:#b00020}.high{background:#ff8a65}.medium{background:#ffd54f}
.low{background:#c5e1a5}.info{background:#e0e0e0}.sev{padding:1px 6px;border-radius:3px;font-weight:600}
code{font-size:12px;word-break:break-all}"""


def to_html(data: dict[str, Any]) -> str:
    e = html.escape

    def table(headers: list[str], rows: list[list[Any]]) -> str:
        head = "".join(f"<th>{e(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><tr>{head}</tr>{body}</table>"

    c = data["counts"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>routerwatch report</title>",
        f"<style>{_CSS}</style></head><body><h1>routerwatch report</h1>",
        f"<p>Generated {e(str(data['generated']))} UTC. {c['flows']:,} flows, {c['llm_exchanges']:,} LLM exchanges, "
        f"{c['tool_calls']:,} tool calls, {c['secrets_seen']:,} secret sightings, {c['findings']:,} findings.</p>",
        "<h2>Findings by severity</h2><p>"
        + " ".join(f"<span class='sev {s}'>{s}: {data['severity'].get(s, 0)}</span>" for s in ("critical", "high", "medium", "low", "info"))
        + "</p>",
    ]
    if data["rules"]:
        parts.append("<h2>Findings by rule</h2>" + table(
            ["rule", "class", "title", "count"],
            [[e(r["rule_id"]), e(r["attack_class"]), e(r["title"]), r["n"]] for r in data["rules"]]))
    parts.append("<h2>Routers and providers</h2>" + (table(
        ["router", "class", "exchanges", "hosts", "findings", "first seen", "last seen"],
        [[e(str(r["router"])), e(str(r["class"])), r["exchanges"], r["hosts"], r["findings"], e(str(r["first_seen"])),
          e(str(r["last_seen"]))] for r in data["routers"]]) if data["routers"] else "<p>No LLM exchanges analysed yet.</p>"))
    parts.append("<h2>Findings</h2>" + (table(
        ["severity", "time", "rule", "summary", "evidence ids", "evidence"],
        [[f"<span class='sev {e(f['severity'])}'>{e(f['severity'])}</span>", e(str(f["ts"])),
          f"{e(f['rule_id'])} rev {f['rule_rev']}<br>{e(f['attack_class'])}", e(str(f["summary"] or f["title"])),
          "<br>".join(f"{k}: <code>{e(str(f[k]))}</code>" for k in ("host_id", "router", "exchange_id", "flow_uid", "pid")
                      if f.get(k) is not None),
          f"<code>{e(json.dumps(f['evidence'], default=str, sort_keys=True))}</code>"] for f in data["findings"]])
        if data["findings"] else "<p>None.</p>"))
    if data["last_run"]:
        r = data["last_run"]
        parts.append(f"<hr><p>Ledger: {r['ledger_seq']} entries, head <code>{e(str(r['ledger_head']))}</code>.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


RENDERERS = {"md": to_markdown, "html": to_html, "json": to_json}
