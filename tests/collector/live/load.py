"""Connect-heavy loopback workload shared by the load test and bench/live.py.

`serve()` accepts and resets at once (SO_LINGER 0: no TIME_WAIT on either side, which would
otherwise pile up across runs and slow later connects); `storm(port, n)` makes n connections and
waits for each to be closed by the server."""

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


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve()
    else:
        print(storm(int(sys.argv[2]), int(sys.argv[3])), flush=True)
