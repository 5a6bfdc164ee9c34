"""Cross-host rules over several analyzer runs, as the fleet's one analyzer meets them: hosts arrive
one after another."""

from __future__ import annotations

import datetime as dt
import json

from analyzer.engine import analyze, memory_connection
from analyzer.rules import load_rules
from analyzer.rules.testing import load_rows
from collector.catalog import load_catalog


def exchange(i: int, host: str) -> dict:
    return {"ts": dt.datetime(2026, 1, 1, 10, i), "exchange_id": f"X{i}", "flow_uid": f"F{i}", "host_id": host, "pid": 10,
            "api": "openai.chat", "host": "relay.example", "path": "/v1/chat/completions",
            "model_requested": "gpt-4o", "model_returned": "gpt-4o"}


def test_a_spreading_router_is_reported_as_it_passes_each_threshold():
    con = memory_connection()
    rules = load_rules(only=["fleet-router-multi-host"])
    counts = []
    for i, host in enumerate(["h1", "h2", "h3", "h4", "h5", "h6"]):
        load_rows(con, {"llm_exchanges": [exchange(i, host)]})
        res = analyze(con, load_catalog(None), rules)
        counts.append([json.loads(f["evidence"])["host_count"] for f in res.findings])
    # nothing for one host; then at 2, 3 and 5 hosts, not at 4 or 6
    assert counts == [[], [2], [3], [], [5], []]
