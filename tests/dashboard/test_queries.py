"""The query layer without Streamlit: the incremental rollup stays exact while a writer appends."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from collector.store import BatchWriter, Store
from collector.store.maintenance import compact_isolated
from dashboard import queries as q
from dashboard.capture import display_filter
from tests.support.sample_data import SCENARIO, seed


def _append(store_dir, n: int, start: int) -> None:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with Store.open(str(store_dir)) as s, BatchWriter(s) as w:
        w.add("flows", pa.table({"flow_uid": [f"N{start + i}" for i in range(n)], "host_id": ["h-new"] * n,
                                 "ts_start": [now] * n, "server_name": ["new.example"] * n, "dst_port": [443] * n,
                                 "pid": [77] * n, "bytes_out": [1] * n, "bytes_in": [2] * n}))


def test_rollup_incremental_and_after_compaction(store_dir):
    with Store.open(str(store_dir)) as s:
        info = seed(s, flows=3_000, exchanges=300)
    r = q.Reader(str(store_dir))
    w = q.Window()
    assert q.overview_kpis(r, w)["flows"] == info.counts["flows"]
    roll = r.rollup()
    assert roll.rebuilds == 1
    _append(store_dir, 50, 0)
    _append(store_dir, 25, 50)
    roll.min_interval = 0
    assert q.overview_kpis(r, w)["flows"] == info.counts["flows"] + 75
    assert roll.increments == 1 and roll.rebuilds == 1  # one refresh read only the new rows
    first = q.destinations(r, w)
    new = first[first["destination"] == "new.example"].iloc[0]
    assert int(new["flows"]) == 75 and int(new["pid"]) == 77
    compact_isolated(str(store_dir))
    _append(store_dir, 5, 100)
    assert q.overview_kpis(r, w)["flows"] == info.counts["flows"] + 80  # exact after files were rewritten
    top = q.top_destinations(r, w, limit=50)
    assert int(top.loc[top["destination"] == "new.example", "flows"].iloc[0]) == 80


def test_reader_survives_a_swapped_store(store_dir):
    with Store.open(str(store_dir)) as s:
        seed(s, flows=500, exchanges=50)
    r = q.Reader(str(store_dir))
    assert q.exchange_count(r, q.Window()) == 53  # 50 + the scenario's two + the one behind the policy gate
    r.reconnect()
    assert q.exchange_count(r, q.Window()) == 53


def test_display_filter_is_validated():
    import pandas as pd
    import pytest

    f = pd.Series({"proto": "tcp", "src_ip": "10.0.0.1", "dst_ip": "2001:db8::1", "src_port": 5000, "dst_port": 443})
    assert display_filter(f) == "ip.addr == 10.0.0.1 && ipv6.addr == 2001:db8::1 && tcp.port == 5000 && tcp.port == 443"
    with pytest.raises(ValueError):
        display_filter(pd.Series({"src_ip": "1.2.3.4 || frame", "proto": "tcp"}))


def test_packets_of_an_ingested_capture(store_dir, corpus):
    """pyshark drill-down: a flow whose capture file is retained shows its packets and protocol tree."""
    import pandas as pd

    from dashboard.capture import capture_paths, packets

    pcap = corpus / "http-cut-short.pcap"
    with Store.open(str(store_dir)) as s, BatchWriter(s) as w:
        w.add("ingest_runs", [{"run_id": "R1", "file": str(pcap), "host_id": "h"}])
        w.add("flows", [{"flow_uid": "F1", "host_id": "h", "proto": "tcp", "capture_id": "R1"}])
    r = q.Reader(str(store_dir))
    found = capture_paths(r, pd.Series({"capture_id": "R1"}))
    assert found.paths == [pcap]
    first = packets(found.paths, pd.Series({"proto": "tcp", "src_port": 49160}), limit=3)
    assert len(first) == 3 and first[0]["no"] == 1 and "tcp" in first[0]["layers"]
    assert any("Source Port: 49160" in line for line in first[0]["layers"]["tcp"])
    gone = capture_paths(r, pd.Series({"capture_id": "nope", "ts_start": None}))
    assert not gone.paths and gone.note


def test_export_csv_and_parquet(store_dir):
    import io

    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    with Store.open(str(store_dir)) as s:
        seed(s, flows=2_000, exchanges=100)
    r = q.Reader(str(store_dir))
    f = q.FlowFilter(destination="evil-cdn")
    csv = pa_csv.read_csv(io.BytesIO(q.flows_export(r, q.Window(), f, "csv")))
    assert csv.num_rows == 1 and csv["flow_uid"][0].as_py() == SCENARIO.evil_flow
    pqt = pq.read_table(io.BytesIO(q.flows_export(r, q.Window(), q.FlowFilter(), "parquet")))
    assert pqt.num_rows == q.flow_count(r, q.Window(), q.FlowFilter()) == 2_002
