"""What running work in another process costs, per mechanism, in the same run: the facts behind
collector.parallel (one fresh-interpreter child for the decode worker and the proxy's recorder) and
the one fork that stays (the split of a big capture in `routerwatch ingest`).

    .venv/bin/python bench/parallel.py [--repeat 5] [--capture F.pcap --keylog F.keys]

Start-up, median of --repeat, wall and CPU (user+sys of this process's waited-for children):
  fork        os.fork() of this process (the decoder imported), the child exits at once;
  child       collector.tls.worker.DecodeWorker: a fresh `python -m` interpreter, one empty batch and
              its answer (imports the LLM decoders);
  mp spawn    multiprocessing's spawn context as the proxy's recorder used it: a Queue, a process that
              imports the same decoders and answers once (it re-imports this script as __mp_main__;
              its resource-tracker helper is not counted: it is never waited for);
  recorder    collector.proxy.sink.ProcessSink on a new store: start (store opened) and close.
With --capture/--keylog (e.g. a capture written by `bench/decode.py --keep DIR`), decode_capture in
its three modes: in one process (workers=False), with the decode worker (the live collector's case:
a second thread is running, so no fork) and split with a forked child (`routerwatch ingest`'s case),
plus NativeDecrypt.prepare() alone: the read and walk of the capture that a fresh-interpreter child
would have to repeat to take a share of it. The machine may be shared: compare CPU seconds and ratios
within a run, and read the load average printed with it.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

KEY = b"b" * 32


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _timed(fn) -> tuple[float, float]:  # noqa: ANN001
    c, t = _children_cpu(), time.perf_counter()
    fn()
    return time.perf_counter() - t, _children_cpu() - c


def _fork() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def _contexts() -> tuple:
    from collector.llm.pipeline import DecodeContext
    from collector.secrets import Fingerprinter

    fp = Fingerprinter(KEY)
    return DecodeContext("bench", fp, "keylog"), DecodeContext("bench", fp, "cleartext")


def _child() -> None:
    from collector.tls.worker import DecodeWorker

    w = DecodeWorker()
    try:
        w.submit((*_contexts(), []))
        w.results()
    finally:
        w.close()


def _spawned(q) -> None:  # noqa: ANN001 - a multiprocessing Queue
    import collector.tls.pipeline  # noqa: F401 - the decoders, as the child above imports them

    q.put("ready")


def _mp_spawn() -> None:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_spawned, args=(q,))
    p.start()
    q.get()
    p.join()


def _recorder(tmp: Path) -> None:
    from collector.proxy.sink import ProcessSink

    store = tmp / f"store-{time.monotonic_ns()}"
    ProcessSink(str(store), "bench").close()


def startup(repeat: int) -> None:
    import collector.tls.pipeline  # noqa: F401 - forked children inherit the imports, as in ingest

    tmp = Path(tempfile.mkdtemp(prefix="rw-bench-parallel-"))
    print(f"start-up, median of {repeat} (load average {os.getloadavg()[0]:.1f}):")
    print(f"{'mechanism':<12}{'wall ms':>10}{'cpu ms':>10}")
    for name, fn in (("fork", _fork), ("child", _child), ("mp spawn", _mp_spawn),
                     ("recorder", lambda: _recorder(tmp))):
        runs = [_timed(fn) for _ in range(repeat)]
        print(f"{name:<12}{statistics.median(w for w, _ in runs) * 1000:>10.1f}"
              f"{statistics.median(c for _, c in runs) * 1000:>10.1f}")


MODES = ("one process", "decode worker", "forked split")


def decode(capture: Path, keylog: Path, repeat: int, only: tuple[str, ...] = MODES) -> None:
    from collector.tls.native_decrypt import NativeDecrypt
    from collector.tls.pipeline import decode_capture

    def run(workers: bool) -> dict:
        r = decode_capture(capture, keylog, host_id="bench", secret_key=KEY, run_id="bench", workers=workers)
        return {"split": r.stats["split"], "tables": r.tables}

    def with_thread(fn):  # noqa: ANN001, ANN202 - a second thread, as in the live collector: no fork
        stop = threading.Event()
        t = threading.Thread(target=stop.wait)
        t.start()
        try:
            return fn()
        finally:
            stop.set()
            t.join()

    print(f"decode_capture on {capture.name} ({capture.stat().st_size / 1e6:.1f} MB), each mode {repeat}x in turn:")
    print(f"{'mode':<16}{'load':>6}{'wall s':>8}{'cpu self':>10}{'cpu child':>10}{'cpu all':>9}")
    modes = [(name, fn) for name, fn in (("one process", lambda: run(False)),
                                         ("decode worker", lambda: with_thread(lambda: run(True))),
                                         ("forked split", lambda: run(True))) if name in only]
    reference = None
    for _ in range(repeat):
        for name, fn in modes:
            load, c0, s0, t0 = os.getloadavg()[0], _children_cpu(), time.process_time(), time.perf_counter()
            out = fn()
            wall, cs, cc = time.perf_counter() - t0, time.process_time() - s0, _children_cpu() - c0
            if reference is None:
                reference = out["tables"]
            same = out["tables"] == reference
            assert out["split"] == (name == "forked split"), name
            print(f"{name:<16}{load:>6.1f}{wall:>8.2f}{cs:>10.2f}{cc:>10.2f}{cs + cc:>9.2f}"
                  f"{'' if same else '  ROWS DIFFER'}")
        t0 = time.perf_counter()
        NativeDecrypt(capture, keylog).prepare()
        print(f"{'prepare() alone':<16}{os.getloadavg()[0]:>6.1f}{time.perf_counter() - t0:>8.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--capture", type=Path, help="a capture with TLS key log (see bench/decode.py --keep)")
    ap.add_argument("--keylog", type=Path)
    ap.add_argument("--no-startup", action="store_true", help="only the decode modes")
    ap.add_argument("--modes", default=",".join(MODES), help=f"decode modes to time (of: {', '.join(MODES)})")
    a = ap.parse_args()
    if not a.no_startup:
        startup(a.repeat)
    if a.capture is not None:
        if a.keylog is None:
            raise SystemExit("--capture needs --keylog")
        only = tuple(m.strip() for m in a.modes.split(","))
        if not set(only) <= set(MODES):
            raise SystemExit(f"--modes: choose from {', '.join(MODES)}")
        decode(a.capture, a.keylog, max(1, a.repeat // 2), only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
