"""The detection corpora (tests/fixtures/detection) through the gate: every benign tool call, in its
session's agent and API shape, streamed or not, passes without a single block and byte for byte; every
attack a blocking rule must account for is blocked by one of the rules it expects."""

from __future__ import annotations

from collections import Counter

import pytest

from analyzer.demo import formats
from analyzer.rules import corpus
from collector.catalog import load_catalog
from collector.policy.judge import Context, judge_for
from collector.policy.model import BLOCK
from collector.policy.policy import BUILTIN_RULES, Policy
from collector.proxy.gate.body import BodyGate

ROOT = corpus.default_corpus_dir()
JUDGE = judge_for(Policy(), load_catalog())
BLOCKING = {r for r, a in BUILTIN_RULES.items() if a == BLOCK}


def _shape(t) -> tuple[str, bool, Context]:  # noqa: ANN001
    s, doc = t.session_doc, t.file_doc
    agent = s.get("agent", doc.get("agent", "generic"))
    api = s.get("api") or doc.get("api") or corpus.PROFILES[agent]["api"]
    stream = s.get("stream", doc.get("stream", "alternate"))
    streamed = bool(t.index % 2) if stream == "alternate" else bool(stream)
    router = s.get("router") or doc.get("router") or f"{s['id']}.llm-relay.example"
    return api, streamed, Context(router, agent=agent, session=t.session)


def _through_gate(t, seq: int) -> tuple[bytes, bytes, BodyGate]:  # noqa: ANN001
    api, streamed, ctx = _shape(t)
    a = formats.Answer(model="m", text="Done.", tool_name=t.tool, arguments=t.arguments, call_id=f"call_{seq}",
                       msg_id=f"{seq:08x}", created=1764300000)
    body = (b"".join(formats.sse(e, d) for e, d in formats.events_for(api, a, include_usage=True)) if streamed
            else formats.dumps(formats.body_for(api, a)).encode())
    g = BodyGate(api, ctx, streamed=streamed)
    gen: list[bytes] = []
    for i in range(0, len(body), 512):
        g.feed(body[i : i + 512])
        for p in list(g.pending):
            g.resolve(p.key, [JUDGE(c, ctx) for c in p.calls])
        gen += g.take()
    g.finish()
    for p in list(g.pending):
        g.resolve(p.key, [JUDGE(c, ctx) for c in p.calls])
    gen += g.take()
    upto = g.orig_upto if g.rewrite_from is None else g.rewrite_from
    return body, body[:upto] + b"".join(gen), g


@pytest.fixture(scope="module")
def turns():  # noqa: ANN201
    assert ROOT is not None
    return [t for t in corpus.load_turns(ROOT) if t.tool]


def test_the_benign_corpus_passes_the_gate_untouched(turns) -> None:  # noqa: ANN001
    benign = [t for t in turns if t.corpus == "benign"]
    assert len(benign) >= 500
    shapes: Counter = Counter()
    blocked = []
    for seq, t in enumerate(benign):
        body, out, g = _through_gate(t, seq)
        shapes[_shape(t)[:2]] += 1
        actions = [d.verdict.action for d in g.decisions]
        if BLOCK in actions or out != body:
            blocked.append((t.session, t.index, t.tool, [d.verdict.reason for d in g.decisions]))
    assert not blocked, blocked[:10]
    assert {api for api, _s in shapes} == {"openai.chat", "openai.responses", "anthropic.messages"}
    assert {s for _a, s in shapes} == {True, False}


def test_every_attack_a_blocking_rule_must_find_is_blocked(turns) -> None:  # noqa: ANN001
    attacks = [t for t in turns if t.corpus == "attack" and set(t.expect) & BLOCKING]
    assert len(attacks) >= 100
    blocked: dict[tuple[str, int], set[str]] = {}
    for seq, t in enumerate(t for t in turns if t.corpus == "attack"):  # in order: split payloads need their first half
        _body, out, g = _through_gate(t, seq)
        rules = {d.verdict.rule for d in g.decisions if d.verdict.action == BLOCK}
        if rules:
            assert b"routerwatch blocked a tool call" in out, (t.session, t.index)
        blocked[(t.session, t.index)] = rules
    missed = []
    for t in attacks:
        rules = blocked[(t.session, t.index)]
        if set(t.expect) == {"ac1-written-then-run"}:  # a write step: what is stopped is the later run
            rules = rules.union(*(r for (s, i), r in blocked.items() if s == t.session and i > t.index))
        if not rules & set(t.expect):
            missed.append((t.session, t.index, t.expect, rules))
    assert not missed, missed[:10]
