"""Scenario suite on real traffic: the loopback router zoo driven by the real openai and anthropic SDKs,
captured with tcpdump, ingested with the agents' key log and analyzed (exactly `routerwatch demo`).
Each attack yields its finding with evidence ids; the honest router and benign tool calls yield none."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from analyzer.demo.run import run_demo
from collector.store import Store

pytestmark = pytest.mark.skipif(
    shutil.which("tcpdump") is None or os.geteuid() != 0,
    reason="needs tcpdump and root to capture loopback (CI has both)",
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    wd = tmp_path_factory.mktemp("demo")
    res = run_demo(wd / "store", wd, log=lambda m: None)
    with Store.open(str(wd / "store"), read_only=True) as st:
        cur = st.con.execute("SELECT * FROM findings")
        cols = [d[0] for d in cur.description]
        rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
        exchanges = {r[0]: r[1] for r in st.con.execute("SELECT exchange_id, host FROM llm_exchanges").fetchall()}
        flows = {r[0] for r in st.con.execute("SELECT flow_uid FROM flows").fetchall()}
        classes = dict(st.con.execute("SELECT exchange_id, router FROM exchange_classes").fetchall())
    return res, rows, exchanges, flows, classes


def of(rows, mode, res):
    return [f for f in rows if f["router"] == res.routers[mode]["name"]]


def rules(fs):
    return {f["rule_id"] for f in fs}


def test_agents_ran_and_exchanges_were_decoded(demo):
    res, rows, exchanges, flows, classes = demo
    for mode, a in res.agents.items():
        assert a["summary"].get("model_calls", 0) >= 1, (mode, a["stderr"])
    # every router's exchanges were decrypted and attributed to it
    assert {res.routers[m]["name"] for m in res.agents} <= set(classes.values())


def test_honest_router_and_benign_tool_calls_yield_nothing(demo):
    res, rows, *_ = demo
    assert of(rows, "honest", res) == []
    # the benign calls (curl of the JSON API, pip install requests, ls) ran through every router:
    for f in rows:
        ev = json.loads(f["evidence"])
        assert "requests" != ev.get("package"), f
        assert "data.json" not in json.dumps(ev), f


def test_every_finding_carries_evidence_ids(demo):
    res, rows, exchanges, flows, _ = demo
    assert rows
    for f in rows:
        assert f["exchange_id"] in exchanges, f
        assert f["flow_uid"] in flows, f
        assert f["dedup_key"] and f["rule_id"] and f["severity"]


def test_inject(demo):
    res, rows, *_ = demo
    fs = of(rows, "inject", res)
    assert {"ac1-download-exec", "egress-after-tool-call"} <= rules(fs)
    ex = next(f for f in fs if f["rule_id"] == "ac1-download-exec")
    assert "127.0.0.2" in json.loads(ex["evidence"])["hosts"][0]
    eg = next(f for f in fs if f["rule_id"] == "egress-after-tool-call")
    assert json.loads(eg["evidence"])["named_by_tool_call"] is True


def test_typosquat(demo):
    res, rows, *_ = demo
    ts = [f for f in of(rows, "typosquat", res) if f["rule_id"] == "ac1a-typosquat-install"]
    assert ts and json.loads(ts[0]["evidence"])["package"] == "reqeusts"


def test_conditional_flags_first_injected_exchange_and_router(demo):
    res, rows, exchanges, *_ = demo
    fs = of(rows, "conditional", res)
    cond = [f for f in fs if f["rule_id"] == "ac1b-conditional-injection"]
    assert len(cond) == 1
    ev = json.loads(cond[0]["evidence"])
    assert ev["clean_exchanges_before"] >= 2
    injected = sorted((f["ts"], f["exchange_id"]) for f in fs if f["rule_id"] == "ac1-download-exec")
    assert cond[0]["exchange_id"] == injected[0][1]  # the first injected exchange
    assert "fingerprint-mismatch" in rules(fs)  # provider name, LiteLLM headers


def test_secret_keeping(demo):
    res, rows, *_ = demo
    fs = of(rows, "secret-keeping", res)
    kinds = {json.loads(f["evidence"])["kind"] for f in fs if f["rule_id"] == "ac2-credential-to-router"}
    assert {"openai_api_key", "aws_access_key_id"} <= kinds
    can = [f for f in fs if f["rule_id"] == "canary-seen"]
    assert can and json.loads(can[0]["evidence"])["canary_id"] == res.canary_id
    # the router's own plain sk- key, sent to every router, is normal use
    assert not [f for f in rows if f["rule_id"] == "ac2-credential-to-router" and "sk_api_key" in f["summary"]]


def test_model_swap_and_stream_anomaly(demo):
    res, rows, *_ = demo
    assert "model-substitution" in rules(of(rows, "model-swap", res))
    assert "stream-anomaly" in rules(of(rows, "stream-anomaly", res))


def test_analyze_again_adds_nothing(demo):
    from analyzer.engine import analyze
    from analyzer.rules import load_rules
    from collector.catalog import load_catalog

    res, rows, *_ = demo
    with Store.open(str(res.store)) as st:
        again = analyze(st.con, load_catalog(st.location.root), load_rules())
    assert again.findings == []


@pytest.fixture(scope="module")
def live_demo(tmp_path_factory):
    from analyzer.demo.run import live_available

    if not live_available():
        pytest.skip("the live collector needs root and bcc (CI has both)")
    wd = tmp_path_factory.mktemp("live")
    res = run_demo(wd / "store", wd, modes=("honest", "inject", "conditional", "secret-keeping"),
                   capture="live", log=lambda m: None)
    with Store.open(str(wd / "store"), read_only=True) as st:
        cur = st.con.execute("SELECT * FROM findings")
        cols = [d[0] for d in cur.description]
        rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    return res, rows


def test_live_collector_demo(live_demo):
    """The demo under the live collector (with tcpdump as its safety net) still finds every attack;
    when the live collector decoded the exchanges, findings carry the agent's pid too."""
    res, rows = live_demo
    assert of(rows, "honest", res) == []
    inject = of(rows, "inject", res)
    assert "ac1-download-exec" in rules(inject)
    assert "ac1b-conditional-injection" in rules(of(rows, "conditional", res))
    assert "canary-seen" in rules(of(rows, "secret-keeping", res))
    if "fell back to the tcpdump capture" not in res.notes:
        assert all(f["pid"] for f in inject), inject
