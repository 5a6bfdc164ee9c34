"""The analyzer service's run cost while data files pile up: early compaction on, and off as its peer.

DuckLake reads a table's whole file list and every file's column statistics for each query that
scans it, so each analyzer run slows as the collector's small commits add files. The service
compacts hourly, and early once `analyzer.service.COMPACT_AT_FILES` more files have piled up. This
bench feeds a new store the collector's way (one commit of 50 flows and 12 processes at a time, one
exchange with its tool call every tenth commit) while the service follows it in a thread, once with
the early compaction (the default) and once without (the peer: hourly only), and prints each run's
thread CPU by sixths of the commits, the compactions, and the last sixth's ratio.

    .venv/bin/python bench/compaction.py [--commits 1200] [--pause 0.05] [--limit 400] [--store DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as `python bench/X.py`: the repo root

from analyzer import engine, service  # noqa: E402
from analyzer.service import FollowOptions, follow  # noqa: E402
from bench.analyze import make_exchanges, make_flows  # noqa: E402 - the generators bench/analyze.py uses
from collector.store import BatchWriter, Store, maintainer  # noqa: E402


def _arm(path: Path, commits: int, pause: float, limit: int, check_every: float) -> dict:
    """Feed a new store at `path` with the service following it; return its runs and compactions."""
    shutil.rmtree(path, ignore_errors=True)
    Store.open(str(path)).close()
    done = [0]
    runs: list[tuple[int, float]] = []  # (commits made when the run started, the run's thread CPU s)
    compactions: list[tuple[int, float]] = []  # (commits made, wall s)
    analyze, maintain_once = engine.analyze, maintainer.maintain_once

    def timed_analyze(*args, **kwargs):
        at, cpu = done[0], time.thread_time()  # one DuckDB thread for small runs: the service's thread
        try:
            return analyze(*args, **kwargs)
        finally:
            runs.append((at, time.thread_time() - cpu))

    def timed_maintain(*args, **kwargs):
        at, t = done[0], time.perf_counter()
        try:
            return maintain_once(*args, **kwargs)
        finally:
            compactions.append((at, time.perf_counter() - t))

    saved = (service.COMPACT_AT_FILES, service.FILE_CHECK_EVERY_S)
    engine.analyze, maintainer.maintain_once = timed_analyze, timed_maintain
    service.COMPACT_AT_FILES, service.FILE_CHECK_EVERY_S = limit, check_every
    stop, stats = threading.Event(), []
    opts = FollowOptions(store=str(path), interval=0.2, quiet=True, compact_every=3600)
    thread = threading.Thread(target=lambda: stats.append(follow(opts, stop)))
    rng = np.random.default_rng(5)
    thread.start()
    try:
        with Store.open(str(path)) as store:
            while done[0] < commits:
                i = done[0]
                with BatchWriter(store) as w:
                    w.add("flows", make_flows(50, i * 50, rng))
                    w.add("processes", [{"ts": None, "host_id": "bench", "pid": 1000 + i, "ppid": 1,
                                         "exe": "/usr/bin/agent"} for _ in range(12)])
                    if i % 10 == 0:
                        exchanges, calls, _secrets = make_exchanges(1, 30_000_000 + i, rng)
                        w.add("llm_exchanges", exchanges)
                        w.add("tool_calls", calls)
                done[0] += 1
                if done[0] % 200 == 0:
                    print(f"    {done[0]} commits, {len(runs)} runs, {len(compactions)} compactions", flush=True)
                time.sleep(pause)
            time.sleep(5)  # the last exchanges' run
            files = store.data_file_count()  # what the service counts
    finally:
        stop.set()
        thread.join(600)
        engine.analyze, maintainer.maintain_once = analyze, maintain_once
        service.COMPACT_AT_FILES, service.FILE_CHECK_EVERY_S = saved
    return {"runs": runs, "compactions": compactions, "files": files,
            "failures": stats[0].failures if stats else None}


def _sixths(runs: list[tuple[int, float]], commits: int) -> list[float | None]:
    step = max(1, commits // 6)
    out = []
    for lo in range(0, step * 6, step):
        sel = [cpu for at, cpu in runs if lo <= at < lo + step]
        out.append(statistics.median(sel) if sel else None)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commits", type=int, default=1200, help="collector-sized commits per arm (default 1200)")
    ap.add_argument("--pause", type=float, default=0.05, help="seconds between commits (default 0.05)")
    ap.add_argument("--limit", type=int, default=service.COMPACT_AT_FILES,
                    help=f"files that start an early compaction (default {service.COMPACT_AT_FILES})")
    ap.add_argument("--check-every", type=float, default=5.0,
                    help="seconds between the service's file counts (default 5; the service's own is "
                         f"{service.FILE_CHECK_EVERY_S:.0f}, scaled down with the commits' pace)")
    ap.add_argument("--store", type=Path, help="a directory for the two stores (default: a temporary one)")
    a = ap.parse_args()
    root = a.store or Path(tempfile.mkdtemp(prefix="rw-compaction-"))
    results = {}
    for name, limit in (("hourly only (peer)", 10**9), ("early compaction", a.limit)):
        print(f"{name}: {a.commits} commits", flush=True)
        t = time.perf_counter()
        results[name] = r = _arm(root / name.split()[0], a.commits, a.pause, limit, a.check_every)
        cpu = sum(c for _, c in r["runs"]) + sum(s for _, s in r["compactions"])
        print(f"  {time.perf_counter() - t:.0f} s, {len(r['runs'])} runs, {r['files']} data files at the end, "
              f"service failures {r['failures']}; run CPU + compaction s in all {cpu:.1f}")
        print("  run thread CPU median by sixth of the commits, s: "
              + ", ".join("-" if m is None else f"{m:.2f}" for m in _sixths(r["runs"], a.commits)))
        print("  compactions (at commit: s): "
              + (", ".join(f"{at}: {s:.2f}" for at, s in r["compactions"]) or "none"))
    peer, ours = (_sixths(results[k]["runs"], a.commits)[-1] for k in results)
    if peer and ours:
        print(f"last sixth, run CPU median: {ours:.2f} s with early compaction, {peer:.2f} s hourly only: "
              f"{ours / peer:.2f}x")
    if a.store is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
