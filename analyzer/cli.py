"""The analyzer's subcommands (registered through the `routerwatch.commands` entry point)."""

from __future__ import annotations

import argparse
import sys

from collector.cli import UserError, add_store_arg


def cmd_sql(args: argparse.Namespace) -> int:
    from analyzer.sql import QueryError, format_rows, run_query
    from analyzer.sql_shell import interactive
    from collector.store import Store

    with Store.open(args.store, read_only=True) as store:
        if not args.query:
            return interactive(store, args.format)
        query = sys.stdin.read() if args.query == "-" else args.query
        try:
            cols, rows = run_query(store, query)
        except QueryError as exc:
            raise UserError(str(exc)) from None
        print(format_rows(cols, rows, args.format))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sql",
        help="run read-only SQL over the store (interactive without QUERY)",
        description="Run read-only SQL over the store. Tables: flows, processes, dns, tls, http, "
        "llm_exchanges, tool_calls, secrets_seen, findings, collector_stats, ingest_runs, ... "
        "(see README). Without QUERY, an interactive prompt with history; QUERY '-' reads stdin.",
    )
    add_store_arg(p)
    p.add_argument("--format", choices=["table", "json", "csv"], default="table",
                   help="table (default), json (one array of row objects) or csv")
    p.add_argument("query", nargs="?", metavar="QUERY")
    p.set_defaults(func=cmd_sql)
