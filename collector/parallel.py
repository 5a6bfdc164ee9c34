"""The one way routerwatch runs work in another, long-lived process: `Child`, a fresh interpreter
(`python -m <module>`) that reads pickled requests on its stdin and writes pickled replies on its
stdout (length-prefixed frames), and `serve()` / `reply()` for the child's side.

    child = Child("collector.tls.worker", on_reply=got.append)   # parent
    child.send(request); child.finish()

    for request in serve():                                    # child (its module's main())
        reply(work(request))

Users: the decode worker of collector.tls.pipeline (LLM decoding + secret scanning of big captures
beside the decryption), the proxy's recording process (collector.proxy.sink.ProcessSink), and store
compaction (collector.store.maintenance.compact_isolated: a native crash inside DuckDB costs one
attempt, not the command or the service that asked for it).

Why a fresh interpreter and not multiprocessing or fork:
- fork() copies a process that may run other threads (DuckDB's, bcc's perf readers, the proxy's
  relay, a BatchWriter): a lock held by one of them at the fork stays held forever in the child.
  The live collector and the proxy always have such threads.
- multiprocessing's `spawn` is also a fresh interpreter but costs more for nothing we use: it
  re-imports the parent's `__main__` (the CLI, or pytest), its Queue needs a semaphore and with it a
  second helper process (the resource tracker), and a dead parent is noticed only by polling
  getppid(). Measured start-up in docs/performance.md ("Parallelism").
- Here the child's stdin is its lifeline: when the parent exits or dies, the pipe closes, serve()
  ends and the child finishes what it holds (a recorder flushes its rows) and exits.
- Hostile input stays isolated: a parser that crashes or blows up its memory kills the child, not
  the collector; the parent sees the pipe close and reports it.

The one place that forks is the split of one big capture in `routerwatch ingest`
(collector.tls.pipeline._split): it shares the capture already read and walked with the child at no
cost (copy-on-write) and runs only in a process with a single thread, where fork is safe.

Replies are read by a thread of the parent and handed to `on_reply` in order; requests are written by
another thread (a pipe holds 64 KiB: a writer that blocked on a busy child would stall the caller).
They are pickled in that thread too, as multiprocessing.Queue does (the proxy's relay must return at
once), or with `pickle_in_caller` in the caller's thread (the decoder's: pickling there costs no
hand-over of the GIL to the writer for each batch). `limit` bounds the requests not yet written
(send(block=False) then refuses one, and the caller counts it as dropped).
"""

from __future__ import annotations

import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

_LEN = struct.Struct("<Q")
_STOP = object()  # the outbox's end marker
_ROOT = str(Path(__file__).resolve().parent.parent)  # the directory holding this `collector` package


class _Pickled:
    """A request already framed by send() (pickle_in_caller)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data


def _site_dirs() -> set[str]:
    """Where installed packages live (already on a child's path; PYTHONPATH would put them before the
    standard library)."""
    import site

    return {str(Path(d).resolve()) for d in [*site.getsitepackages(), site.getusersitepackages()]}


def _read_frame(stream: BinaryIO) -> bytes | None:
    """One length-prefixed frame, None at the end of the stream (or a frame cut short)."""
    head = stream.read(_LEN.size)
    if len(head) < _LEN.size:
        return None
    n = _LEN.unpack(head)[0]
    data = stream.read(n)
    return data if len(data) == n else None


def _frame(obj: Any) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(data)) + data


class Child:
    """Parent side: a `python -m <module>` child, requests in, replies out (see the module docstring)."""

    def __init__(self, module: str, *, on_reply: Callable[[Any], None] | None = None, limit: int = 0,
                 pickle_in_caller: bool = False, name: str = "routerwatch-child"):
        env = dict(os.environ)
        if _ROOT not in _site_dirs():  # a checkout (a bench's sys.path): the child imports the same code
            env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen([sys.executable, "-m", module], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)
        self._on_reply = on_reply
        self._pickle_in_caller = pickle_in_caller
        self.replies = 0
        self.error: str | None = None  # a request that could not be pickled (its type only)
        self._outbox: queue.Queue[Any] = queue.Queue(limit)
        self._reader = threading.Thread(target=self._read_all, name=f"{name}-reader", daemon=True)
        self._writer = threading.Thread(target=self._write_all, name=f"{name}-writer", daemon=True)
        self._reader.start()
        self._writer.start()

    def _write_all(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            while (obj := self._outbox.get()) is not _STOP:
                if isinstance(obj, _Pickled):
                    data = obj.data
                else:
                    try:
                        data = _frame(obj)
                    except Exception as e:  # never the request itself in the message: it may hold secrets
                        self.error = self.error or f"{type(e).__name__} pickling a {type(obj).__name__}"
                        continue
                stdin.write(data)
                stdin.flush()
            stdin.close()
        except (BrokenPipeError, OSError):  # the child died; the caller sees it exit
            pass

    def _read_all(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        while (data := _read_frame(stdout)) is not None:
            self.replies += 1
            if self._on_reply is not None:
                self._on_reply(pickle.loads(data))

    def send(self, obj: Any, block: bool = True) -> bool:
        """Queue a request (pickled here with pickle_in_caller, else on the writer thread); False when
        the outbox is full and `block` is False."""
        if self._pickle_in_caller:
            obj = _Pickled(_frame(obj))
        try:
            self._outbox.put(obj, block=block)
        except queue.Full:
            return False
        return True

    def full(self) -> bool:
        return self._outbox.full()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def finish(self, timeout: float | None = None) -> int:
        """Send what is queued, close the child's stdin (its serve() ends), wait for its last reply
        and its exit; a child still running after `timeout` seconds is killed. Its exit status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._outbox.put(_STOP)
        self._writer.join(timeout)
        try:
            self.proc.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
        self._reader.join()
        return self.proc.wait()

    def kill(self) -> None:
        """Stop the child now (after an error on either side)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        try:
            self._outbox.put_nowait(_STOP)  # the writer thread ends too (its writes fail)
        except queue.Full:
            pass


_out: BinaryIO | None = None


def serve() -> Iterator[Any]:
    """Child side: each request the parent sends, until it closes the pipe (it finished or died).
    From the first call on, the child's own stdout is its stderr: a stray print() cannot corrupt a reply."""
    global _out
    if _out is None:
        _out = os.fdopen(os.dup(1), "wb")
        os.dup2(2, 1)
    while (data := _read_frame(sys.stdin.buffer)) is not None:
        yield pickle.loads(data)


def reply(obj: Any) -> None:
    """Child side: send one reply to the parent (only after serve() has started)."""
    assert _out is not None, "reply() before serve()"
    _out.write(_frame(obj))
    _out.flush()
