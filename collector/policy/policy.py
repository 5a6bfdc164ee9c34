"""The gate's policy: which rules block and which only record, per agent and per router.

A YAML file (`--policy FILE`, else $ROUTERWATCH_POLICY, else `policy.yaml` beside the store, else
the builtin defaults below). Hosts and package indexes that are trusted are not listed here: they
are the catalog's allowlist (collector.catalog), one list for the analyzer and the gate.

    rules:                       # rule id -> block | record  (unlisted rules: `default`)
      ac1-download-exec: block
      ac1-credential-access: record
    default: record
    unjudged: block              # a response the gate cannot parse, or cannot judge in time
    judge_timeout: 2             # seconds
    overrides:                   # applied in order, later ones win; match on agent and/or router
      - agent: codex             # agent name (routerwatch inventory's names), glob
        rules: {ac1-install-source: record}
      - router: "*.corp.example" # router: catalog name or host[:port], glob
        unjudged: allow
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from collector.policy.model import ALLOW, BLOCK, RECORD, TIMEOUT, UNPARSEABLE, Hit, Verdict, strongest

POLICY_ENV = "ROUTERWATCH_POLICY"
POLICY_FILE = "policy.yaml"
DEFAULT_TIMEOUT = 2.0

# Execution-strength evidence blocks; a read whose output only returns to the model is recorded.
BUILTIN_RULES: dict[str, str] = {
    "ac1-download-exec": BLOCK,  # download-and-execute, decode-and-execute, reverse shell
    "ac1-credential-exfil": BLOCK,  # credential read plus upload
    "ac1-install-source": BLOCK,  # install from a URL or an index outside the allowlist
    "ac1-persistence": BLOCK,  # cron, systemd, authorized_keys, shell rc payloads
    "ac1-written-then-run": BLOCK,  # runs a file an earlier call wrote a payload into
    "ac1a-typosquat-install": BLOCK,  # a near-miss of a popular package
    "ac1-credential-access": RECORD,  # reads a credential store or dumps the environment
    UNPARSEABLE: BLOCK,
    TIMEOUT: BLOCK,
}
_TOP_KEYS = {"rules", "default", "unjudged", "judge_timeout", "overrides", "version"}
_OVERRIDE_KEYS = {"agent", "router", "rules", "unjudged"}


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Override:
    agent: str | None
    router: str | None
    rules: dict[str, str]
    unjudged: str | None

    def matches(self, agent: str | None, routers: tuple[str, ...]) -> bool:
        if self.agent is not None and not (agent and fnmatch.fnmatchcase(agent.lower(), self.agent.lower())):
            return False
        if self.router is not None and not any(fnmatch.fnmatchcase(r.lower(), self.router.lower()) for r in routers if r):
            return False
        return True


@dataclass(frozen=True)
class Policy:
    rules: dict[str, str] = field(default_factory=lambda: dict(BUILTIN_RULES))
    default: str = RECORD
    unjudged: str = BLOCK  # block (fail closed) | allow
    judge_timeout: float = DEFAULT_TIMEOUT
    overrides: tuple[Override, ...] = ()
    source: str = "builtin"

    @property
    def digest(self) -> str:
        """A short id of the policy's content (stored with each decision)."""
        body = json.dumps({"rules": self.rules, "default": self.default, "unjudged": self.unjudged,
                           "timeout": self.judge_timeout,
                           "overrides": [o.__dict__ for o in self.overrides]}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:12]

    def allowing_unjudged(self) -> Policy:
        """This policy with `unjudged: allow` everywhere (`--gate-fail-open`)."""
        import dataclasses

        return dataclasses.replace(self, unjudged=ALLOW, overrides=tuple(
            dataclasses.replace(o, unjudged=None) for o in self.overrides))

    def action(self, rule: str, agent: str | None = None, routers: tuple[str, ...] = ()) -> str:
        """What this policy does when `rule` matches a call of `agent` from one of `routers`'s names."""
        base = self.unjudged if rule in (UNPARSEABLE, TIMEOUT) else self.rules.get(rule, self.default)
        act = base
        for o in self.overrides:
            if o.matches(agent, routers):
                if rule in (UNPARSEABLE, TIMEOUT) and o.unjudged:
                    act = o.unjudged
                act = o.rules.get(rule, act)
        return act

    def decide(self, hits: list[tuple[str, ...]], agent: str | None = None, routers: tuple[str, ...] = ()) -> Verdict:
        """(rule, reason[, detail]) tuples -> the verdict under this policy."""
        return strongest([Hit(h[0], h[1], self.action(h[0], agent, routers), h[2] if len(h) > 2 else "")
                          for h in hits])

    def unjudged_verdict(self, rule: str, reason: str, agent: str | None = None, routers: tuple[str, ...] = ()) -> Verdict:
        """What happens to a response (or hook input) the gate could not judge: `unjudged` (block | allow)."""
        act = self.action(rule, agent, routers)
        return Verdict(act, (Hit(rule, reason, act),))


