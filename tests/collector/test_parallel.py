"""collector.parallel with a real child interpreter (tests/support/echo_child.py)."""

from __future__ import annotations

import time

import pytest

from collector.parallel import Child

ECHO = "tests.support.echo_child"


@pytest.mark.parametrize("pickle_in_caller", [False, True])
def test_replies_come_back_in_order_past_the_pipe_buffer(pickle_in_caller: bool) -> None:
    """200 requests of 100 KB (far past a pipe's 64 KiB, both ways) come back whole and in order, and
    the child's stray print()s never reach the reply pipe; requests pickled on either thread."""
    got: list = []
    child = Child(ECHO, on_reply=got.append, pickle_in_caller=pickle_in_caller)
    sent = [(i, bytes([i % 251]) * 100_000) for i in range(200)]
    for item in sent:
        assert child.send(("echo", item))
    assert child.finish(timeout=60) == 0
    assert got == [*sent, ("bye", 200)]
    assert child.replies == 201 and child.error is None


def test_closing_the_pipe_ends_the_child_after_its_work() -> None:
    """The parent closes the pipe without a stop message: the child's serve() ends, it runs its
    finishing code (a recorder flushes there) and exits 0."""
    got: list = []
    child = Child(ECHO, on_reply=got.append)
    assert child.finish(timeout=60) == 0
    assert got == [("bye", 0)]


def test_a_dead_child_is_reported_not_raised() -> None:
    """A child that dies (a parser's crash, the OOM killer) leaves the parent running: finish() gives
    its exit status, the replies before it are kept, sends after it do not raise."""
    got: list = []
    child = Child(ECHO, on_reply=got.append)
    child.send(("echo", 1))
    child.send(("die",))
    deadline = time.monotonic() + 60
    while child.alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not child.alive()
    assert child.send(("echo", 2))  # queued; the writer finds the pipe closed
    assert child.finish(timeout=60) == 3
    assert got == [1]


def test_a_bounded_outbox_refuses_instead_of_blocking() -> None:
    """With `limit`, send(block=False) says False once the child stops reading (the proxy counts a
    dropped observation rather than stalling its relay)."""
    child = Child(ECHO, limit=2)
    try:
        child.send(("hang", 60))
        refused = 0
        for _ in range(50):  # 1 MB each: the writer blocks on the first, the outbox fills behind it
            if not child.send(("echo", b"x" * 1_000_000), block=False):
                refused += 1
                break
        assert refused == 1 and child.full()
    finally:
        child.kill()
    assert not child.alive()


def test_a_request_that_cannot_be_pickled_is_named_by_type_only() -> None:
    """An unpicklable request is skipped and reported by type (never its content: it may hold
    secrets); the requests around it still go."""
    got: list = []
    child = Child(ECHO, on_reply=got.append)
    child.send(("echo", "before"))
    child.send(("echo", lambda: "sk-secret"))
    child.send(("echo", "after"))
    assert child.finish(timeout=60) == 0
    assert got == ["before", "after", ("bye", 2)]
    assert child.error is not None and child.error.endswith("pickling a tuple") and "sk-" not in child.error


def test_pickling_in_the_callers_thread_raises_there() -> None:
    """With pickle_in_caller (the decode worker) an unpicklable request raises in send(), as a bug
    should, and nothing was queued."""
    child = Child(ECHO, pickle_in_caller=True)
    with pytest.raises(Exception, match="pickle"):
        child.send(("echo", lambda: None))
    assert child.finish(timeout=60) == 0 and child.replies == 1
