"""The tree's shape: which package may import which, and benchmark scripts that run as bench/ documents.

Data flows one way (collector -> analyzer -> dashboard), product code never imports tests or
benchmarks, tests never import benchmarks, and benchmarks take shared code from tests.support only.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("collector", "analyzer", "dashboard")
# package -> top-level packages of this repo it must not import
FORBIDDEN = {
    "collector": {"analyzer", "dashboard", "tests", "bench"},
    "analyzer": {"dashboard", "tests", "bench"},
    "dashboard": {"tests", "bench"},
    "tests": {"bench"},
    "bench": set(),
}
BENCH_SCRIPTS = sorted(p for p in (REPO / "bench").glob("*.py") if p.name != "__init__.py")


def _imports(path: Path) -> set[str]:
    """Every module an import statement in `path` names (function-level imports included)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_directions(package: str) -> None:
    bad = []
    for path in sorted((REPO / package).rglob("*.py")):
        for mod in _imports(path):
            top = mod.split(".")[0]
            if top in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(REPO)} imports {mod}")
            elif package == "bench" and top == "tests" and not mod.startswith("tests.support"):
                bad.append(f"{path.relative_to(REPO)} imports {mod} (bench may use tests.support only)")
    assert bad == []


def test_the_checks_see_imports() -> None:
    """The walk above finds module-level and function-level imports alike (a guard against a no-op)."""
    assert {"tests.support.sample_data", "dashboard"} <= _imports(REPO / "bench" / "dashboard.py")
    assert "collector.llm.result" in _imports(REPO / "collector" / "llm" / "openai.py")
    assert "collector.proxy.ca" in _imports(REPO / "analyzer" / "demo" / "pki.py")


@pytest.mark.parametrize("script", BENCH_SCRIPTS, ids=lambda p: p.name)
def test_bench_script_runs_as_documented(script: Path, tmp_path: Path) -> None:
    """`python bench/X.py` from any directory (here: an empty one), as bench/__init__.py says."""
    doc = ast.get_docstring(ast.parse(script.read_text())) or ""
    assert not re.search(r"-m bench\.", doc), f"{script.name} documents `-m bench.…`; bench/ says `python bench/X.py`"
    p = subprocess.run([sys.executable, str(script), "--help"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.startswith("usage:")
