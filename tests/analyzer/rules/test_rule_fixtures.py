"""Every rule's positive and negative fixture (the meta-test: a rule without both fails)."""

from __future__ import annotations

import pytest

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
