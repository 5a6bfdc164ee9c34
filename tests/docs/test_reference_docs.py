"""docs/cli.md and docs/sql.md are exactly what the generator writes from the code, so they cannot drift.

When one of these fails after a change to a command or a table, regenerate and commit:
`.venv/bin/python -m tests.support.reference_docs`.
"""

from __future__ import annotations

import difflib
import re

from collector.cli import build_parser
from collector.store import schema
from tests.conftest import BIN, run_cli
from tests.support import reference_docs as ref

HINT = "out of date: regenerate with `.venv/bin/python -m tests.support.reference_docs` and commit"


def _same(path, expected: str) -> None:
    have = path.read_text() if path.exists() else ""
    if have != expected:
        diff = "".join(list(difflib.unified_diff(have.splitlines(True), expected.splitlines(True), "committed", "generated"))[:60])
        raise AssertionError(f"{path.relative_to(ref.REPO)} is {HINT}\n{diff}")


def test_cli_reference_is_current() -> None:
    _same(ref.CLI_MD, ref.cli_markdown())


def test_sql_reference_is_current() -> None:
    _same(ref.SQL_MD, ref.sql_markdown())


def test_cli_reference_covers_every_subcommand_including_entry_points() -> None:
    text = ref.CLI_MD.read_text()
    headings = re.findall(r"^## (routerwatch(?: [a-z-]+)*)$", text, re.M)
    # the collector's own commands and those the analyzer and dashboard register through entry points
    for name in ("ingest", "collect", "store compact", "wrap", "inventory", "sql", "analyze", "findings",
                 "ledger verify", "canary new", "rules test", "demo", "dashboard", "up"):
        assert f"routerwatch {name}" in headings
    assert len(headings) == len(set(headings)) == len(ref._walk(build_parser()))


def test_cli_reference_is_what_the_installed_command_prints() -> None:
    # argparse wraps at $COLUMNS - 2: the console script, asked at the generator's width, prints the same block
    out = run_cli("ingest", "--help", env={"COLUMNS": str(ref.WIDTH + 2)})
    assert out.returncode == 0 and (BIN / "routerwatch").exists()
    assert f"```text\n{out.stdout.rstrip()}\n```" in ref.CLI_MD.read_text()


def test_sql_reference_lists_every_declared_column_with_its_type() -> None:
    text = ref.SQL_MD.read_text()
    for table, columns in schema.TABLES.items():
        section = text.split(f"\n### {table}\n", 1)[1].split("\n### ", 1)[0]
        for column, sql_type in columns:
            assert f"| `{column}` | {sql_type} |" in section, f"{table}.{column}"
    assert "\n### schema_migrations\n" in text
