"""collector.live.lean and what it is for: the running `routerwatch collect` holds neither the BPF
compiler (bcc, LLVM, clang: the compile runs in a child that exits) nor pandas / pyarrow.dataset."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.collector.live.conftest import needs_ebpf


def _run(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_refused_modules_fail_to_import_and_duckdb_works_without_them():
    out = _run(
        "import sys\n"
        "from collector.live.lean import refuse_unused_modules\n"
        "assert refuse_unused_modules()\n"
        "import duckdb, pyarrow as pa\n"
        "con = duckdb.connect()\n"
        "assert con.execute('SELECT ? + 1', [41]).fetchone() == (42,)\n"  # a bound parameter
        "t = pa.table({'x': [1, 2, 3]})\n"
        "con.execute('CREATE TABLE y AS SELECT * FROM t')\n"  # an Arrow scan
        "assert con.execute('SELECT sum(x) FROM y').fetchone() == (6,)\n"
        "for m in ('pandas', 'pyarrow.dataset'):\n"
        "    try:\n"
        "        __import__(m)\n"
        "    except ModuleNotFoundError as e:\n"
        "        print(m, 'refused:', 'collector process' in str(e))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pandas' or m.startswith('pyarrow.dataset')))\n"
    )
    assert out.splitlines() == ["pandas refused: True", "pyarrow.dataset refused: True", "[]"]


def test_nothing_is_refused_once_loaded():
    assert _run("import pandas\nfrom collector.live.lean import refuse_unused_modules\n"
                "print(refuse_unused_modules())\nimport pandas.io.json") == "False"


def test_arrow_buffers_come_from_the_allocator_that_returns_them():
    """After return_freed_memory() Arrow allocates from the C library (its default, mimalloc, kept
    what the writer's batches freed: ~35 MB more after a TLS workload); trim_heap() gives a freed
    heap back: 200 MB of small allocations freed below a live one (which stops free() from shrinking
the heap: 207 of 213 MB stayed resident without the trim), then trimmed, leave the RSS near where
it began."""
    out = _run(
        "import pyarrow as pa\n"
        "from collector.live.lean import return_freed_memory, trim_heap\n"
        "return_freed_memory()\n"
        "t = pa.array(list(range(1000)))\n"
        "print(pa.default_memory_pool().backend_name, pa.total_allocated_bytes() >= 8000)\n"
        "def rss():\n"
        "    return int([x for x in open('/proc/self/status') if x.startswith('VmRSS')][0].split()[1]) // 1024\n"
        "before = rss()\n"
        "blocks = [bytearray(2000) for _ in range(100_000)]\n"
        "pin = bytearray(2000)\n"
        "grown = rss()\n"
        "del blocks\n"
        "trim_heap()\n"
        "print(grown - before > 150, rss() - before < 30)\n"
    )
    assert out.splitlines() == ["system True", "True True"]


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@needs_ebpf
def test_running_collector_maps_no_compiler_and_no_pandas(live, tmp_path):
    c = live("--iface", "lo", "--capture-dir", str(tmp_path / "cap"), "--buffer-dir", str(tmp_path / "buf"),
             "--interval", "1")
    assert "probes: tracepoints" in c.banner  # eBPF up, not the degraded mode
    time.sleep(3)  # a few stats intervals: the store written, the loop running
    assert c.proc.poll() is None, c.output()
    maps = Path(f"/proc/{c.proc.pid}/maps").read_text()
    # pyarrow/_dataset.cpython-*.so is pyarrow.dataset (libarrow_dataset.so comes with pyarrow.lib itself)
    for lib in ("libLLVM", "libclang", "libbcc", "/pandas/", "pyarrow/_dataset."):
        assert lib not in maps, f"{lib} is mapped in the collector"
    assert "libduckdb" in maps or "duckdb" in maps  # the check reads the right process's maps
    kids = subprocess.run(["ps", "-o", "args=", "--ppid", str(c.proc.pid)], capture_output=True, text=True).stdout
    assert "collector.ebpf.build" not in kids  # the compiler child has exited
    # 2026-12-06: 310-370 MB (64 of them the ring buffer's mapping), against ~570 MB with the compiler
    # resident; a bound that the compiler coming back (~200 MB) would break
    assert _rss_kb(c.proc.pid) < 450 * 1024
    assert c.stop() == 0, c.output()  # stopped, not killed: a SIGKILLed collector leaves its dumpcap running


def _ring_kb(pid: int) -> int:
    """Resident size of the probes' ring buffer mapping(s) in process `pid`."""
    total, in_ring = 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if "-" in line.split(" ", 1)[0] and not line.startswith(("Rss", "Size")):
            in_ring = line.rstrip().endswith("anon_inode:bpf-map")
        elif in_ring and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@needs_ebpf
def test_ring_mb_sets_the_ring_and_the_rss_it_costs(live, tmp_path):
    """The ring is kernel memory mapped whole into the collector: --ring-mb 8 maps 8 MiB (plus the
    consumer and producer pages), not the default 32."""
    c = live("--no-capture", "--ring-mb", "8", "--interval", "1")
    assert "probes: tracepoints" in c.banner
    try:
        ring = _ring_kb(c.proc.pid)
        assert 8 * 1024 <= ring < 9 * 1024, ring
    finally:
        assert c.stop() == 0, c.output()


def test_ring_mb_must_be_a_power_of_two():
    from tests.conftest import run_cli

    r = run_cli("collect", "--ring-mb", "48", "--duration", "1")
    assert r.returncode == 2 and "--ring-mb must be a power of two from 1 to 1024, not 48" in r.stderr
    assert "Traceback" not in r.stderr


def test_one_blas_thread_leaves_numpy_without_workers():
    """numpy's OpenBLAS starts a worker thread per core at import, each spinning before it sleeps
    (~0.1 s of CPU in a 500k-packet ingest). Without the setting, importing numpy on this 2-core
    machine adds a thread."""
    out = _run(
        "import os\n"
        "os.environ.pop('OPENBLAS_NUM_THREADS', None)\n"
        "from collector.live.lean import one_blas_thread\n"
        "one_blas_thread()\n"
        "before = len(os.listdir('/proc/self/task'))\n"
        "import numpy\n"
        "print(len(os.listdir('/proc/self/task')) - before)\n"
    )
    assert out == "0"


def test_lean_commands_ask_for_one_blas_thread_and_others_leave_the_environment_alone(tmp_path):
    """`collector.cli.main` sets it before a lean command (here `ingest` of a missing file, which
    imports numpy and fails in one line) and never for the others: `routerwatch wrap` runs the user's
    agent, which would inherit it (here `wrap` with no agent, refused in one line)."""
    store = str(tmp_path / "s")
    missing = str(tmp_path / "missing.pcap")
    out = _run(
        "import os, sys\n"
        "os.environ.pop('OPENBLAS_NUM_THREADS', None)\n"
        "from collector.cli import main\n"
        "rc = main(['wrap'])\n"
        "print(rc != 0, os.environ.get('OPENBLAS_NUM_THREADS'))\n"
        f"rc = main(['ingest', '--store', {store!r}, {missing!r}])\n"
        "print(rc, os.environ.get('OPENBLAS_NUM_THREADS'), 'numpy' in sys.modules)\n"
    )
    assert out.splitlines()[-2:] == ["True None", "2 1 True"]


def test_a_users_blas_setting_wins():
    assert _run("import os\nos.environ['OPENBLAS_NUM_THREADS'] = '2'\n"
                "from collector.live.lean import one_blas_thread\none_blas_thread()\n"
                "print(os.environ['OPENBLAS_NUM_THREADS'])") == "2"


def test_frozen_imports_leave_later_cycles_collectable():
    """freeze_imports() takes what is alive out of the collector's walks; a cycle made afterwards is
    still freed by a collection."""
    out = _run(
        "import gc, weakref\n"
        "from collector.live.lean import freeze_imports\n"
        "import numpy\n"
        "freeze_imports()\n"
        "print(gc.get_freeze_count() > 10_000)\n"
        "class C: pass\n"
        "a, b = C(), C()\n"
        "a.b, b.a = b, a\n"
        "r = weakref.ref(a)\n"
        "del a, b\n"
        "gc.collect()\n"
        "print(r() is None)\n"
    )
    assert out.splitlines() == ["True", "True"]
