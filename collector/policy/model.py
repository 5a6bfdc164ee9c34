"""What the gate judges and what it decides: one vocabulary for the proxy, the agent hook and the dry run.

A `ToolCall` is a tool call as the agent would receive it (name + the JSON arguments string); a
`Hit` is one rule that matched it, with why; a `Verdict` is the policy's answer (the strongest action
of the hits). Actions: `block` (the call never reaches the agent / the hook denies it), `record`
(passed, and the decision stored), `allow` (no rule matched).
"""

from __future__ import annotations

from dataclasses import dataclass, field

BLOCK, RECORD, ALLOW = "block", "record", "allow"
ACTIONS = (BLOCK, RECORD, ALLOW)
_RANK = {ALLOW: 0, RECORD: 1, BLOCK: 2}

# Rules the gate itself raises when it cannot judge (they obey the policy's `unjudged` setting).
UNPARSEABLE = "gate-unparseable"  # a response (or hook input) the gate cannot read
TIMEOUT = "gate-timeout"  # judging took longer than the policy's judge_timeout


@dataclass(frozen=True)
class ToolCall:
    """One tool call as the agent would run it."""

    name: str | None
    arguments: str  # JSON text (Codex's argv arrays, Claude Code's {"command": ...}, ...)
    api: str | None = None  # openai.chat | openai.responses | anthropic.messages | hook:<agent>
    call_id: str | None = None
    index: int = 0  # position among the response's tool calls


@dataclass(frozen=True)
class Hit:
    """A rule that matched a tool call (rule ids are the analyzer's, so findings and policy agree)."""

    rule: str
    reason: str  # one short line the agent and its user read (what the call would do, never the command)
    action: str = RECORD  # what the policy says for this rule here
    detail: str = ""  # the evidence (the matching command fragment), for the store only


@dataclass(frozen=True)
class Verdict:
    action: str  # block | record | allow
    hits: tuple[Hit, ...] = field(default=())

    @property
    def rule(self) -> str | None:
        """The rule that decided (the first hit with the verdict's action)."""
        for h in self.hits:
            if h.action == self.action:
                return h.rule
        return None

    @property
    def reason(self) -> str:
        deciding = [h for h in self.hits if h.action == self.action] or list(self.hits)
        return "; ".join(dict.fromkeys(h.reason for h in deciding)) or "no rule matched"

    @property
    def detail(self) -> str:
        deciding = [h for h in self.hits if h.action == self.action] or list(self.hits)
        return "; ".join(dict.fromkeys(h.detail for h in deciding if h.detail))

    @property
    def blocked(self) -> bool:
        return self.action == BLOCK


def strongest(hits: list[Hit] | tuple[Hit, ...]) -> Verdict:
    """The verdict of a set of hits: the strongest action wins; hits ordered strongest first."""
    ordered = tuple(sorted(hits, key=lambda h: -_RANK[h.action]))
    action = ordered[0].action if ordered else ALLOW
    return Verdict(action, ordered)
