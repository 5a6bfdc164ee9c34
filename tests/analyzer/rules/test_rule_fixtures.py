"""Every rule's positive and negative fixture (the meta-test: a rule without both fails)."""

from __future__ import annotations

import pytest

from analyzer.engine import RULE_VIEWS, rule_sources, rule_text
from analyzer.rules import load_rules
from analyzer.rules.testing import check_rule, missing_fixtures

RULES = load_rules()


def test_every_rule_has_both_fixtures_and_metadata():
    problems = {r.id: missing_fixtures(r) for r in RULES if missing_fixtures(r)}
    assert not problems, f"rules without fixtures: {problems}"
    for r in RULES:
        assert r.attack, f"{r.id}: no ATT&CK tags"
        assert r.false_positives, f"{r.id}: no false positives listed"


def test_meta_test_catches_a_rule_without_fixtures(tmp_path):
    (tmp_path / "lonely.sql").write_text(
        "-- id: lonely\n-- rev: 1\n-- title: t\n-- severity: low\n-- attack_class: AC-1\n"
        "SELECT now() AS ts, 'h' AS host_id, 'k' AS dedup WHERE false\n"
    )
    rule = next(r for r in load_rules(tmp_path) if r.id == "lonely")
    assert missing_fixtures(rule) == ["positive", "negative"]
    results = check_rule(rule)
    assert [r.ok for r in results] == [False, False]


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_rule_fixtures(rule):
    for res in check_rule(rule):
        assert res.ok, f"{rule.id} {res.kind} ({res.path.name}): {res.problem}; findings={res.findings[:3]}"


def test_engine_views_count_as_what_a_rule_reads():
    """A rule that reads new rows only through an engine view (rw_response_indicators reads
    new_tool_calls) is run when those rows are new and skipped otherwise, as if it named them."""
    by_id = {r.id: r for r in RULES}
    for rid in ("ac1-credential-access", "ac1-credential-exfil", "ac1-download-exec", "ac1-install-source",
                "ac1-persistence"):
        assert "rw_response_indicators" in by_id[rid].sql
        assert rule_sources(by_id[rid]) == {"tool_calls"}, rid
    assert rule_sources(by_id["fleet-new-destination"]) == {"flows"}
    assert rule_sources(by_id["dns-new-domain"]) == {"dns"}
    # a rule naming no view reads only its own SQL
    assert "new_tool_calls" not in rule_text(by_id["canary-seen"]).replace(by_id["canary-seen"].sql, "")


def test_the_shared_rule_sql_has_one_home():
    """The join of new tool calls to their indicators, exchange and class, and the agent processes,
    live in the engine's RULE_VIEWS; no builtin rule spells them out again."""
    for r in RULES:
        assert "JOIN tool_call_indicators i\n  ON i.exchange_id = t.exchange_id" not in r.sql, r.id
        assert "IN (SELECT name FROM cat_agents)" not in r.sql, r.id
    assert set(RULE_VIEWS) == {"rw_response_indicators", "rw_agent_processes"}
