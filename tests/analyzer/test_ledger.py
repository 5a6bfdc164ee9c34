"""The ledger: a hash chain over exchanges; tampering with entries or exchanges is detected."""

from __future__ import annotations

import datetime as dt

import pytest

from analyzer.engine import analyze
from analyzer.ledger import GENESIS, entry_hash, verify
from analyzer.rules import load_rules
from collector.catalog import load_catalog
from collector.store import BatchWriter, Store
from tests.conftest import run_cli

T0 = dt.datetime(2026, 3, 1, 12, 0, 0)


def seed_and_analyze(store_dir, n: int = 6, start: int = 0) -> Store:
    store = Store.open(str(store_dir))
    with BatchWriter(store) as w:
        w.add("llm_exchanges", [
            {"ts": T0 + dt.timedelta(seconds=i), "exchange_id": f"X{i}", "host_id": "h1", "api": "openai.chat",
             "host": "api.openai.com", "request_digest": f"rq{i}", "response_digest": f"rs{i}"}
            for i in range(start, start + n)
        ])
    analyze(store.con, load_catalog(None), load_rules(only=["model-substitution"]))
    return store


@pytest.fixture
def store(store_dir):
    s = seed_and_analyze(store_dir)
    yield s
    s.close()


def test_chain_is_valid_and_grows(store, store_dir):
    v = verify(store.con)
    assert v.ok and v.entries == 6 and v.head_seq == 6
    first = store.con.execute("SELECT prev_hash, hash, exchange_id FROM ledger WHERE seq = 1").fetchone()
    assert first[0] == GENESIS
    assert first[1] == entry_hash(GENESIS, 1, "X0", "h1", "2026-03-01T12:00:00.000000", "openai", "rq0", "rs0")
    store.close()
    s2 = seed_and_analyze(store_dir, n=3, start=6)
    v2 = verify(s2.con, expected_head=v.head_hash)  # the old head is still in the chain
    assert v2.ok and v2.entries == 9
    s2.close()
    p = run_cli("ledger", "verify", "--store", str(store_dir))
    assert p.returncode == 0 and "ledger OK: 9 entries" in p.stdout


def test_modified_entry(store):
    store.con.execute("UPDATE ledger SET router = 'elsewhere' WHERE seq = 3")
    v = verify(store.con)
    assert not v.ok and any("entry 3" in p and "modified" in p for p in v.problems)


def test_deleted_entry(store):
    store.con.execute("DELETE FROM ledger WHERE seq = 4")
    v = verify(store.con)
    assert any("missing" in p for p in v.problems) and any("prev_hash" in p for p in v.problems)


def test_deleted_tail(store):
    store.con.execute("DELETE FROM ledger WHERE seq >= 5")
    v = verify(store.con)
    assert any("tail deleted" in p for p in v.problems)


def test_reordered_entries(store):
    rows = store.con.execute("SELECT * FROM ledger WHERE seq IN (2, 3) ORDER BY seq").fetchall()
    cols = [d[0] for d in store.con.description]
    store.con.execute("DELETE FROM ledger WHERE seq IN (2, 3)")
    with BatchWriter(store) as w:  # re-inserted in swapped order, hashes untouched
        w.add("ledger", [dict(zip(cols, r, strict=True)) for r in reversed(rows)])
    v = verify(store.con)
    assert not v.ok and any("out of order" in p or "prev_hash" in p for p in v.problems)


def test_swapped_sequence_numbers(store):
    store.con.execute("UPDATE ledger SET seq = CASE seq WHEN 2 THEN 3 ELSE 2 END WHERE seq IN (2, 3)")
    assert not verify(store.con).ok


def test_modified_and_deleted_exchanges(store):
    store.con.execute("UPDATE llm_exchanges SET response_digest = 'forged' WHERE exchange_id = 'X1'")
    store.con.execute("DELETE FROM llm_exchanges WHERE exchange_id = 'X2'")
    v = verify(store.con)
    assert any("X1 was modified" in p for p in v.problems)
    assert any("X2 was deleted" in p for p in v.problems)


def test_unknown_anchor(store, store_dir):
    assert not verify(store.con, expected_head="ab" * 32).ok
    store.close()
    p = run_cli("ledger", "verify", "--store", str(store_dir), "--head", "cd" * 32)
    assert p.returncode == 1 and "anchored head" in p.stderr


def test_survives_compaction(store, store_dir):
    from collector.store.maintenance import compact

    compact(store)
    assert verify(store.con).ok
