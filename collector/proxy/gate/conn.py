"""What every connection-level gate shares: the judge, the bodies it opened, the decisions it made,
and the bytes it lets through to the agent.

A connection gate sees both directions of one proxied connection. The client's bytes go upstream
unchanged (the gate only learns which request each response answers); the router's bytes go to
the gate, and what the agent gets is `take_out()`. Judging is the driver's job (collector.proxy.gate
`judge_pending`, with the policy's time limit): a gate lists the calls waiting in `pending()` and
produces more output once they are resolved (`pump()`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from collector.policy.judge import Context, Judge
from collector.policy.model import UNPARSEABLE, Verdict
from collector.proxy.gate.apis import TOOL_APIS
from collector.proxy.gate.body import BodyGate, Decision, Pending


@dataclass
class Judged:
    """A decision and the exchange it belongs to (`key`: ('h1', n) the n-th request on the connection,
    ('h2', stream id)), with when it was made and how long the call was held."""

    key: tuple
    decision: Decision
    ts: float
    held_ms: float | None = None
    router: str | None = None
    agent: str | None = None
    policy: str | None = None  # the policy's digest


def tool_api(method: str, path: str) -> str | None:
    """The LLM API whose responses can carry tool calls the agent runs, from the request line (the
    path rules of collector.llm.pipeline.classify, restricted to the gated APIs)."""
    if method.upper() != "POST":
        return None
    p = path.split("?", 1)[0].rstrip("/")
    if p.endswith("/chat/completions"):
        return "openai.chat"
    if p.endswith("/responses"):
        return "openai.responses"
    if p.endswith("/messages"):
        return "anthropic.messages"
    return None


class ConnGate:
    def __init__(self, judge: Judge, ctx: Context):
        self.judge = judge
        self.ctx = ctx
        self.out = bytearray()
        self.judged: list[Judged] = []
        self.close_agent = False  # fail closed: end the agent's connection once `out` is sent
        self.error: str | None = None
        self._bodies: dict[tuple, tuple[BodyGate, float]] = {}

    # -- bodies ---------------------------------------------------------------------------------
    def new_body(self, key: tuple, api: str, *, streamed: bool, model: str | None = None, fit: bool = False,
                 exact: bool = False, messages: bool = False) -> BodyGate:
        assert api in TOOL_APIS
        bg = BodyGate(api, self.ctx, streamed=streamed, model=model, fit=fit, exact=exact, messages=messages,
                      unjudged=lambda reason: self.judge.unjudged(UNPARSEABLE, reason, self.ctx))
        self._bodies[key] = (bg, time.monotonic())
        return bg

    def body_done(self, key: tuple) -> None:
        self._collect(key)
        self._bodies.pop(key, None)

    def pending(self) -> list[tuple[BodyGate, Pending]]:
        return [(bg, p) for bg, _t in self._bodies.values() for p in list(bg.pending)]

    def resolve(self, bg: BodyGate, key: Any, verdicts: list[Verdict]) -> None:
        bg.resolve(key, verdicts)

    def _collect(self, key: tuple) -> None:
        entry = self._bodies.get(key)
        if entry is None:
            return
        bg, t0 = entry
        now = time.time()
        for d in bg.decisions:
            self.judged.append(Judged(key, d, now, (time.monotonic() - t0) * 1000, self.ctx.router, self.ctx.agent,
                                      self.judge.policy.digest))
        bg.decisions.clear()

    def take_judged(self) -> list[Judged]:
        for key in list(self._bodies):
            self._collect(key)
        out, self.judged = self.judged, []
        return out

    def take_out(self) -> bytes:
        out = bytes(self.out)
        self.out.clear()
        return out

    # -- the relay's interface --------------------------------------------------------------------
    def client_data(self, data: bytes) -> None:
        raise NotImplementedError

    def server_data(self, data: bytes) -> None:
        raise NotImplementedError

    def server_eof(self) -> None:
        raise NotImplementedError

    def pump(self) -> None:
        """Produce whatever the verdicts resolved since the last call let through."""
        raise NotImplementedError
