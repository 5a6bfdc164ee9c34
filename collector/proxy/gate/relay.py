"""The relay's router-to-agent direction when the gate is on: the router's bytes go to the connection
gate, the calls it completes are judged, and the agent gets what the gate lets through.

The tap (collector.proxy.tap) still sees exactly what the router sent, so the store keeps the
evidence (the injected call) while the agent never receives it; decisions reach the sink before the
tap reports the exchange they belong to, so the recorder can link them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from collector.policy.judge import Context, Judge, judge_for
from collector.policy.policy import Policy
from collector.proxy.gate import judge_pending
from collector.proxy.gate.conn import ConnGate, Judged
from collector.proxy.server import READ_SIZE, half_close


@dataclass
class GateSetup:
    """What the proxy needs to gate connections: the judge (policy + screening) and how to name the
    router and the agent of a connection for the policy and the block message."""

    judge: Judge
    router_names: Callable[[str, int], tuple[str, tuple[str, ...]]] = field(default=lambda host, port: (
        host if port == 443 else f"{host}:{port}", (host, f"{host}:{port}")))
    agent_of: Callable[[int | None], str | None] = field(default=lambda pid: None)

    def context(self, host: str, port: int, pid: int | None) -> Context:
        label, names = self.router_names(host, port)
        return Context(router=label, agent=self.agent_of(pid), router_names=names)


class GateTap:
    """A tap that also shows the agent's bytes to the gate; everything else is the wrapped tap's."""

    def __init__(self, tap, gate: ConnGate):  # noqa: ANN001 - Http1Tap | H2Tap
        self._tap = tap
        self._gate = gate

    def client_data(self, data: bytes, ts: float) -> None:
        self._gate.client_data(data)
        self._tap.client_data(data, ts)

    def server_data(self, data: bytes, ts: float) -> None:
        self._tap.server_data(data, ts)

    def close(self, ts: float) -> None:
        self._tap.close(ts)

    @property
    def error(self) -> str | None:
        return self._tap.error


async def gated_pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, gate: ConnGate,
                     feed: Callable[[bytes, float], None] | None, counted: Callable[[int], None],
                     judged: Callable[[list[Judged]], None], abort: Callable[[], None]) -> None:
    """Router -> agent through `gate`. `counted(n)` counts router bytes, `judged` receives decisions,
    `abort()` ends both legs when the gate fails closed."""

    async def settle() -> None:
        if gate.pending():
            await judge_pending(gate)
        out = gate.take_out()
        if out:
            dst.write(out)
        done = gate.take_judged()
        if done:
            judged(done)

    try:
        while True:
            data = await src.read(READ_SIZE)
            if not data:
                break
            ts = time.time()
            gate.server_data(data)
            await settle()
            counted(len(data))
            if feed is not None:
                feed(data, ts)
            await dst.drain()
            if gate.close_agent:
                abort()
                return
        gate.server_eof()
        await settle()
        with contextlib.suppress(Exception):
            await dst.drain()
        if gate.close_agent:
            abort()
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        half_close(dst)


def agent_of_pid(pid: int | None, _cache: dict = {}) -> str | None:  # noqa: B006 - a deliberate per-process cache
    """The agent a connecting process is (routerwatch inventory's names), looking at it and its parent."""
    from collector.inventory.agents import agent_of

    if pid is None:
        return None
    if pid in _cache:
        return _cache[pid]
    found = None
    p: int | None = pid
    for _ in range(2):
        if not p:
            break
        try:
            argv = [a.decode("utf-8", "replace") for a in open(f"/proc/{p}/cmdline", "rb").read().split(b"\0") if a]
            exe = os.readlink(f"/proc/{p}/exe")
            stat = open(f"/proc/{p}/stat").read()
        except OSError:
            break
        found = agent_of(exe, argv)
        if found:
            break
        p = int(stat[stat.rfind(")") + 2 :].split()[1])
    if len(_cache) > 4096:
        _cache.clear()
    _cache[pid] = found
    return found


def build_gate(policy: Policy, catalog=None) -> GateSetup:  # noqa: ANN001 - collector.catalog.Catalog
    """The proxy's gate for `policy`; with the catalog, routers are named as the analyzer names them and
    its trusted package sources and allowlist are the judge's."""
    judge = judge_for(policy, catalog)
    if catalog is None:
        return GateSetup(judge, agent_of=agent_of_pid)
    return GateSetup(judge, router_names=catalog.router_names, agent_of=agent_of_pid)
