"""The detection corpora (tests/fixtures/detection) through the real decoders and rules: the benign
corpus raises nothing at medium or above, every attack is accounted for by every rule it expects, and
the corpora are as large and as varied as the acceptance asks."""

from __future__ import annotations

from collections import Counter

import pytest

from analyzer.rules import load_rules
from analyzer.rules.corpus import default_corpus_dir, load_turns, run_corpus, score, summarise
from collector.catalog import load_catalog

ROOT = default_corpus_dir()


@pytest.fixture(scope="module")
def run():
    assert ROOT is not None
    return run_corpus(load_turns(ROOT), load_catalog(None), load_rules())


def test_corpora_are_large_and_varied(run):
    benign = [t for t in run.turns if t.corpus == "benign"]
    attacks = [t for t in run.turns if t.attack]
    assert sum(t.tool is not None for t in benign) >= 500
    assert sum(t.tool is not None for t in attacks) >= 200
    # every API shape and agent spelling, streamed and not, in both corpora
    for group in (benign, attacks):
        apis = Counter(t.session_doc.get("api") or {"claude-code": "anthropic.messages", "codex": "openai.responses"}
                       .get(t.session_doc.get("agent", t.file_doc.get("agent", "generic")), "openai.chat") for t in group)
        assert set(apis) == {"openai.chat", "openai.responses", "anthropic.messages"}, apis
        tools = {t.tool for t in group if t.tool}
        assert {"Bash", "Write", "shell", "execute_bash", "run_shell"} <= tools
    # not one template: most tool-call arguments in the benign corpus are distinct
    args = [t.arguments for t in benign if t.arguments]
    assert len(set(args)) / len(args) > 0.95


def test_benign_corpus_stays_below_medium(run):
    s = summarise(run)
    assert s.benign_flagged_medium == 0
    for r in score(run):
        assert r.benign_hits_medium == 0, r


def test_every_attack_is_found_with_its_class_and_accounted_for(run):
    s = summarise(run)
    assert s.attacks_unaccounted == [] and s.attacks_found == s.attack_turns
    scores = {r.rule: r for r in score(run)}
    for rule in ("ac1-download-exec", "ac1-credential-exfil", "ac1-install-source", "ac1-persistence",
                 "ac1-written-then-run", "ac1a-typosquat-install", "ac1b-conditional-injection",
                 "ac2-credential-to-router", "model-substitution"):
        assert scores[rule].labelled >= 10 and scores[rule].recall == 1.0, scores[rule]
        assert scores[rule].precision == 1.0, scores[rule]


def test_labels_cover_every_attack_class_and_credential_kind(run):
    classes = {run.rules[r].attack_class for t in run.turns for r in t.expect}
    assert {"AC-1", "AC-1.a", "AC-1.b", "AC-2", "model-substitution"} <= classes
    kinds = {f.get("evidence") and __import__("json").loads(f["evidence"]).get("kind") for f in run.findings
             if f["rule_id"] == "ac2-credential-to-router"}
    assert {"openai_api_key", "anthropic_api_key", "aws_access_key_id", "aws_secret_access_key", "github_token",
            "google_api_key", "slack_token", "slack_webhook", "jwt", "eth_private_key", "pem_private_key",
            "bip39_mnemonic"} <= kinds
