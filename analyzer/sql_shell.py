"""The interactive `routerwatch sql` prompt: history, multi-line statements ended by `;`.

Everything typed runs in the SQL sandbox (analyzer/sandbox.py). A statement is complete when DuckDB's
own tokenizer sees a `;` at its end (a `;` inside a string or comment does not count).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from analyzer.sandbox import QueryError, Result, Sandbox, complete
from analyzer.sql import format_rows

BANNER = ("routerwatch sql: read-only SQL over the store (sandboxed: SELECT, WITH, EXPLAIN, DESCRIBE, SHOW, "
          "SUMMARIZE). End statements with ';'. .tables lists tables, .quit exits.")


def history_path() -> Path:
    """~/.local/state/routerwatch/sql_history, created 0600: queries name hosts, fingerprints, ids."""
    p = Path.home() / ".local" / "state" / "routerwatch"
    p.mkdir(parents=True, exist_ok=True, mode=0o700)
    f = p / "sql_history"
    os.close(os.open(f, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    return f


def show(res: Result, fmt: str, cap: int) -> None:
    """Print a result; a cut result says so on stderr (stdout stays parseable)."""
    print(format_rows(res.columns, res.rows, fmt))
    if res.truncated:
        print(f"routerwatch: note: only the first {cap:,} rows are shown (--max-rows to change)", file=sys.stderr)


def run_statements(sb: Sandbox, text: str, fmt: str) -> str | None:
    """Check every statement of `text` before the first runs, then print each result as it comes;
    returns the error (one line) that stopped it, if any."""
    try:
        for p in sb.check(text):
            show(sb.execute(p), fmt, sb.limits.max_rows)
    except QueryError as exc:
        return str(exc)
    return None


def _command(sb: Sandbox, text: str, fmt: str) -> None:
    if text.strip() in (".tables", "\\d"):
        print("\n".join(sb.tables()))
        return
    err = run_statements(sb, text, fmt)
    if err:
        print(f"error: {err}", file=sys.stderr)


def interactive(sb: Sandbox, fmt: str = "table") -> int:
    """Read statements until EOF; uses prompt_toolkit on a terminal, a script from stdin otherwise."""
    if not sys.stdin.isatty():  # a script: exit status 2 when a statement is refused or fails
        script = sys.stdin.read()
        err = run_statements(sb, script, fmt) if script.strip() else None
        if err:
            print(f"routerwatch: error: {err}", file=sys.stderr)
        return 2 if err else 0

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
            _command(sb, line.strip(), fmt)
            continue
        buffer += line + "\n"
        if complete(buffer):
            _command(sb, buffer, fmt)
            buffer = ""
