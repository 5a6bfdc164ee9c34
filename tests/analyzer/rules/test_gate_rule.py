"""gate-blocked-tool-call: one finding per blocked call (proxy or hook) and per response passed
unjudged, each with the action in its evidence and the deciding rule's attack class."""

from __future__ import annotations

import json

from analyzer.rules import load_rules
from analyzer.rules.testing import fixture_paths, run_fixture


def test_findings_carry_the_action_and_the_deciding_rules_class() -> None:
    rule = next(r for r in load_rules() if r.id == "gate-blocked-tool-call")
    res = run_fixture(rule, "positive", fixture_paths(rule)["positive"])
    assert res.ok, res.problem
    got = sorted((f["attack_class"], f["severity"], json.loads(f["evidence"])["action"], json.loads(f["evidence"])["source"])
                 for f in res.findings)
    assert got == [("AC-1", "high", "block", "proxy"), ("AC-1", "medium", "allow", "proxy"),
                   ("AC-1.a", "high", "block", "hook")]
    assert all(f["summary"] for f in res.findings)
