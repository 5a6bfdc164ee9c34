"""The coverage matrix in docs/agents-and-proxy.md stays true: every test it cites exists, and the agent versions it
names are the ones deploy/deps.sh installs for the end-to-end tests."""

from __future__ import annotations

import ast
import re

from tests.conftest import REPO


def _matrix() -> list[list[str]]:
    text = (REPO / "docs" / "agents-and-proxy.md").read_text()
    block = text.split("<!-- coverage-matrix:begin -->", 1)[1].split("<!-- coverage-matrix:end -->", 1)[0]
    rows = [ln for ln in block.strip().splitlines() if ln.startswith("|")][2:]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in rows]


def test_every_cited_test_exists() -> None:
    rows = _matrix()
    assert len(rows) >= 5
    for row in rows:
        for ref in (r.strip() for r in row[-1].split(",")):
            path, _, name = ref.partition("::")
            f = REPO / path
            assert f.is_file(), f"coverage matrix cites missing file {path}"
            funcs = {n.name for n in ast.walk(ast.parse(f.read_text())) if isinstance(n, ast.FunctionDef)}
            assert name in funcs, f"coverage matrix cites missing test {ref}"


def test_versions_match_the_pinned_agents() -> None:
    deps = (REPO / "deploy" / "deps.sh").read_text()
    pins = dict(re.findall(r"@(?:anthropic-ai|openai|google)/([a-z-]+)@([0-9.]+)", deps))
    rows = {r[0] for r in _matrix()}
    assert f"Claude Code {pins['claude-code']}" in rows
    assert f"Codex CLI {pins['codex']}" in rows
    assert f"Gemini CLI {pins['gemini-cli']}" in rows
    opencode = re.search(r"\bopencode-ai@([0-9.]+)", deps)
    assert opencode and f"opencode {opencode.group(1)}" in rows
