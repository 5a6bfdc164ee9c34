"""Several writers and readers on one embedded store (SQLite catalog), each a real process: nothing
fails, nothing is lost, reads stay fast, and a read-only view of the store (the dashboard's systemd
unit) reads it with the catalog in WAL mode."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from collector.store import BatchWriter, Store, anchor
from collector.store.errors import StoreBusyError
from collector.store.locking import StoreLock
from tests.conftest import BIN, REPO, run_cli

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching uid and mounting need root (CI runs as root)")


@pytest.fixture
def shared_tmp():
    """A scratch directory another uid can traverse (pytest's tmp_path is under a 0700 directory)."""
    d = Path(tempfile.mkdtemp(prefix="rw-store-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _worker(kind: str, store: Path, seconds: float, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.support.store_load", kind, str(store), str(seconds), *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(p: subprocess.Popen, timeout: float = 180) -> dict:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_long_writer_small_batches_and_reader_at_once(store_dir):
    """The failure of the issue: a long write transaction (an analyze) beside a writer committing 50-row
    batches and a reader. Without the write lock the long one failed 7-10 of 10 ('database is locked')."""
    Store.open(str(store_dir)).close()
    long = _worker("long", store_dir, 12, "--hold", "0.5", "--tag", "long")
    small = _worker("batches", store_dir, 12, "--rows", "50", "--tag", "small")
    reads = _worker("reads", store_dir, 12)
    rl, rs, rr = _result(long), _result(small), _result(reads)
    assert (rl["failed"], rs["failed"], rr["failed"]) == (0, 0, 0), (rl["errors"], rs["errors"], rr["errors"])
    assert rl["ok"] >= 3 and rs["ok"] >= 10, (rl, rs)
    assert max(rr["latency"]) < 2.0, sorted(rr["latency"])[-5:]
    assert rr["counts"] == sorted(rr["counts"])  # a reader only ever sees whole commits, in order
    with Store.open(str(store_dir), read_only=True) as s:
        got = dict(s.sql("SELECT query, count(*) FROM dns GROUP BY 1").fetchall())
    assert got == {"long": rl["rows"], "small": rs["rows"]}  # exact: nothing lost, nothing twice


def test_catalog_in_wal_mode_and_wal_files_kept(store_dir):
    with Store.open(str(store_dir)) as s:
        mode = s.sql("SELECT * FROM sqlite_query('__ducklake_metadata_lake', 'PRAGMA journal_mode')").fetchone()[0]
        pid = anchor.running(str(store_dir / "catalog.sqlite"))
        assert pid is not None and Path(f"/proc/{pid}").exists()
        with BatchWriter(s) as w:
            w.add("dns", [{"query": "x"}])
    assert mode == "wal"
    assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/status").read_text().find("State:\tZ") >= 0
    # the anchor closed last and read-only: the -wal/-shm files a read-only reader needs are still there
    assert (store_dir / "catalog.sqlite-wal").exists() and (store_dir / "catalog.sqlite-shm").exists()


def test_opening_an_existing_store_never_removes_the_wal_files(store_dir):
    """A writer process opening a store nobody else has open: its first SQLite connection (the
    ATTACH's) must not close last, or the -wal/-shm files vanish until its next transaction and a
    read-only reader opening then fails (seen in CI under load: the anchor started after the ATTACH)."""
    with Store.open(str(store_dir)) as s, BatchWriter(s) as w:
        w.add("dns", [{"query": "x"}])
    wal = store_dir / "catalog.sqlite-wal"
    assert wal.exists()
    gone: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if not wal.exists():
                gone.append(time.monotonic())

    t = threading.Thread(target=watch)
    t.start()
    try:
        for _ in range(3):
            subprocess.run([sys.executable, "-c", "import sys; from collector.store import BatchWriter, Store\n"
                            "with Store.open(sys.argv[1]) as s, BatchWriter(s) as w: w.add('dns', [{'query': 'y'}])",
                            str(store_dir)], cwd=REPO, check=True, timeout=120)
    finally:
        stop.set()
        t.join()
    assert gone == [], f"-wal missing at {len(gone)} of the watcher's looks"


def _group_readable_store(root: Path) -> tuple[Path, int]:
    """A store laid out as install.sh does: root-owned, group `nogroup` reads, nobody writes but root."""
    gid = 65534
    store = root / "store"
    old = os.umask(0o027)
    try:
        with Store.open(str(store)) as s, BatchWriter(s) as w:
            w.add("dns", [{"query": "before"} for _ in range(7)])
    finally:
        os.umask(old)
    for p in [store, *store.rglob("*")]:
        os.chown(p, 0, gid)
        os.chmod(p, 0o750 if p.is_dir() else 0o640)
    return store, gid


def _as_reader(gid: int, *cmd: str) -> list[str]:
    return ["setpriv", "--reuid=65534", f"--regid={gid}", "--clear-groups", "--", *cmd]


READ = "import sys; from collector.store import Store; s = Store.open(sys.argv[1], read_only=True); " \
       "print(s.sql('SELECT count(*) FROM dns').fetchone()[0])"


@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is not installed")
def test_reader_without_write_access_reads_a_wal_catalog(shared_tmp):
    """The dashboard's uid can read the store but write nothing in it (not even -shm): it still reads,
    with and without a writer running, and its reads do not change any file."""
    store, gid = _group_readable_store(shared_tmp)
    before = {p.name: p.stat().st_mtime_ns for p in store.iterdir()}
    r = subprocess.run(_as_reader(gid, sys.executable, "-c", READ, str(store)), cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "7", r.stderr
    assert {p.name: p.stat().st_mtime_ns for p in store.iterdir()} == before
    writer = _worker("batches", store, 6, "--rows", "10", "--tag", "during")
    time.sleep(1.5)
    seen = []
    while writer.poll() is None:
        r = subprocess.run(_as_reader(gid, sys.executable, "-c", READ, str(store)), cwd=REPO, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        seen.append(int(r.stdout))
    res = _result(writer)
    assert res["failed"] == 0 and seen == sorted(seen) and seen[-1] >= 7


@needs_root
@pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux unshare is not installed")
def test_reader_on_a_read_only_bind_mount(tmp_path):
    """ReadOnlyPaths= in a unit is a read-only bind mount: a reader there reads while a writer writes."""
    with Store.open(str(tmp_path / "store")) as s, BatchWriter(s) as w:
        w.add("dns", [{"query": "before"} for _ in range(3)])
    store = tmp_path / "store"
    writer = _worker("batches", store, 8, "--rows", "10", "--tag", "during")
    time.sleep(1.5)
    script = f"mount --bind -o ro {store} {store} && ! touch {store}/probe 2>/dev/null && " + \
             " ".join([sys.executable, "-c", f'"{READ}"', str(store)]) + " && sleep 1 && " + \
             " ".join([sys.executable, "-c", f'"{READ}"', str(store)])
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    res = _result(writer)
    assert r.returncode == 0, r.stderr
    first, second = map(int, r.stdout.split())
    assert 3 <= first <= second and res["failed"] == 0


def test_write_lock_is_taken_in_turn(tmp_path):
    """A writer that releases and asks again queues behind the one already waiting."""
    lock = StoreLock(tmp_path, "write")
    other = StoreLock(tmp_path, "write")  # separate descriptors: excludes like another process would
    order: list[str] = []
    stop = threading.Event()

    def hog() -> None:
        while not stop.is_set():
            with lock.held("hog"):
                order.append("hog")
                time.sleep(0.01)

    t = threading.Thread(target=hog)
    t.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    with other.held("waiter"):
        order.append("waiter")
        waited = time.monotonic() - t0
    stop.set()
    t.join()
    assert waited < 0.5 and "waiter" in order[:order.index("waiter") + 1]
    assert order.index("waiter") <= 12, order[:20]  # a few hog turns at most, not until the hog stops


def test_the_holder_line_is_there_while_the_lock_is_held_and_gone_after(tmp_path):
    """`.write.lock` names its holder only while held: a line left after release read as a lock held
    by a run long over."""
    lock = StoreLock(tmp_path, "write")
    assert lock.holder() == ""
    with lock.held("an analyze run"):
        with lock.held("nested"):  # re-entrant: the outer holder's line stays
            pass
        assert lock.holder().startswith(f"pid {os.getpid()}: an analyze run (since ")
    assert lock.holder() == ""
    assert (tmp_path / ".write.lock").exists()  # the file stays: others open it to wait


def test_a_write_that_gives_up_says_so_in_one_line(store_dir):
    """Lock held by another process past the deadline: the rows stay pending, the message counts them,
    and the command-line exits 75 with one line, no traceback."""
    Store.open(str(store_dir)).close()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from collector.store.locking import StoreLock; l = StoreLock(Path(sys.argv[1]), 'write'); "
                               "l.acquire('a test holding the lock'); print('held', flush=True); time.sleep(60)",
                               str(store_dir)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with Store.open(str(store_dir), migrate=False) as s:
            w = BatchWriter(s, deadline=1.0)
            w.add("dns", [{"query": "q"} for _ in range(42)])
            t0 = time.monotonic()
            with pytest.raises(StoreBusyError, match="42 rows not committed") as e:
                w.flush()
            assert time.monotonic() - t0 < 5
            assert "a test holding the lock" in str(e.value) and "\n" not in str(e.value)
            assert w.pending_rows() == 42
        out = run_cli("canary", "new", "--kind", "aws", "--store", str(store_dir),
                      env={"ROUTERWATCH_WRITE_DEADLINE": "1"})
        assert out.returncode == 75, out.stderr
        assert out.stderr.count("\n") == 1 and "routerwatch: error:" in out.stderr and "Traceback" not in out.stderr
        assert out.stdout == ""  # the canary is printed only once it is registered
    finally:
        holder.kill()
        holder.wait()
    with Store.open(str(store_dir), read_only=True) as s:
        assert s.sql("SELECT count(*) FROM dns").fetchone()[0] == 0  # nothing half-written


@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is not installed")
def test_read_only_error_when_wal_files_cannot_be_made(shared_tmp):
    """A read-only open that cannot create the -wal/-shm files it needs says what to do, in one line."""
    store, gid = _group_readable_store(shared_tmp)
    # a plain SQLite writer closing last (not routerwatch: no anchor) checkpoints and deletes them
    subprocess.run([sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
                    "c.execute('PRAGMA wal_checkpoint(TRUNCATE)'); c.close()", str(store / "catalog.sqlite")], check=True)
    assert not (store / "catalog.sqlite-wal").exists() and not (store / "catalog.sqlite-shm").exists()
    r = subprocess.run(_as_reader(gid, str(BIN / "routerwatch"), "sql", "--store", str(store), "SELECT 1"), cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "-wal/-shm files are missing" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    # the store's owner opening it (read-only even) makes them again, and they stay
    with Store.open(str(store), read_only=True) as s:
        assert s.sql("SELECT count(*) FROM dns").fetchone()[0] == 7
    r = subprocess.run(_as_reader(gid, sys.executable, "-c", READ, str(store)), cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "7", r.stderr
