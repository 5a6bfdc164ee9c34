"""Which rules a tool call trips: the shared tool-call screening (collector.toolcalls, the code the
analyzer's enrichment runs) mapped onto the analyzer's rule ids, so a policy names the same rules
the findings do and a call is judged identically before the agent runs it and after the fact.

The kind -> rule mapping mirrors the rule files in analyzer/rules (ac1-download-exec selects
download_exec, base64_exec and reverse_shell; ac1-install-source install_url and custom_index from
sources that are not trusted package sources; ...), and execution strength is decided by the same
`is_execution` with the same catalog tests the enrichment passes. Only indicators in text the call
would *run* count: a `curl … | sh` inside a file being written is not executed by writing it; but
the written file is remembered (`WrittenFiles`), and a later call that runs it trips
ac1-written-then-run, the payload split over two calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from collector.policy.model import ToolCall

# indicator kind (collector.toolcalls) -> rule id (analyzer/rules/<id>.sql)
RULE_OF_KIND: dict[str, str] = {
    "download_exec": "ac1-download-exec",
    "base64_exec": "ac1-download-exec",
    "reverse_shell": "ac1-download-exec",
    "credential_exfil": "ac1-credential-exfil",
    "secret_sent": "ac1-credential-exfil",
    "persistence": "ac1-persistence",
    "install_url": "ac1-install-source",
    "custom_index": "ac1-install-source",
    "credential_read": "ac1-credential-access",
    "env_file_read": "ac1-credential-access",
    "env_dump": "ac1-credential-access",
}
# kinds whose rule requires execution strength (the others are selected by kind and context alone)
_NEEDS_EXECUTION = {"install_url", "custom_index", "secret_sent"}
PAYLOAD_KINDS = frozenset({"download_exec", "base64_exec", "reverse_shell", "credential_exfil", "persistence"})
_WHAT = {
    "download_exec": "downloads and runs code",
    "base64_exec": "decodes and runs hidden code",
    "reverse_shell": "opens a reverse shell",
    "credential_exfil": "reads credentials and sends them off the host",
    "secret_sent": "sends a secret off the host",
    "persistence": "plants persistence",
    "install_url": "installs a package from a URL",
    "custom_index": "installs from an unknown package index",
    "credential_read": "reads a credential store",
    "env_file_read": "reads a .env file",
    "env_dump": "prints the environment",
}
MAX_DETAIL = 160
TYPOSQUAT_MAX_DISTANCE = 2  # the catalog's `typosquat_max_distance` setting overrides it
WRITTEN_RUN_WINDOW_S = 3600.0  # the catalog's `written_run_window_s` setting overrides it


def _short(text: str | None) -> str:
    t = " ".join((text or "").split())
    return t if len(t) <= MAX_DETAIL else t[: MAX_DETAIL - 1] + "…"


def _base(path: str | None) -> str:
    return (path or "").rstrip("/").rsplit("/", 1)[-1]


class WrittenFiles:
    """Files earlier calls wrote a payload into, per agent (and session), for a window: the first half
    of a payload split over two calls. Thread-safe; the hook keeps one per process invocation and
    persists it through `state()` / `load()`."""

    def __init__(self, window_s: float = WRITTEN_RUN_WINDOW_S):
        self.window_s = window_s
        self._lock = threading.Lock()
        self._files: dict[tuple[str, str], tuple[float, str, str, str | None]] = {}  # (scope, base) -> ts, kind, detail, host

    def note(self, scope: str, base: str, kind: str, detail: str, host: str | None, now: float | None = None) -> None:
        with self._lock:
            self._files[(scope, base)] = (now or time.time(), kind, detail, host)

    def find(self, scope: str, base: str, now: float | None = None) -> tuple[str, str, str | None] | None:
        now = now or time.time()
        with self._lock:
            hit = self._files.get((scope, base))
            if hit is None or now - hit[0] > self.window_s:
                return None
            return hit[1], hit[2], hit[3]

    def state(self, now: float | None = None) -> list[list]:
        now = now or time.time()
        with self._lock:
            return [[s, b, *v] for (s, b), v in self._files.items() if now - v[0] <= self.window_s]

    def load(self, rows: list[list]) -> None:
        with self._lock:
            for s, b, ts, kind, detail, host in rows:
                self._files[(s, b)] = (ts, kind, detail, host)


def rule_hits(call: ToolCall, known_source: Callable[..., bool] | None = None,
              known_host: Callable[[str], bool] | None = None, max_distance: int = TYPOSQUAT_MAX_DISTANCE,
              written: WrittenFiles | None = None, scope: str = "") -> list[tuple[str, str, str]]:
    """(rule id, reason, detail) for every rule `call` trips. `known_source(host, url)` trusts a package
    source (the catalog's package sources), `known_host(host)` a destination (the allowlist): the tests
    the analyzer's enrichment passes to `is_execution`. The reason says what the call would do and
    where to, never the command itself (the agent reads it); the detail is the fragment, for the store.
    With `written`, payloads written to files are remembered for `scope` and running one is a hit."""
    from collector.toolcalls import analyze_tool_call, check_package, is_execution

    a = analyze_tool_call(call.name, call.arguments)
    out: list[tuple[str, str, str]] = []
    mine: dict[str, tuple[str, str, str | None]] = {}  # files this call writes a payload into
    for ind in a.indicators:
        if getattr(ind, "context", "command") == "written" and ind.kind in PAYLOAD_KINDS and getattr(ind, "path", None):
            mine[_base(ind.path)] = (ind.kind, _short(ind.detail), ind.host)
            if written is not None:
                written.note(scope, _base(ind.path), ind.kind, _short(ind.detail), ind.host)
    for ind in a.indicators:
        context = getattr(ind, "context", "command")
        if ind.kind == "runs_file" and context == "command":
            base = _base(ind.detail)
            same = mine.get(base)  # written and run by this very call: the payload's own rule
            hit = same or (written.find(scope, base) if written is not None else None)
            if hit is not None:
                kind, detail, host = hit
                where = f" from {host}" if host else ""
                what = _WHAT.get(kind, kind)
                if same:
                    out.append((RULE_OF_KIND[kind], f"the call writes {base} and runs it: it {what}{where}", detail))
                else:
                    out.append(("ac1-written-then-run", f"the call runs {base}, which an earlier call wrote with code "
                                f"that {what}{where}", f"{_short(ind.detail)}: {detail}"))
            continue
        rule = RULE_OF_KIND.get(ind.kind)
        if rule is None or context != "command":
            continue
        if ind.kind in _NEEDS_EXECUTION and not is_execution(ind, known_source, known_host):
            continue
        where = f" from {ind.host}" if ind.host and ind.kind != "secret_sent" else f" to {ind.host}" if ind.host else ""
        out.append((rule, f"the call {_WHAT.get(ind.kind, ind.kind)}{where}", _short(ind.detail)))
    for inst in a.installs:
        v = check_package(inst.manager, inst.package, max_distance)
        if not v.popular and v.nearest is not None and v.distance is not None and v.distance <= max_distance:
            out.append(("ac1a-typosquat-install",
                        f"the call installs {inst.manager} package {inst.package!r}, a near-miss of the popular {v.nearest!r}",
                        inst.spec))
    return list(dict.fromkeys(out))
