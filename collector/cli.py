"""The `routerwatch` command: one entry point, thin subcommands over library calls.

The collector's own commands are registered here; the analyzer and dashboard register theirs
through the `routerwatch.commands` entry-point group, so this package never imports them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from collector import __version__
from collector.store.errors import StoreError


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


def add_store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        metavar="DIR",
        help="store directory or DuckLake catalog URI (default: $ROUTERWATCH_STORE, else "
        "/var/lib/routerwatch as root, else ~/.local/share/routerwatch)",
    )


# -- store maintenance and export ----------------------------------------------------------------
def cmd_store_compact(args: argparse.Namespace) -> int:
    from collector.store import Store
    from collector.store.maintenance import compact

    with Store.open(args.store) as store:
        res = compact(store, expire_older_than_hours=args.expire_hours)
    print(f"compacted: {res['files_before']} -> {res['files_after']} data files")
    return 0


def cmd_store_info(args: argparse.Namespace) -> int:
    from collector.store import Store

    with Store.open(args.store, read_only=True) as store:
        print(f"store: {store.location.spec}")
        for t in store.tables():
            n = store.sql(f'SELECT count(*) FROM "{t}"').fetchone()[0]
            print(f"  {t:<20} {n:>12,} rows")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from collector.store import Store
    from collector.store.maintenance import export_duckdb, export_parquet

    with Store.open(args.store, read_only=True) as store:
        if args.duckdb:
            tables = export_duckdb(store, args.duckdb)
            print(f"exported {len(tables)} tables to {args.duckdb}")
        else:
            tables = export_parquet(store, args.parquet)
            print(f"exported {len(tables)} tables to {args.parquet}/")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """The collector's subcommands."""
    p = sub.add_parser("store", help="store maintenance (compact, info)")
    ssub = p.add_subparsers(dest="store_cmd", required=True, metavar="ACTION")
    c = ssub.add_parser("compact", help="merge small Parquet files, expire old snapshots, delete unreferenced files")
    add_store_arg(c)
    c.add_argument("--expire-hours", type=float, default=24.0, help="expire snapshots older than this (default 24)")
    c.set_defaults(func=cmd_store_compact)
    i = ssub.add_parser("info", help="tables and row counts")
    add_store_arg(i)
    i.set_defaults(func=cmd_store_info)

    e = sub.add_parser("export", help="copy the store to one .duckdb file or a folder of Parquet files")
    add_store_arg(e)
    g = e.add_mutually_exclusive_group(required=True)
    g.add_argument("--duckdb", metavar="FILE", help="write a single plain DuckDB database file")
    g.add_argument("--parquet", metavar="DIR", help="write one Parquet file per table")
    e.set_defaults(func=cmd_export)


# -- entry point ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="routerwatch",
        description="Watch AI agents' LLM API traffic: capture, decrypt, attribute to processes, "
        "detect malicious routers, and query everything with SQL.",
    )
    parser.add_argument("--version", action="version", version=f"routerwatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    register(sub)
    for ep in sorted(entry_points(group="routerwatch.commands"), key=lambda e: e.name):
        ep.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (UserError, StoreError) as exc:
        print(f"routerwatch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("routerwatch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
