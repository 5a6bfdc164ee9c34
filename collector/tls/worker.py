"""The decode worker: a child process that turns batches of exchanges into rows, so that on a big
capture tshark, stream parsing and LLM decoding + secret scanning run on separate cores.

A plain child (`python -m collector.tls.worker`) speaking length-prefixed pickles over its own
stdin/stdout, rather than multiprocessing: `spawn` re-imports the caller's __main__ and `fork` is
unsafe in a process that has threads. Results come back in submission order.
"""

from __future__ import annotations

import pickle
import queue
import struct
import subprocess
import sys
import threading

_LEN = struct.Struct("<Q")


def _read(stream) -> bytes | None:
    head = stream.read(_LEN.size)
    if len(head) < _LEN.size:
        return None
    n = _LEN.unpack(head)[0]
    data = stream.read(n)
    if len(data) < n:
        return None
    return data


def _write(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LEN.pack(len(data)) + data)
    stream.flush()


class DecodeWorker:
    """Parent side: `submit(args)` sends a batch; `results()` waits for all, in order."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "collector.tls.worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        self.sent = 0
        self.got: list = []
        self.error: str | None = None
        self._reader = threading.Thread(target=self._read_all, name="routerwatch-decode-reader", daemon=True)
        self._reader.start()
        # batches are written by a thread: a write blocks while the worker is busy with the previous
        # batch (a pipe holds 64 KiB), and the caller must keep decrypting and parsing meanwhile
        self._outbox: queue.Queue[bytes | None] = queue.Queue()
        self._writer = threading.Thread(target=self._write_all, name="routerwatch-decode-writer", daemon=True)
        self._writer.start()

    def _write_all(self) -> None:
        assert self.proc.stdin is not None
        try:
            while (data := self._outbox.get()) is not None:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):  # the worker died; results() reports it
            pass

    def _read_all(self) -> None:
        assert self.proc.stdout is not None
        while True:
            data = _read(self.proc.stdout)
            if data is None:
                return
            kind, value = pickle.loads(data)
            if kind == "error":
                self.error = value
            self.got.append(value)

    def submit(self, args: tuple) -> None:
        data = pickle.dumps(args, protocol=pickle.HIGHEST_PROTOCOL)
        self._outbox.put(_LEN.pack(len(data)) + data)
        self.sent += 1

    def in_flight(self) -> int:
        """Batches sent whose result has not come back yet."""
        return self.sent - len(self.got)

    def results(self) -> list:
        self._outbox.put(None)
        self._writer.join()
        self._reader.join()
        self.proc.wait()
        if self.error or len(self.got) != self.sent:
            raise RuntimeError(f"decode worker failed: {self.error or f'exit status {self.proc.returncode}'}")
        return self.got

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._outbox.put(None)


def main() -> int:
    from collector.tls.pipeline import decode_batch

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        data = _read(inp)
        if data is None:
            return 0
        try:
            _write(out, ("ok", decode_batch(*pickle.loads(data))))
        except Exception as e:  # reported to the parent without the data (it may hold secrets)
            _write(out, ("error", f"{type(e).__name__} in the decode worker"))
            return 1


if __name__ == "__main__":
    raise SystemExit(main())
