"""The decode worker: a child process that turns batches of exchanges into rows, so that on a big
capture tshark, stream parsing and LLM decoding + secret scanning run on separate cores.

It runs on collector.parallel's `Child` (a fresh interpreter, pickles over its stdin/stdout): the
live collector decodes from a thread of a process that has DuckDB's and bcc's threads, where fork is
unsafe. Results come back in submission order. A batch that raises stops the worker with a message
naming only the exception type (the data may hold secrets); a worker that dies (a parser's crash, the
OOM killer) fails its caller's result(), never the collector.
"""

from __future__ import annotations

from collector.parallel import Child, reply, serve


class DecodeWorker:
    """Parent side: `submit(args)` sends a batch; `results()` waits for all, in order."""

    def __init__(self) -> None:
        self.sent = 0
        self.got: list = []
        self.error: str | None = None
        self.child = Child("collector.tls.worker", on_reply=self._got, pickle_in_caller=True,
                           name="routerwatch-decode")

    def _got(self, message: tuple[str, object]) -> None:
        kind, value = message
        if kind == "error":
            self.error = str(value)
        self.got.append(value)

    def submit(self, args: tuple) -> None:
        self.child.send(args)
        self.sent += 1

    def in_flight(self) -> int:
        """Batches sent whose result has not come back yet."""
        return self.sent - len(self.got)

    def results(self) -> list:
        status = self.child.finish()
        error = self.error or self.child.error
        if error or len(self.got) != self.sent:
            raise RuntimeError(f"decode worker failed: {error or f'exit status {status}'}")
        return self.got

    def close(self) -> None:
        self.child.kill()


def main() -> int:
    from collector.tls.pipeline import decode_batch

    for args in serve():
        try:
            rows = decode_batch(*args)
        except Exception as e:  # reported to the parent without the data (it may hold secrets)
            reply(("error", f"{type(e).__name__} in the decode worker"))
            return 1
        reply(("ok", rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
