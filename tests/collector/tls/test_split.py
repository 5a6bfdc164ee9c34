"""The two-process split of a big capture (collector.tls.pipeline._split) with a stand-in decryptor:
rows come back from the child in order and in several messages, a child that dies is an error (not
a hang), and the child is never left running. The real-capture equivalence is in test_tls_corpus."""

from __future__ import annotations

import os
import time

import pytest

import collector.tls.pipeline as pl
from collector.llm.pipeline import DecodedRows


class FakeJob:
    """What _split needs of a NativeDecrypt: a queue of `n` one-connection chunks."""

    def __init__(self, n: int):
        self.n = n
        self.queue: int | None = None
        self.rank = {c: c for c in range(n)}
        self.current = -1
        self.rows = 0

    def prepare(self) -> None:
        pass

    def queue_chunks(self) -> tuple[int, int]:
        return self.n, 1

    def take(self):
        while len(b := os.read(self.queue, 4)) == 4:
            yield int.from_bytes(b, "little")


def rows_for(conn: int, payload: str = "") -> DecodedRows:
    out = DecodedRows(exchanges=1)
    out.tables["http"].append({"conn": conn, "pid": os.getpid(), "payload": payload})
    return out


def share(job: FakeJob, send=None, poll=None, die_after: int | None = None, big: int = 0) -> pl._Share:
    """Decode each taken connection to one row; the child sends every row on its own (and, with
    `die_after`, exits without a word after that many)."""
    parts = []
    for k, conn in enumerate(job.take()):
        if send is not None and die_after is not None and k == die_after:
            os._exit(7)
        job.current = conn
        part = ((conn, 0), rows_for(conn, "x" * big))
        if send is not None:
            send([part])
        else:
            parts.append(part)
            time.sleep(0.005)  # this process is the slower one: the child surely takes some
            if poll is not None:
                poll()
    job.rows += 1
    return pl._Share(parts, [], set(), job.rows)


def test_rows_from_both_processes_merge_in_connection_order():
    # rows bigger than a pipe buffer in all: the child must never wait for this process to read
    _merged, rows = pl._split(FakeJob(64), lambda job, send=None, poll=None: share(job, send, poll, big=50_000),
                              set())
    got = rows.tables["http"]
    assert [r["conn"] for r in got] == list(range(64))
    assert rows.exchanges == 64
    pids = {r["pid"] for r in got}
    assert os.getpid() in pids and len(pids) == 2  # both processes took connections


def test_a_child_that_dies_is_an_error_not_a_hang():
    with pytest.raises(RuntimeError, match="exited without a result"):
        pl._split(FakeJob(200), lambda job, send=None, poll=None: share(job, send, poll, die_after=1), set())


def test_unsure_in_the_child_names_the_first_connection():
    def run(job, send=None, poll=None):
        if send is not None:
            for conn in job.take():
                job.current = conn
                raise pl.NativeUnsure(f"connection {conn}")
        time.sleep(0.2)  # leave the child time to take a chunk
        return share(job, send, poll)

    with pytest.raises(pl.NativeUnsure, match=r"connection \d+"):
        pl._split(FakeJob(50), run, set())


def test_rows_read_are_released_from_the_anonymous_file():
    """The child's file keeps only what this process has not read yet (holes punched behind it)."""
    fd = pl._anon_file()
    try:
        pl._write_all(fd, b"x" * (4 << 20))
        before = os.fstat(fd).st_blocks
        pl._release(fd, 4 << 20)
        after = os.fstat(fd).st_blocks
        assert os.fstat(fd).st_size == 4 << 20 and before >= (4 << 20) // 512 and after < before // 8
    finally:
        os.close(fd)
