"""Which rules a tool call trips: the shared tool-call screening (collector.toolcalls, the code the
analyzer's enrichment runs) mapped onto the analyzer's rule ids, so a policy names the same rules
the findings do and a call is judged identically before the agent runs it and after the fact.

The kind -> rule mapping mirrors the rule files in analyzer/rules (ac1-download-exec selects
download_exec, base64_exec and reverse_shell; ac1-install-source install_url and custom_index from
hosts outside the allowlist; ...). Only indicators in text the call would run count (`context`
command): a `curl … | sh` inside a file being written is not executed by writing it.
"""

from __future__ import annotations

from collections.abc import Callable

from collector.policy.model import ToolCall

# indicator kind (collector.toolcalls) -> rule id (analyzer/rules/<id>.sql)
RULE_OF_KIND: dict[str, str] = {
    "download_exec": "ac1-download-exec",
    "base64_exec": "ac1-download-exec",
    "reverse_shell": "ac1-download-exec",
    "credential_exfil": "ac1-credential-exfil",
    "persistence": "ac1-persistence",
    "install_url": "ac1-install-source",
    "custom_index": "ac1-install-source",
    "credential_read": "ac1-credential-access",
    "env_file_read": "ac1-credential-access",
    "env_dump": "ac1-credential-access",
}
_WHAT = {
    "download_exec": "downloads and runs code",
    "base64_exec": "decodes and runs hidden code",
    "reverse_shell": "opens a reverse shell",
    "credential_exfil": "reads credentials and sends them off the host",
    "persistence": "plants persistence",
    "install_url": "installs a package from a URL",
    "custom_index": "installs from an unknown package index",
    "credential_read": "reads a credential store",
    "env_file_read": "reads a .env file",
    "env_dump": "prints the environment",
}
MAX_DETAIL = 160
TYPOSQUAT_MAX_DISTANCE = 2  # the catalog's `typosquat_max_distance` setting overrides it


def _short(text: str | None) -> str:
    t = " ".join((text or "").split())
    return t if len(t) <= MAX_DETAIL else t[: MAX_DETAIL - 1] + "…"


def rule_hits(call: ToolCall, known_source: Callable[[str], bool] | None = None,
              max_distance: int = TYPOSQUAT_MAX_DISTANCE) -> list[tuple[str, str, str]]:
    """(rule id, reason, detail) for every rule `call` trips; `known_source(host)` is the allowlist
    test (installs from allowlisted hosts are not `ac1-install-source`). The reason says what the
    call would do and where to, never the command itself (the agent reads it); the detail is the
    matching fragment, for the store."""
    from collector.toolcalls import analyze_tool_call, check_package, is_execution

    a = analyze_tool_call(call.name, call.arguments)
    out: list[tuple[str, str, str]] = []
    for ind in a.indicators:
        rule = RULE_OF_KIND.get(ind.kind)
        if rule is None or getattr(ind, "context", "command") != "command":
            continue
        if ind.kind in ("install_url", "custom_index") and not is_execution(ind, known_source):
            continue
        where = f" from {ind.host}" if ind.host else ""
        out.append((rule, f"the call {_WHAT.get(ind.kind, ind.kind)}{where}", _short(ind.detail)))
    for inst in a.installs:
        v = check_package(inst.manager, inst.package, max_distance)
        if not v.popular and v.nearest is not None and v.distance is not None and v.distance <= max_distance:
            out.append(("ac1a-typosquat-install",
                        f"the call installs {inst.manager} package {inst.package!r}, a near-miss of the popular {v.nearest!r}",
                        inst.spec))
    return list(dict.fromkeys(out))
