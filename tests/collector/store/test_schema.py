"""Row contracts: every table's rows checked against its declaration (collector.store.schema.conform)
by every writer; unknown or mistyped columns are refused loudly, naming table and column, never the
value, and nothing of the batch is stored."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from collector.store import BatchWriter, Store
from collector.store.schema import TABLES, RowContractError, arrow_schema, conform

T = dt.datetime(2026, 3, 1, 12, 0)
GOOD = {"flow_uid": "F1", "host_id": "h", "ts_start": T, "proto": "tcp", "src_port": 40000, "pid": 7,
        "bytes_out": 10, "process_start": 12, "direction": "outbound"}


def test_good_rows_fill_the_declared_schema() -> None:
    t = conform("flows", [GOOD, {"flow_uid": "F2", "process_start": 1.5}])
    assert t.schema == arrow_schema("flows") and t.num_rows == 2
    assert t.column("src_port").to_pylist() == [40000, None]  # a column a row leaves out is NULL
    assert t.column("process_start").to_pylist() == [12.0, 1.5]  # an int in a DOUBLE column is exact
    assert t.column("ts_start").to_pylist() == [T, None]


@pytest.mark.parametrize("column,value,kind", [
    ("src_port", "443", "string"),  # a string in an INTEGER column
    ("src_port", 1.5, "double"),  # pyarrow alone would store 1
    ("src_port", True, "bool"),
    ("ts_start", 1_700_000_000, "int64"),  # pyarrow alone would read microseconds since 1970
    ("ts_start", "2026-03-01", "string"),
    ("proto", 17, "int64"),
    ("direction", {"a": 1}, "struct"),
])
def test_mistyped_values_are_refused(column: str, value: object, kind: str) -> None:
    with pytest.raises(RowContractError, match=rf"^flows\.{column}: {kind}.* do not fit") as e:
        conform("flows", [{**GOOD, column: value}])
    assert repr(value) not in str(e.value)


def test_list_columns_take_lists_of_strings_only() -> None:
    assert conform("dns", [{"answers": ["192.0.2.1"]}, {"answers": []}]).column("answers").to_pylist() == [
        ["192.0.2.1"], []]
    with pytest.raises(RowContractError, match=r"^dns\.answers: string"):
        conform("dns", [{"answers": "192.0.2.1"}])  # pyarrow alone would store ['1', '9', '2', ...]
    with pytest.raises(RowContractError, match=r"^dns\.answers: list<item: int64>"):
        conform("dns", [{"answers": [1]}])


def test_unknown_columns_and_tables_are_refused() -> None:
    with pytest.raises(RowContractError, match=r"^flows: no column\(s\) histroy \(declared in collector/store/schema.py\)"):
        conform("flows", [{**GOOD, "histroy": "ShAD"}])
    with pytest.raises(RowContractError, match="unknown table 'flow'"):
        conform("flow", [GOOD])


def test_mixed_kinds_and_overflow_are_refused() -> None:
    with pytest.raises(RowContractError, match=r"^flows\.pid: values of mixed"):
        conform("flows", [{"pid": 1}, {"pid": "2"}])
    with pytest.raises(RowContractError, match=r"^flows\.pid: values do not fit its INTEGER column"):
        conform("flows", [{"pid": 2**40}])


def test_arrow_tables_from_bulk_paths() -> None:
    ok = pa.table({"flow_uid": ["F1"], "src_port": pa.array([443], pa.int64()), "ts_start": pa.array([T], pa.timestamp("ns")),
                   "proto": pa.DictionaryArray.from_arrays([0], ["tcp"]),
                   "ts_end": pa.array([dt.datetime(2026, 3, 1, tzinfo=dt.UTC)], pa.timestamp("us", tz="UTC"))})
    t = conform("flows", ok)
    assert t.schema == arrow_schema("flows") and t.column("proto").to_pylist() == ["tcp"]
    with pytest.raises(RowContractError, match=r"^flows: no column\(s\) sni"):
        conform("flows", ok.append_column("sni", pa.array(["x"])))
    with pytest.raises(RowContractError, match=r"^flows\.src_port: double"):
        conform("flows", pa.table({"src_port": pa.array([1.5])}))
    with pytest.raises(RowContractError, match=r"^flows\.ts_start: int64"):
        conform("flows", pa.table({"ts_start": pa.array([1_700_000_000])}))


def test_every_declared_type_has_a_contract() -> None:
    for table in TABLES:
        assert conform(table, [{}]).num_rows == 1  # an all-NULL row fits every column type
        assert conform(table, pa.table({})).num_rows == 0


def test_the_writer_refuses_a_bad_batch_and_stores_none_of_it(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "store")) as st:
        with BatchWriter(st) as w:
            w.add("flows", [GOOD])
            with pytest.raises(RowContractError):
                w.add("flows", [{**GOOD, "flow_uid": "F9"}, {**GOOD, "flow_uid": "F10", "pid": "seven"}])
        assert st.sql("SELECT flow_uid, pid FROM flows").fetchall() == [("F1", 7)]


def test_a_store_from_before_the_proxy_columns_migrates_and_its_proxy_rows_move_out_of_history(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store written by a version without flows.proxy_leg/proxy_scheme (the proxy's leg was in history)
    gains the columns on open, and its old proxy rows read like new ones; Zeek history stays as it was."""
    new = TABLES["flows"]
    old = [c for c in new if c[0] not in ("proxy_leg", "proxy_scheme")]
    assert len(old) == len(new) - 2
    monkeypatch.setitem(TABLES, "flows", old)
    with Store.open(str(tmp_path / "store")) as st, BatchWriter(st) as w:
        w.add("flows", [{"flow_uid": "P1", "source": "proxy", "history": "proxy-agent"},
                        {"flow_uid": "P2", "source": "proxy", "history": "proxy-upstream"},
                        {"flow_uid": "P3", "source": "proxy", "history": "proxy-upstream:tunnel"},
                        {"flow_uid": "Z1", "source": "pcap", "history": "ShADadFf"}])
    monkeypatch.setitem(TABLES, "flows", new)
    with Store.open(str(tmp_path / "store")) as st:
        assert st.sql("SELECT flow_uid, history, proxy_leg, proxy_scheme FROM flows ORDER BY flow_uid").fetchall() == [
            ("P1", None, "agent", "https"), ("P2", None, "upstream", "https"), ("P3", None, "upstream", "tunnel"),
            ("Z1", "ShADadFf", None, None)]
        last = st.sql("SELECT description FROM schema_migrations ORDER BY version DESC LIMIT 1").fetchone()[0]
        assert '"proxy_leg"' in last and '"proxy_scheme"' in last
        with BatchWriter(st) as w:  # and the writer now takes the new columns
            w.add("flows", [{"flow_uid": "P4", "source": "proxy", "proxy_leg": "agent", "proxy_scheme": "http"}])
        assert st.sql("SELECT proxy_leg, proxy_scheme, history FROM flows WHERE flow_uid = 'P4'").fetchone() == (
            "agent", "http", None)


