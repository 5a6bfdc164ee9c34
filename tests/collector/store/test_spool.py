"""The spool on its own (no store needed): batches written from two threads at once keep distinct
names and exact counts, survive a reopen in order, and the size bound holds."""

from __future__ import annotations

import threading

import pyarrow as pa

from collector.store.schema import conform
from collector.store.spool import Batch, Spool


def batch(n: int, tag: str) -> Batch:
    return Batch({"dns": [conform("dns", [{"host_id": "h", "query": f"{tag}-{i}"} for i in range(n)])]})


def test_concurrent_spills_and_reopen(tmp_path):
    spool = Spool(tmp_path / "s", max_bytes=1 << 30)
    errors: list[BaseException] = []

    def spill(tag: str) -> None:
        try:
            for k in range(40):
                assert spool.put(batch(5, f"{tag}{k}"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=spill, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert (spool.count, spool.rows) == (80, 400) and len(spool.batches()) == 80
    size = spool.bytes
    spool.close()
    again = Spool(tmp_path / "s", max_bytes=1 << 30)  # a restarted collector finds them all, oldest first
    assert (again.count, again.rows, again.bytes) == (80, 400, size)
    first = again.load(again.batches()[0])
    assert isinstance(first.tables["dns"][0], pa.Table) and first.rows == 5
    for p in again.batches():
        again.remove(p)
    assert (again.count, again.rows, again.bytes) == (0, 0, 0)
    again.close()


def test_size_bound(tmp_path):
    spool = Spool(tmp_path / "s", max_bytes=20_000)
    kept = sum(spool.put(batch(50, str(k))) for k in range(40))
    assert 0 < kept < 40 and spool.bytes <= 20_000 and spool.count == kept
    spool.close()
