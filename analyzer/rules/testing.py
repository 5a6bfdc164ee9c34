"""Rule fixtures: rows in, findings out. Every rule ships `fixtures/<id>/positive.yaml` (must raise
a finding, optionally with given fields) and `negative.yaml` (must raise none of that rule).

    description: what the fixture shows
    catalog: {...}              # optional overlay on the builtin catalog (allowlist, declared_routers, ...)
    tables:
      llm_exchanges: [{ts: 2026-01-01 10:00:00, exchange_id: x1, ...}]
      tool_calls: [...]
    runs: 1                     # optional: analyze N times (incremental: later runs must add nothing)
    expect:                     # positive only
      count: 1                  # optional exact count (default: at least one)
      match: {exchange_id: x1}  # a finding with these fields; `evidence` keys are matched inside evidence
      covers:                   # optional: exactly the exchanges / flows the rule's findings account for
        exchange_ids: [x1, x2]  #   (finding_coverage: a deduplicated finding still names every exchange)

Fixtures run in an in-memory DuckDB that has the store's declared tables (the same SQL the engine
runs on a DuckLake store).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from analyzer.engine import analyze, insert, memory_connection
from analyzer.rules.loader import Rule
from collector.catalog import load_catalog
from collector.store.schema import TABLES

KINDS = ("positive", "negative")


@dataclass
class FixtureResult:
    rule: str
    kind: str
    path: Path
    ok: bool
    findings: list[dict] = field(default_factory=list)
    problem: str = ""


def fixture_paths(rule: Rule) -> dict[str, Path]:
    return {k: rule.fixtures_dir / f"{k}.yaml" for k in KINDS}


def missing_fixtures(rule: Rule) -> list[str]:
    return [k for k, p in fixture_paths(rule).items() if not p.is_file()]


def load_rows(con: Any, tables: dict[str, list[dict]]) -> None:
    for table, rows in (tables or {}).items():
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}")
        types = dict(TABLES[table])
        fixed = []
        for r in rows or []:
            r = dict(r)
            for k, v in r.items():
                if k not in types:
                    raise ValueError(f"{table} has no column {k!r}")
                if types[k] == "JSON" and v is not None and not isinstance(v, str):
                    r[k] = json.dumps(v)
            fixed.append(r)
        con.execute("BEGIN")
        insert(con, table, fixed)
        con.execute("COMMIT")


def run_fixture(rule: Rule, kind: str, path: Path) -> FixtureResult:
    doc = yaml.safe_load(path.read_text()) or {}
    con = memory_connection()
    try:
        load_rows(con, doc.get("tables") or {})
        catalog = load_catalog(None, extra=doc.get("catalog"))
        found: list[dict] = []
        for i in range(int(doc.get("runs", 1))):
            res = analyze(con, catalog, [rule])
            if i > 0 and res.findings:
                return FixtureResult(rule.id, kind, path, False, res.findings, f"run {i + 1} added findings (not incremental)")
            found += res.findings
        covered = {
            "exchange_ids": sorted({r[0] for r in con.execute(
                "SELECT exchange_id FROM finding_coverage WHERE rule_id = ? AND exchange_id IS NOT NULL", [rule.id]).fetchall()}),
            "flow_uids": sorted({r[0] for r in con.execute(
                "SELECT flow_uid FROM finding_coverage WHERE rule_id = ? AND flow_uid IS NOT NULL", [rule.id]).fetchall()}),
        }
    finally:
        con.close()
    mine = [f for f in found if f["rule_id"] == rule.id]
    if kind == "negative":
        ok = not mine
        return FixtureResult(rule.id, kind, path, ok, mine, "" if ok else f"{len(mine)} finding(s) on a negative fixture")
    expect = doc.get("expect") or {}
    if not mine:
        return FixtureResult(rule.id, kind, path, False, mine, "no finding on a positive fixture")
    if "count" in expect and len(mine) != int(expect["count"]):
        return FixtureResult(rule.id, kind, path, False, mine, f"{len(mine)} findings, expected {expect['count']}")
    match = expect.get("match") or {}
    if match and not any(_matches(f, match) for f in mine):
        return FixtureResult(rule.id, kind, path, False, mine, f"no finding matches {match}")
    for what, want in (expect.get("covers") or {}).items():
        if what not in covered:
            return FixtureResult(rule.id, kind, path, False, mine, f"covers: unknown key {what!r} (exchange_ids, flow_uids)")
        if sorted(want) != covered[what]:
            return FixtureResult(rule.id, kind, path, False, mine, f"covers {what} {covered[what]}, expected {sorted(want)}")
    return FixtureResult(rule.id, kind, path, True, mine)


def _matches(finding: dict, match: dict) -> bool:
    for k, v in match.items():
        if k == "evidence":
            ev = json.loads(finding.get("evidence") or "{}")
            if any(ev.get(ek) != evv for ek, evv in v.items()):
                return False
        elif finding.get(k) != v:
            return False
    return True


def check_rule(rule: Rule) -> list[FixtureResult]:
    """Run both fixtures of a rule; a missing fixture is a failed result."""
    out = []
    for kind, path in fixture_paths(rule).items():
        if not path.is_file():
            out.append(FixtureResult(rule.id, kind, path, False, [], f"missing {kind} fixture {path}"))
            continue
        try:
            out.append(run_fixture(rule, kind, path))
        except Exception as exc:  # a broken fixture or rule is a failed result, reported with its reason
            out.append(FixtureResult(rule.id, kind, path, False, [], f"{type(exc).__name__}: {exc}"))
    return out
