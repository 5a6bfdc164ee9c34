"""The gate policy: builtin defaults, YAML validation with one-line errors, per-agent and per-router
overrides (later wins), the unjudged setting, and where the file is found."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.policy.model import ALLOW, BLOCK, RECORD, TIMEOUT, UNPARSEABLE
from collector.policy.policy import POLICY_ENV, Policy, PolicyError, load_policy, parse


def test_builtin_blocks_execution_and_records_reads() -> None:
    p = Policy()
    assert p.action("ac1-download-exec") == BLOCK
    assert p.action("ac1a-typosquat-install") == BLOCK
    assert p.action("ac1-credential-access") == RECORD
    assert p.action("some-user-rule") == RECORD  # `default`
    assert p.action(UNPARSEABLE) == BLOCK and p.action(TIMEOUT) == BLOCK  # fail closed


def test_overrides_by_agent_and_router_later_wins() -> None:
    p = parse({
        "rules": {"ac1-install-source": "record"},
        "overrides": [
            {"agent": "codex", "rules": {"ac1-install-source": "block"}},
            {"router": "*.corp.example", "rules": {"ac1-download-exec": "record", "ac1-install-source": "record"}},
            {"agent": "codex", "router": "ci-router", "unjudged": "allow"},
        ]})
    assert p.action("ac1-install-source") == RECORD
    assert p.action("ac1-install-source", "codex") == BLOCK
    assert p.action("ac1-install-source", "codex", ("llm.corp.example",)) == RECORD
    assert p.action("ac1-download-exec", "claude-code", ("llm.corp.example:443", "llm.corp.example")) == RECORD
    assert p.action("ac1-download-exec", "claude-code", ("evil.example",)) == BLOCK
    assert p.action(UNPARSEABLE, "codex", ("ci-router",)) == ALLOW
    assert p.action(UNPARSEABLE, "claude-code", ("ci-router",)) == BLOCK
    v = p.decide([("ac1-credential-access", "reads a credential store", "cat ~/.aws/credentials"),
                  ("ac1-download-exec", "downloads and runs code", "curl x | sh")])
    assert v.action == BLOCK and v.rule == "ac1-download-exec" and v.detail == "curl x | sh"
    assert p.decide([]).action == ALLOW
    assert p.digest != Policy().digest and len(p.digest) == 12


@pytest.mark.parametrize(("data", "message"), [
    ([1, 2], "expected a mapping at the top level"),
    ({"rulez": {}}, "unknown key(s) rulez"),
    ({"rules": {"ac1-download-exec": "deny"}}, "rules.ac1-download-exec: expected one of block, record"),
    ({"unjudged": "record"}, "unjudged: expected one of block, allow"),
    ({"judge_timeout": 0}, "judge_timeout: expected seconds"),
    ({"overrides": [{"rules": {}}]}, "overrides[0]: needs `agent` or `router`"),
    ({"overrides": [{"agent": "x", "when": 1}]}, "overrides[0]: unknown key(s) when"),
])
def test_bad_policies_name_the_problem(data: object, message: str) -> None:
    with pytest.raises(PolicyError) as e:
        parse(data, "p.yaml")
    assert message in str(e.value) and str(e.value).startswith("p.yaml: ")


def test_where_the_policy_comes_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(POLICY_ENV, raising=False)
    assert load_policy(store_root=tmp_path).source == "builtin"  # no file beside the store: defaults
    (tmp_path / "policy.yaml").write_text("rules:\n  ac1-download-exec: record\n")
    assert load_policy(store_root=tmp_path).action("ac1-download-exec") == RECORD
    other = tmp_path / "other.yaml"
    other.write_text("unjudged: allow\n")
    assert load_policy(other, store_root=tmp_path).unjudged == ALLOW
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")  # a file named on purpose must exist
    (tmp_path / "bad.yaml").write_text("rules: [\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(tmp_path / "bad.yaml")
    monkeypatch.setenv(POLICY_ENV, str(other))
    assert load_policy(store_root=tmp_path).unjudged == ALLOW


def test_wrap_gate_flags_are_checked(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    r = run_cli("wrap", "--enforce", "--", "true")
    assert r.returncode == 2 and "--enforce needs --proxy" in r.stderr
    r = run_cli("wrap", "--proxy", "--gate-fail-open", "--", "true")
    assert r.returncode == 2 and "add --enforce" in r.stderr
    bad = tmp_path / "p.yaml"
    bad.write_text("unjudged: sometimes\n")
    r = run_cli("wrap", "--proxy", "--enforce", "--policy", str(bad), "--store", str(tmp_path / "store"), "--", "true")
    assert r.returncode == 2 and "unjudged: expected one of block, allow" in r.stderr and "Traceback" not in r.stderr
