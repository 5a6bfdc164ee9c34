"""House rules a reader can rely on, checked over the product packages (collector, analyzer, dashboard).

Long functions: a function (or method, or nested function) of more than MAX_LINES lines, counted from
its `def` line to its last line, must be split into named steps, or say in its docstring why it is
long, in a sentence that starts with "Long because" (for example: "Long because the statements share
one transaction and the locals of each step feed the next; split, they would pass a dozen values
around."). The convention is described in docs/testing.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("collector", "analyzer", "dashboard")
MAX_LINES = 80
REASON = "Long because"


def long_functions(root: Path = REPO, packages: tuple[str, ...] = PRODUCT) -> list[str]:
    """`path:line name (N lines)` for every function over MAX_LINES lines whose docstring lacks REASON."""
    out = []
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES and REASON not in (ast.get_docstring(node) or ""):
                    out.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({n} lines)")
    return out


def test_no_long_function_without_a_reason() -> None:
    offenders = long_functions()
    assert offenders == [], (
        f"{len(offenders)} function(s) over {MAX_LINES} lines: split each into named steps, or add a docstring "
        f"sentence starting with {REASON!r} that says why it is long:\n  " + "\n  ".join(offenders))


def test_the_check_sees_long_functions(tmp_path: Path) -> None:
    """A guard against a no-op: a long function, a nested one or a method, is named unless its
    docstring says why; a short one, or one exactly MAX_LINES long, is not."""
    def body(indent: int, n: int) -> str:
        return "".join(" " * indent + f"x{i} = {i}\n" for i in range(n))

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(
        "def short():\n    return 1\n\n\n"
        f"def at_limit():\n{body(4, MAX_LINES - 1)}\n\n"
        f"def long_one():\n{body(4, MAX_LINES)}\n\n"
        f'class C:\n    def method(self):\n        """{REASON} it is a test."""\n{body(8, MAX_LINES)}\n\n'
        f"def outer():\n    async def inner():\n{body(8, MAX_LINES)}"
    )
    found = [f.split(" ", 1)[1] for f in long_functions(tmp_path, ("pkg",))]
    assert found == [f"long_one ({MAX_LINES + 1} lines)", f"outer ({MAX_LINES + 2} lines)",
                     f"inner ({MAX_LINES + 1} lines)"]
