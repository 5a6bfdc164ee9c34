"""Connect-heavy loopback workload shared by the load test and bench/live.py.

`serve()` accepts and resets at once (SO_LINGER 0: no TIME_WAIT on either side, which would
otherwise pile up across runs and slow later connects); `storm(port, n)` makes n connections and
waits for each to be closed by the server; `paced(port, rate)` keeps a steady rate until SIGTERM (the
soak's background traffic)."""

from __future__ import annotations

import socket
import struct
import sys
import time


def serve(ready_fd: int = 1) -> None:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(4096)
    print(s.getsockname()[1], flush=True)
    while True:
        c, _ = s.accept()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()


def storm(port: int, n: int) -> float:
    """Returns the seconds n connections took."""
    addr = ("127.0.0.1", port)
    t0 = time.perf_counter()
    for _ in range(n):
        c = socket.socket()
        try:
            # the server may accept and reset before this thread returns from connect(): connect()
            # then reports ECONNRESET for a connection that was established (one socket either way)
            c.connect(addr)
            c.recv(1)
        except ConnectionResetError:
            pass
        c.close()
    return time.perf_counter() - t0


def paced(port: int, rate: float) -> None:
    """`rate` connections per second until SIGTERM; then prints how many were made (and failed)."""
    import signal

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    addr, made, failed, t0 = ("127.0.0.1", port), 0, 0, time.monotonic()
    while not stop:
        delay = t0 + (made + failed) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
            continue
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            c.connect(addr)
            c.recv(1)
            made += 1
        except ConnectionResetError:  # accepted and reset: one connection either way
            made += 1
        except OSError:
            failed += 1
        finally:
            c.close()
    print(made, failed, flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve()
    elif sys.argv[1] == "paced":
        paced(int(sys.argv[2]), float(sys.argv[3]))
    else:
        print(storm(int(sys.argv[2]), int(sys.argv[3])), flush=True)
