"""Ingest's DNS rows and the DNS names it gives flows are facts of the capture: neither depends on a
query's random transaction id nor on how DuckDB orders answers with equal timestamps."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from collector.capture.flows import TCP_STATES
from collector.ingest import STATE_NAMES, _dns_names, _tcp_states, _valid, ingest
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


@pytest.mark.parametrize("names", [("a.example", "b.example"), ("b.example", "a.example"),
                                   ("c.example", "a.example", "b.example")])
def test_answers_with_equal_timestamps_name_a_flow_by_the_later_one(tmp_path: Path, names: tuple[str, ...]) -> None:
    """Several answers for one address at the same instant: the flow to it is named by the one later in
    the capture (the latest answer, as for answers at different times)."""
    cap = dns_capture.tied_answers(tmp_path / "c.pcap", names)
    ingest(cap, store=str(tmp_path / "s"), host_id="h1")
    assert _rows(tmp_path / "s", "SELECT dst_ip, server_name FROM flows WHERE proto = 'tcp'") == [("192.0.2.9", names[-1])]


def test_server_names_break_ties_the_same_way_on_every_run() -> None:
    """Many addresses, each answered twice at the same instant (a.N first in the capture, then b.N), on
    two DuckDB threads: every flow is named b.N on every run. DuckDB's ASOF join alone picked either,
    differently from run to run."""
    n = 20_000
    base = np.datetime64("2024-01-01T00:00:00", "us")
    ips = pa.array([f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}" for i in range(n)])
    ts = base + np.arange(n).astype("timedelta64[us]")
    dns = pa.table({  # capture order: a.N, b.N, a.N+1, b.N+1, ...
        "ts": pa.array(np.repeat(ts, 2)),
        "query": pa.array([f"{k}.{i}" for i in range(n) for k in "ab"]),
        "answers": pa.array([[ip] for ip in ips.to_pylist() for _ in "ab"], pa.list_(pa.string())),
        "is_response": pa.array(np.ones(2 * n, bool)),
    })
    sni = np.full(n, None, dtype=object)
    dst_ip = np.asarray(ips.to_pylist(), dtype=object)
    ts_start = (ts + np.timedelta64(5, "us")).view(np.int64)
    want = [f"b.{i}" for i in range(n)]
    for _ in range(3):
        assert _dns_names(sni, dst_ip, ts_start, dns).tolist() == want


# The as-of join _dns_names does with numpy (and the states _tcp_states gives), in SQL (what ingest ran until 2026-12-06): the
# reference it must equal
REFERENCE = """
    WITH ans AS (
      SELECT ts, ip, arg_max(query, pos) AS query FROM (
        SELECT ts, query, pos, unnest(answers) AS ip FROM d
        WHERE is_response AND query IS NOT NULL AND len(answers) > 0)
      GROUP BY ts, ip),
    named AS (
      SELECT f.flow_uid, a.query FROM f
      ASOF JOIN ans a ON a.ip = f.dst_ip AND a.ts <= f.ts_start
      WHERE f.sni IS NULL)
    SELECT f.flow_uid, coalesce(f.sni, n.query) AS server_name,
           CASE WHEN f.proto = 'udp' THEN (CASE WHEN f.packets_in > 0 THEN 'SF' ELSE 'S0' END)
                WHEN f.proto = 'tcp' THEN f.tcp_state END AS tcp_state
    FROM f LEFT JOIN named n USING (flow_uid)
"""


@pytest.mark.parametrize("seed", range(6))
def test_server_names_equal_the_sql_as_of_join(seed: int) -> None:
    """Random flows and DNS rows over few addresses and few instants (many ties): answers listing an
    address twice or a null, unanswered and null-named messages, queries, flows with an SNI, flows
    that began before any answer, UDP flows with and without replies: equal to DuckDB's ASOF join."""
    rng = np.random.default_rng(seed)
    base = np.datetime64("2024-01-01T00:00:00", "us")
    addrs = [f"192.0.2.{i}" for i in range(6)] + ["2001:db8::1", "2001:db8::2"]
    m = int(rng.integers(0, 300))

    def answer() -> list[str | None] | None:
        if rng.random() < 0.03:
            return None
        k = int(rng.integers(0, 4))
        return [None if rng.random() < 0.05 else str(rng.choice(addrs)) for _ in range(k)]

    dns = pa.table({
        "ts": pa.array(base + rng.integers(0, 40, m).astype("timedelta64[us]")),
        "query": pa.array([None if rng.random() < 0.1 else f"q{rng.integers(0, 50)}.example" for _ in range(m)], pa.string()),
        "answers": pa.array([answer() for _ in range(m)], pa.list_(pa.string())),
        "is_response": pa.array([None if rng.random() < 0.03 else bool(rng.random() < 0.8) for _ in range(m)], pa.bool_()),
    })
    n = int(rng.integers(1, 400))
    flow_tbl = pa.table({
        "flow_uid": pa.array([f"f{i}" for i in range(n)]),
        "dst_ip": pa.array([str(rng.choice(addrs + ["198.51.100.1"])) for _ in range(n)]),
        "ts_start": pa.array(base + rng.integers(-5, 45, n).astype("timedelta64[us]")),
        "sni": pa.array([f"sni{i}" if rng.random() < 0.3 else None for i in range(n)], pa.string()),
        "proto": pa.array([str(rng.choice(["tcp", "udp", "icmp"])) for _ in range(n)]),
        "packets_in": pa.array(rng.integers(0, 3, n)),
        "tcp_state": pa.array([str(rng.choice(["SF", "S0", "REJ"])) for _ in range(n)]),
    })
    con = duckdb.connect(":memory:")
    con.register("f", flow_tbl)
    con.register("d", dns.append_column("pos", pa.array(np.arange(m, dtype=np.int64))))
    want = sorted(con.execute(REFERENCE).fetchall())
    con.close()
    col = {name: np.asarray(flow_tbl.column(name).to_pylist(), dtype=object) for name in flow_tbl.column_names}
    ts_start = np.asarray(flow_tbl.column("ts_start").to_numpy()).view(np.int64)
    sni = col["sni"]
    names = _dns_names(sni, col["dst_ip"], ts_start, dns)
    server_name = np.where(np.equal(sni, None), names, sni)
    proto = np.asarray([{"tcp": 6, "udp": 17, "icmp": 1}[p] for p in col["proto"]])
    tcp_codes = np.asarray([TCP_STATES.index(s) for s in col["tcp_state"]])
    codes = _tcp_states(proto, np.asarray(col["packets_in"], dtype=np.int64), tcp_codes)
    state = [STATE_NAMES[c] for c in codes.tolist()]
    assert sorted(zip(col["flow_uid"], server_name, state, strict=True)) == want


def test_valid_reads_the_bitmap_of_a_slice() -> None:
    """_valid (the validity bitmap read with numpy, no pyarrow.compute) of arrays with and without
    nulls, and of a slice that starts inside a bitmap byte."""
    values = pa.array([[str(i)] if i % 3 else None for i in range(20)], pa.list_(pa.string()))
    for arr in (values, values.slice(5, 11), pa.array([["a"], ["b"]]), pa.array([], pa.list_(pa.string()))):
        assert _valid(arr).tolist() == [x is not None for x in arr.to_pylist()]
