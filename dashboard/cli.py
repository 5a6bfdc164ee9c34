"""The dashboard's subcommands (registered through the `routerwatch.commands` entry point)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """`routerwatch dashboard` and `routerwatch up` are added by the dashboard work."""