def _action(value: Any, where: str, allowed: tuple[str, ...] = (BLOCK, RECORD)) -> str:
    if not isinstance(value, str) or value.lower() not in allowed:
        raise PolicyError(f"{where}: expected one of {', '.join(allowed)}, got {value!r}")
    return value.lower()


def _rules(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PolicyError(f"{where}: expected a mapping of rule id -> block | record")
    return {str(k): _action(v, f"{where}.{k}") for k, v in value.items()}


def parse(data: Any, source: str = "<policy>") -> Policy:
    """A policy mapping (as loaded from YAML) -> Policy, validated; PolicyError names what is wrong."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: expected a mapping at the top level")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise PolicyError(f"{source}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_TOP_KEYS))})")
    rules = {**BUILTIN_RULES, **_rules(data.get("rules"), f"{source}: rules")}
    default = _action(data.get("default", RECORD), f"{source}: default")
    unjudged = _action(data.get("unjudged", BLOCK), f"{source}: unjudged", (BLOCK, ALLOW))
    timeout = data.get("judge_timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 60:
        raise PolicyError(f"{source}: judge_timeout: expected seconds between 0 and 60, got {timeout!r}")
    overrides: list[Override] = []
    raw = data.get("overrides") or []
    if not isinstance(raw, list):
        raise PolicyError(f"{source}: overrides: expected a list")
    for i, o in enumerate(raw):
        where = f"{source}: overrides[{i}]"
        if not isinstance(o, dict):
            raise PolicyError(f"{where}: expected a mapping")
        bad = set(o) - _OVERRIDE_KEYS
        if bad:
            raise PolicyError(f"{where}: unknown key(s) {', '.join(sorted(bad))}")
        if "agent" not in o and "router" not in o:
            raise PolicyError(f"{where}: needs `agent` or `router` (or both)")
        for k in ("agent", "router"):
            if k in o and not isinstance(o[k], str):
                raise PolicyError(f"{where}: {k}: expected a name or glob")
        overrides.append(Override(o.get("agent"), o.get("router"), _rules(o.get("rules"), f"{where}: rules"),
                                  _action(o["unjudged"], f"{where}: unjudged", (BLOCK, ALLOW)) if "unjudged" in o else None))
    return Policy(rules, default, unjudged, float(timeout), tuple(overrides), source)


def policy_path(store_root: Path | None, flag: str | os.PathLike | None = None) -> Path | None:
    """Where the policy comes from: the flag, $ROUTERWATCH_POLICY, `policy.yaml` beside the store."""
    if flag:
        return Path(flag)
    env = os.environ.get(POLICY_ENV)
    if env:
        return Path(env)
    if store_root is not None:
        return store_root / POLICY_FILE
    return None


def load_policy(path: str | os.PathLike | None = None, *, store_root: Path | None = None) -> Policy:
    """The policy in force: `path` (must exist), else $ROUTERWATCH_POLICY (must exist), else
    `policy.yaml` beside the store if present, else the builtin defaults."""
    explicit = path is not None or bool(os.environ.get(POLICY_ENV))
    p = policy_path(store_root, path)
    if p is None or (not explicit and not p.is_file()):
        return Policy()
    try:
        text = p.read_text()
    except OSError as exc:
        raise PolicyError(f"{p}: cannot read the policy ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return parse(data, str(p))

