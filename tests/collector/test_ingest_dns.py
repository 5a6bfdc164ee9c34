"""Ingest's DNS rows are facts of the capture: they never depend on a query's random transaction id."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.ingest import ingest
from collector.store import Store
from tests.support import dns_capture


def _rows(store: Path, query: str) -> list[tuple]:
    with Store.open(str(store), read_only=True) as st:
        return sorted(st.sql(query).fetchall())


@pytest.mark.parametrize("base_id", [0x1200, 0x9200, 0xC200], ids=["id<0x8000", "id>=0x8000", "id>=0xC000"])
def test_dns_rows_do_not_depend_on_transaction_ids(tmp_path: Path, base_id: int) -> None:
    """One row per answered query (its response), one per unanswered query, whatever the ids: answered
    queries whose id was >= 0x8000 were handed to tshark as QUIC candidates and got a row of their own."""
    cap = dns_capture.transactions(tmp_path / "c.pcap", base_id)
    res = ingest(cap, store=str(tmp_path / "s"), host_id="h1")
    assert _rows(tmp_path / "s", f"SELECT query, qtype, is_response, answers, trans_id - {base_id} FROM dns") == [
        ("lost.example", "A", False, [], 3),
        ("one.example", "A", True, ["192.0.2.1"], 0),
        ("two.example", "A", True, ["192.0.2.2"], 1),
        ("two.example", "AAAA", True, ["2001:db8::2"], 2),
    ]
    assert res.status == "ok" and res.dissected_packets == 6  # 3 responses, 1 unanswered query, 2 QUIC-like
