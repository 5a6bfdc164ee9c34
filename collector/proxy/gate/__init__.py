"""The policy gate of proxy mode (`routerwatch wrap --proxy --enforce`): responses are screened
before the agent sees them, and a tool call that trips a blocking rule never reaches it.

    gate = connection_gate("h2" | "http/1.1", judge, ctx)   # one per proxied connection
    gate.client_data(bytes)        # the agent's bytes (they go upstream unchanged)
    gate.server_data(bytes)        # the router's bytes
    await judge_pending(gate, t)   # judge the calls that completed (policy time limit t)
    agent_bytes = gate.take_out()  # what the agent gets now
    gate.take_judged()             # decisions, for the store

Layers: body.py (one response: hold, release, replace), apis.py (the three APIs' formats),
sse.py (events with byte spans), http1.py / http2.py / websocket.py (framing), encoding.py.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from collector.policy.judge import Context, Judge
from collector.policy.model import TIMEOUT, UNPARSEABLE, Verdict
from collector.proxy.gate.conn import ConnGate, Judged

__all__ = ["ConnGate", "Judged", "connection_gate", "judge_pending", "judge_pending_sync"]

# Long arguments are judged off the event loop, so a slow judgement cannot stall other connections and
# the time limit can cut it off, in a pool of its own so the proxy's other executor work (process
# attribution) never waits behind it. Short ones (nearly all: a shell command, a path) are judged in
# the loop: ~0.2 ms of CPU, bounded by their size, where a hop to a thread and back costs two
# scheduler wake-ups (tens of ms at p99 on a busy machine); one that still overruns the limit is
# treated exactly like a timeout.
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="routerwatch-gate")
INLINE_MAX = 4096  # characters of arguments judged in the event loop


def connection_gate(alpn: str, judge: Judge, ctx: Context) -> ConnGate:
    if alpn == "h2":
        from collector.proxy.gate.http2 import H2Gate

        return H2Gate(judge, ctx)
    from collector.proxy.gate.http1 import Http1Gate

    return Http1Gate(judge, ctx)


def _verdict(judge: Judge, ctx: Context, call, timed_out: bool = False, exc: Exception | None = None) -> Verdict:  # noqa: ANN001
    if timed_out:
        return judge.unjudged(TIMEOUT, f"the call was not judged within {judge.policy.judge_timeout:g} s", ctx)
    return judge.unjudged(UNPARSEABLE, f"the judge failed ({type(exc).__name__})", ctx)


async def judge_pending(gate: ConnGate) -> None:
    """Judge every call the gate is waiting for (each within the policy's judge_timeout; a call not
    judged in time gets the policy's `unjudged` verdict: blocked unless the user chose otherwise)."""
    loop = asyncio.get_running_loop()
    judge, ctx = gate.judge, gate.ctx
    timeout = judge.policy.judge_timeout
    while True:
        items = gate.pending()
        if not items:
            return
        for bg, p in items:
            verdicts = []
            for call in p.calls:
                try:
                    if len(call.arguments) <= INLINE_MAX:
                        t0 = time.monotonic()
                        v = judge(call, ctx)
                        if time.monotonic() - t0 > timeout:
                            v = _verdict(judge, ctx, call, timed_out=True)
                    else:
                        v = await asyncio.wait_for(loop.run_in_executor(_POOL, judge, call, ctx), timeout)
                except TimeoutError:
                    v = _verdict(judge, ctx, call, timed_out=True)
                except Exception as exc:  # a judge that raises decides nothing: unjudged
                    v = _verdict(judge, ctx, call, exc=exc)
                verdicts.append(v)
            gate.resolve(bg, p.key, verdicts)
        gate.pump()


def judge_pending_sync(gate: ConnGate) -> None:
    """The same from synchronous code (tests, tools): its own event loop, the same rules."""
    asyncio.run(judge_pending(gate))
