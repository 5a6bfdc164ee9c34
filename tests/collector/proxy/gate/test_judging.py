"""Judging within the policy's time limit: a call not judged in time is blocked (gate-timeout) unless
the policy lets unjudged responses through; long arguments are judged off the event loop and cut off
at the limit, short ones in the loop and treated alike when they overrun."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from collector.policy.judge import Judge
from collector.policy.policy import parse
from collector.proxy.gate import INLINE_MAX, judge_pending
from collector.proxy.gate.http1 import Http1Gate
from tests.collector.proxy.gate.test_body import CTX
from tests.collector.proxy.gate.test_http1 import request


def slow(call):  # noqa: ANN001, ANN201
    time.sleep(1.5)
    return []


def answer(command: str) -> bytes:
    body = json.dumps({"id": "c", "object": "chat.completion", "model": "m", "choices": [{"index": 0, "finish_reason":
                       "tool_calls", "message": {"role": "assistant", "content": None, "tool_calls": [
                           {"id": "t", "type": "function", "function": {"name": "shell",
                                                                        "arguments": json.dumps({"command": command})}}]}}]})
    return f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body.encode()


@pytest.mark.parametrize(("command", "inline"), [("ls -la", True), ("x" * (INLINE_MAX + 10), False)])
@pytest.mark.parametrize("unjudged", ["block", "allow"])
def test_a_call_not_judged_in_time(command: str, inline: bool, unjudged: str) -> None:
    g = Http1Gate(Judge(parse({"judge_timeout": 0.3, "unjudged": unjudged}), hits=slow), CTX)
    g.client_data(request("/v1/chat/completions", b'{"model":"m"}'))
    g.server_data(answer(command))
    t0 = time.monotonic()
    asyncio.run(judge_pending(g))
    took = time.monotonic() - t0
    (j,) = g.take_judged()
    assert j.decision.verdict.rule == "gate-timeout"
    assert j.decision.verdict.action == ("block" if unjudged == "block" else "allow")
    out = json.loads(g.take_out().partition(b"\r\n\r\n")[2])
    msg = out["choices"][0]["message"]
    assert ("tool_calls" in msg) == (unjudged == "allow")
    if not inline:
        assert took < 1.2  # cut off at the limit, not after the judge finished