def test_every_writer_path_refuses_and_stores_nothing(tmp_path: Path) -> None:
    """The fleet's spooling writer, the analyzer's inserts and ingest's batched write refuse like the
    BatchWriter above: a RowContractError naming table and column, nothing stored."""
    from analyzer.engine import insert
    from collector.ingest import IngestResult, _write
    from collector.store.spool import SpoolingWriter

    path = str(tmp_path / "store")
    with Store.open(path) as st:
        with st.transaction("test") as con:
            with pytest.raises(RowContractError, match=r"^findings\.severity: int64"):
                insert(con, "findings", [{"finding_id": "x", "severity": 3}])
        bulk = conform("flows", [GOOD]).append_column("sni", pa.array(["x"]))  # a column ingest never declared
        res = IngestResult(run_id="r", status="ok", file="f.pcap", sha256="0" * 64)
        with pytest.raises(RowContractError, match=r"^flows: no column\(s\) sni"):
            _write(st, {"flows": bulk, "dns": [], "tls": []}, res, "h", None, None, None, 1000, 0.0)
    sw = SpoolingWriter(lambda: Store.open(path), host_id="h", spool_dir=tmp_path / "spool")
    try:
        with pytest.raises(RowContractError, match=r"^flows: no column\(s\) histroy"):
            sw.add("flows", [{**GOOD, "histroy": "S"}])
        with pytest.raises(RowContractError, match=r"^dns\.answers: string"):
            sw.add("dns", [{"query": "example.com", "answers": "192.0.2.1"}])
    finally:
        sw.close()
    with Store.open(path) as st:
        assert [st.sql(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("flows", "dns", "findings", "ingest_runs")] == [
            0, 0, 0, 0]
