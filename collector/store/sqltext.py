"""Values spliced into SQL text, where DuckDB takes no parameter (ATTACH, SET, secrets, COPY targets,
postgres_query) or where binding one costs too much (a bound Python value makes DuckDB import pandas)."""

from __future__ import annotations


def sql_escape(s: str) -> str:
    """The text of a single-quoted SQL string literal holding `s` (quotes doubled; DuckDB's standard
    strings take no backslash escapes)."""
    return str(s).replace("'", "''")


def sql_literal(s: str) -> str:
    """`s` as a single-quoted SQL string literal."""
    return f"'{sql_escape(s)}'"
