"""A collector.parallel child for tests/collector/test_parallel.py (`python -m tests.support.echo_child`):
answers ('echo', x) with x, prints to its stdout before each reply (which must not reach the parent's
pipe), ('hang', s) sleeps s seconds without reading, ('die',) exits at once with status 3, and when the
parent closes the pipe it replies ('bye', requests seen) before exiting."""

from __future__ import annotations

import os
import time

from collector.parallel import reply, serve


def main() -> int:
    seen = 0
    for request in serve():
        seen += 1
        print("a stray print in the child", flush=True)
        if request[0] == "echo":
            reply(request[1])
        elif request[0] == "hang":
            time.sleep(request[1])
        elif request[0] == "die":
            os._exit(3)
    reply(("bye", seen))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
