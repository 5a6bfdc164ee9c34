"""The interactive `routerwatch sql` prompt: history, multi-line statements ended by `;`."""

from __future__ import annotations

import sys
from pathlib import Path

from analyzer.sql import QueryError, format_rows, run_query, split_statements
from collector.store import Store

BANNER = "routerwatch sql: read-only SQL over the store. End statements with ';'. .tables lists tables, .quit exits."


def history_path() -> Path:
    p = Path.home() / ".local" / "state" / "routerwatch"
    p.mkdir(parents=True, exist_ok=True)
    return p / "sql_history"


def _run(store: Store, stmt: str, fmt: str) -> None:
    if stmt.strip() in (".tables", "\\d"):
        print("\n".join(store.tables()))
        return
    try:
        cols, rows = run_query(store, stmt)
    except QueryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return
    print(format_rows(cols, rows, fmt))


def interactive(store: Store, fmt: str = "table") -> int:
    """Read statements until EOF; uses prompt_toolkit on a terminal, plain stdin otherwise."""
    if not sys.stdin.isatty():
        stmts, rest = split_statements(sys.stdin.read())
        if rest.strip():
            stmts.append(rest.strip())
        status = 0
        for s in stmts:
            try:
                cols, rows = run_query(store, s)
                print(format_rows(cols, rows, fmt))
            except QueryError as exc:
                print(f"error: {exc}", file=sys.stderr)
                status = 1
        return status

    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory

    session: PromptSession = PromptSession(history=FileHistory(str(history_path())))
    print(BANNER)
    buffer = ""
    while True:
        try:
            line = session.prompt("sql> " if not buffer else "...> ")
        except KeyboardInterrupt:
            buffer = ""
            continue
        except EOFError:
            return 0
        if not buffer and line.strip() in (".quit", ".exit", "\\q"):
            return 0
        if not buffer and line.strip().startswith("."):
            _run(store, line.strip(), fmt)
            continue
        stmts, buffer = split_statements(buffer + line + "\n")
        for s in stmts:
            _run(store, s, fmt)
