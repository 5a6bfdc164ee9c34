"""Parse rule files (metadata header + SQL) from the package and from a user's rules directory."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from analyzer.durations import parse_duration

SEVERITIES = ("info", "low", "medium", "high", "critical")
REQUIRED = ("id", "rev", "title", "severity", "attack_class")
_ID = re.compile(r"^[a-z0-9][a-z0-9_.\-]{1,63}$")


class RuleError(ValueError):
    """A rule file that cannot be used; the message names the file."""


@dataclass
class Rule:
    id: str
    rev: int
    title: str
    severity: str
    attack_class: str
    sql: str
    path: Path
    attack: list[str] = field(default_factory=list)
    false_positives: list[str] = field(default_factory=list)
    suppress_s: float | None = None  # None: a dedup key never fires twice
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def fixtures_dir(self) -> Path:
        return self.path.parent / "fixtures" / self.id


def builtin_rules_dir() -> Path:
    return Path(__file__).resolve().parent


def parse_rule(path: Path) -> Rule:
    text = path.read_text()
    header: list[str] = []
    body_start = 0
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith("--"):
            header.append(line[3:] if line.startswith("-- ") else line[2:])
            body_start = i + 1
        elif line.strip() == "" and not header:
            body_start = i + 1
        else:
            break
    try:
        meta = yaml.safe_load("".join(header)) or {}
    except yaml.YAMLError as exc:
        raise RuleError(f"{path}: metadata header is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(meta, dict):
        raise RuleError(f"{path}: metadata header must be a YAML mapping")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise RuleError(f"{path}: metadata lacks {', '.join(missing)}")
    if not _ID.match(str(meta["id"])):
        raise RuleError(f"{path}: id {meta['id']!r} must be lower-case letters, digits, '-', '_' or '.'")
    if meta["severity"] not in SEVERITIES:
        raise RuleError(f"{path}: severity must be one of {', '.join(SEVERITIES)}")
    sql = "".join(lines[body_start:]).strip().rstrip(";").strip()
    if not sql:
        raise RuleError(f"{path}: no SQL after the header")
    try:
        suppress = parse_duration(meta.get("suppress"))
    except ValueError as exc:
        raise RuleError(f"{path}: {exc}") from None
    return Rule(
        id=str(meta["id"]),
        rev=int(meta["rev"]),
        title=str(meta["title"]),
        severity=str(meta["severity"]),
        attack_class=str(meta["attack_class"]),
        sql=sql,
        path=path,
        attack=[str(a) for a in meta.get("attack") or []],
        false_positives=[str(a) for a in meta.get("false_positives") or []],
        suppress_s=suppress,
        description=str(meta.get("description") or ""),
        meta=meta,
    )


def load_rules(*dirs: Path | None, only: list[str] | None = None) -> list[Rule]:
    """Builtin rules, then each extra directory's (a user rule with a builtin id replaces it)."""
    rules: dict[str, Rule] = {}
    for d in (builtin_rules_dir(), *dirs):
        if d is None or not Path(d).is_dir():
            continue
        for path in sorted(Path(d).glob("*.sql")):
            r = parse_rule(path)
            rules[r.id] = r
    out = list(rules.values())
    if only:
        unknown = set(only) - {r.id for r in out}
        if unknown:
            raise RuleError(f"no such rule: {', '.join(sorted(unknown))}")
        out = [r for r in out if r.id in only]
    return out
