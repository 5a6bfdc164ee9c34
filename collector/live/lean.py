"""Keep the long-running collector process small: optional modules it never uses stay unloaded.

DuckDB's Python client imports pandas the first time a query binds a parameter, and scans an Arrow
table through `pyarrow.dataset`, which loads pyarrow's filesystems (S3, GCS, Azure, HDFS), Parquet,
CSV, JSON and Substrait modules. Both are optional to DuckDB (it behaves the same where they are not
installed, and inserts Arrow tables as fast: 0.10 against 0.12 CPU-s per 1M rows here) and the
collector uses neither. Loaded, they cost ~50 MB of resident memory for the life of a daemon that
runs on every agent host. `refuse_unused_modules()` makes importing them fail in this process only,
exactly as if they were not installed. `collector.cli.main` calls it before every command whose parser
sets `lean=True` (collect, ingest, analyze, findings, report); library users (tests, other commands)
are unaffected. For ingest: building an Arrow array
from numpy asks pyarrow's pandas shim whether the input is a pandas Series, which imported pandas:
a 120-packet ingest peaked at 209 MB with it and 171 MB without (bench/ingest.py's tiny run); the
500k-packet ingest's time did not change measurably (2.00 → 2.01 s wall).

Two more process-wide settings live here: no BLAS worker threads (`one_blas_thread`, set by
`collector.cli.main` for the same lean commands, which run none of the user's programs: `routerwatch
wrap`'s agent never inherits it) and the imported modules frozen out of the garbage collector's full
collections (`freeze_imports`, called by `routerwatch ingest` once its imports are done).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import importlib.abc
import os
import sys

UNUSED = ("pandas", "pyarrow.dataset")


class _Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name in UNUSED or name.startswith(tuple(m + "." for m in UNUSED)):
            raise ModuleNotFoundError(f"No module named {name!r} (not loaded in the collector process)", name=name)
        return None


def refuse_unused_modules() -> bool:
    """Refuse UNUSED from now on in this process; False when one is already loaded (nothing to save)."""
    if any(m in sys.modules for m in UNUSED):
        return False
    if not any(isinstance(f, _Refuse) for f in sys.meta_path):
        sys.meta_path.insert(0, _Refuse())
    return True


def one_blas_thread() -> None:
    """No BLAS worker threads in this process (call it before numpy is imported; a user's own
    OPENBLAS_NUM_THREADS wins). numpy's bundled OpenBLAS starts a worker per core at import, and each
    spins before it sleeps: in a 500k-packet `routerwatch ingest` they were 5% of the process's CPU
    samples (~0.1 s, on the core the ingest's hash-and-open thread needs). The lean commands do no
    linear algebra. The variable is inherited by child processes, so a command that runs the user's
    programs must not call this."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def freeze_imports() -> None:
    """Put every object alive now out of the cyclic garbage collector's reach (call it once the
    imports are done). A full collection walks every tracked object, and numpy, pyarrow and DuckDB
    bring ~30,000 of them: in a 500k-packet ingest its one full collection took 15-22 ms, almost all
    of it in those modules. Objects made afterwards are collected as before; the frozen ones are
    modules, classes and functions that live as long as the process anyway."""
    gc.freeze()


def return_freed_memory() -> None:
    """Arrow buffers from the C library's allocator instead of pyarrow's default (mimalloc), which
    keeps what the writer's batches freed: under a TLS workload decoded into 100k exchanges in 30 s
    the collector stayed ~35 MB larger afterwards with it (bench/live.py --only rss)."""
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())


_libc = None


def trim_heap() -> None:
    """Give the heap's free pages back to the system (glibc's malloc_trim; a no-op elsewhere): the
    collector calls it every stats interval, after the work that freed them."""
    global _libc
    if _libc is None:
        try:  # glibc's soname first: find_library runs `ldconfig -p` (~13 ms, a process)
            _libc = ctypes.CDLL("libc.so.6")
        except OSError:
            _libc = ctypes.CDLL(ctypes.util.find_library("c"))
    trim = getattr(_libc, "malloc_trim", None)
    if trim is not None:
        trim(0)
