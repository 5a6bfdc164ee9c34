"""`routerwatch policy test FILE`: what a policy would have done to the tool calls already stored.

Every response tool call in the store (`tool_calls`, direction 'response') is judged with the
policy, the catalog and the screening the proxy and the hook use, naming the router and the agent as
they would (router: the exchange's host; agent: the process the exchange belongs to). Read-only:
nothing is written. Stored arguments are already redacted; secrets never matter to the rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.policy.judge import Context, Judge
from collector.policy.model import ToolCall

QUERY = """
SELECT t.ts, t.exchange_id, t.idx, t.name, t.arguments, e.api, e.host, e.pid, p.exe, p.cmdline
FROM tool_calls t
JOIN llm_exchanges e USING (exchange_id)
LEFT JOIN (SELECT host_id, pid, arg_max(exe, ts) AS exe, arg_max(cmdline, ts) AS cmdline
           FROM processes GROUP BY host_id, pid) p ON p.host_id = e.host_id AND p.pid = e.pid
WHERE coalesce(t.direction, 'response') = 'response' {since}
ORDER BY t.ts, t.exchange_id, t.idx
"""


@dataclass
class Judged:
    ts: object
    exchange_id: str
    idx: int
    router: str
    agent: str | None
    tool: str | None
    action: str
    rule: str | None
    reason: str


def _agent(exe: str | None, cmdline: str | None) -> str | None:
    from collector.inventory.agents import agent_of

    if not exe and not cmdline:
        return None
    return agent_of(exe, (cmdline or "").split())


def dry_run(store, judge: Judge, catalog, since: str | None = None) -> list[Judged]:  # noqa: ANN001
    """Judge every stored response tool call; `since` is an SQL timestamp bound (inclusive)."""
    from collector.catalog import split_host_port

    cond, params = ("AND t.ts >= CAST(? AS TIMESTAMP)", [since]) if since else ("", [])
    rows = store.sql(QUERY.format(since=cond), params).fetchall()
    out: list[Judged] = []
    for ts, xid, idx, name, args, api, host, _pid, exe, cmdline in rows:
        h, port = split_host_port(host or "unknown")
        label, names = catalog.router_names(h, port or 443)
        ctx = Context(router=label, agent=_agent(exe, cmdline), router_names=names)
        v = judge(ToolCall(name, args or "", api, None, idx or 0), ctx)
        out.append(Judged(ts, xid, idx, label, ctx.agent, name, v.action, v.rule, v.reason))
    return out
