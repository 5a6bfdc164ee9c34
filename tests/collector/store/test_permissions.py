"""File modes: nothing routerwatch writes is readable by other users, whatever the shell's umask.

Every command here runs as a user would (the installed console script) under umask 022, the usual
default that made 0644 catalogs and exports before; modes are compared exactly, file by file."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from collector.store import permissions
from tests.collector.live.conftest import ebpf_skip_reason
from tests.conftest import BIN, CORPUS

TLS = CORPUS / "tls12-illustrated.pcap"
TLS_KEYS = CORPUS / "tls12-illustrated.keys"
DNS = CORPUS / "dns-tcp-multirequest.pcap"
NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching uid needs root (CI runs as root)")
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the shared corpus is not beside this checkout ({CORPUS})")


def cli(*args: str, umask: int = 0o022, as_uid: int | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`routerwatch ARGS` started with `umask` (and as uid/gid `as_uid` when given)."""
    cmd = [str(BIN / "routerwatch"), *args]
    if as_uid is not None:
        cmd = ["setpriv", f"--reuid={as_uid}", f"--regid={as_uid}", "--clear-groups", "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=lambda: os.umask(umask))


def ok(p: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert p.returncode == 0, p.stderr
    return p


def modes(root: Path) -> dict[str, int]:
    """Every entry under `root` (root itself as '.') -> its mode bits, setgid included."""
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for p in root.rglob("*"):
        out[str(p.relative_to(root))] = stat.S_IMODE(p.lstat().st_mode)
    return out


def personal_mode(rel: str, is_dir: bool) -> int:
    """A store a user made: 0700 directory and data/, the key 0600, the rest 0640/0750 behind them."""
    if rel in (".", "data"):
        return 0o700
    if rel == "secret.key":
        return 0o600
    return 0o750 if is_dir else 0o640


def group_mode(rel: str, is_dir: bool) -> int:
    """The installed layout (2750 root:routerwatch): the group reads everything but the key."""
    if rel == "secret.key":
        return 0o600
    return 0o2750 if is_dir else 0o640


def expected(root: Path, rule) -> dict[str, int]:  # noqa: ANN001
    return {rel: rule(rel, (root / rel).is_dir()) for rel in modes(root)}


def ingest_and_analyze(store: Path, umask: int = 0o022) -> None:
    ok(cli("ingest", "--store", str(store), str(TLS), "--keylog", str(TLS_KEYS), umask=umask))
    ok(cli("ingest", "--store", str(store), str(DNS), umask=umask))
    ok(cli("analyze", "--store", str(store), umask=umask))
    ok(cli("store", "compact", "--store", str(store), umask=umask))  # inlined rows -> Parquet files


@pytest.fixture
def shared_tmp():
    """A scratch directory another uid can traverse (pytest's tmp_path is under a 0700 directory)."""
    d = Path(tempfile.mkdtemp(prefix="rw-perm-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@needs_corpus
def test_new_store_after_ingest_analyze_and_compact(store_dir):
    ingest_and_analyze(store_dir)
    got = modes(store_dir)
    assert any(r.endswith(".parquet") for r in got) and "catalog.sqlite-wal" in got and ".write.lock" in got
    assert got == expected(store_dir, personal_mode)


@needs_corpus
@needs_root
def test_group_store_as_installed_stays_readable_by_its_group_only(shared_tmp):
    store = shared_tmp / "store"
    store.mkdir()
    os.chown(store, 0, NOBODY)
    os.chmod(store, 0o2750)  # what deploy/install.sh makes, with nogroup standing in for routerwatch
    ingest_and_analyze(store, umask=0o022)
    got = modes(store)
    assert got == expected(store, group_mode)
    assert {p.stat().st_gid for p in [store, *store.rglob("*")]} == {NOBODY}
    # the dashboard's uid reads it, and it is not told anything about modes
    r = ok(cli("sql", "--store", str(store), "--format", "csv", "SELECT count(*) FROM flows", as_uid=NOBODY))
    assert r.stdout.splitlines()[-1] == "2" and r.stderr == ""


@needs_corpus
@pytest.mark.ebpf
@pytest.mark.skipif(ebpf_skip_reason() is not None, reason=ebpf_skip_reason() or "")
def test_collector_store_capture_ring_and_buffer(tmp_path):
    store, cap, buf = tmp_path / "store", tmp_path / "cap", tmp_path / "buf"
    ok(cli("collect", "--store", str(store), "--capture-dir", str(cap), "--buffer-dir", str(buf), "--iface", "lo",
           "--duration", "3", "--interval", "1", "-q"))
    assert modes(store) == expected(store, personal_mode)
    ring = modes(cap)
    assert ring["."] == 0o700 and any(r.endswith(".pcap") for r in ring)
    # dumpcap makes its segments 0600; our log 0640 (umask 027): nothing for others either way
    assert {r: m for r, m in ring.items() if r != "."} == {
        r: 0o600 if r.endswith(".pcap") else 0o640 for r in ring if r != "."}
    spool = modes(buf)
    assert spool["."] == 0o700 and all(m == (0o700 if (buf / r).is_dir() else 0o640) for r, m in spool.items()), spool


@needs_corpus
def test_world_readable_store_is_tightened_once_with_a_notice(tmp_path):
    store = tmp_path / "store"
    store.mkdir(mode=0o755)
    os.chmod(store, 0o755)  # `mkdir store` under umask 022, before the first ingest
    r = ok(cli("ingest", "--store", str(store), str(DNS)))
    notice = [ln for ln in r.stderr.splitlines() if "readable by other users" in ln]
    assert notice == [f"routerwatch: store {store} was readable by other users: tightened (mode 0755 -> 0700)"]
    assert modes(store) == expected(store, personal_mode)
    again = ok(cli("ingest", "--store", str(store), str(TLS)))
    assert "readable by other users" not in again.stderr


@needs_corpus
def test_store_an_older_version_left_open_is_tightened_by_a_reader(store_dir):
    ingest_and_analyze(store_dir)
    opened = 0
    for p in [store_dir / "catalog.sqlite", *store_dir.glob("data/**/*")]:  # what umask 022 made before
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
        opened += 1
    os.chmod(store_dir / "data", 0o700)  # the old code made these two 0700 itself
    assert opened > 10
    r = ok(cli("sql", "--store", str(store_dir), "--format", "csv", "SELECT count(*) FROM dns"))
    assert r.stdout.splitlines()[-1] == "40"
    assert r.stderr == ""  # behind a 0700 directory nothing was exposed: tightened without a word
    assert modes(store_dir) == expected(store_dir, personal_mode)


@needs_corpus
@needs_root
def test_store_others_can_reach_is_refused_when_this_user_cannot_tighten_it(shared_tmp):
    store = shared_tmp / "store"
    ok(cli("ingest", "--store", str(store), str(DNS)))
    os.chmod(store, 0o755)
    before = modes(store)
    r = cli("sql", "--store", str(store), "SELECT count(*) FROM dns", as_uid=NOBODY)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [
        f"routerwatch: error: store {store} is readable by other users (mode 0755) and cannot be tightened (this "
        f"user does not own it): run `chmod -R o-rwx {store} && chmod 700 {store}` as its owner"]
    assert modes(store) == before


@needs_corpus
@needs_root
def test_store_on_a_read_only_mount_is_refused(shared_tmp):
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) is not installed")
    store = shared_tmp / "store"
    ok(cli("ingest", "--store", str(store), str(DNS)))
    os.chmod(store, 0o755)
    q = str(store)
    script = (f"mount --bind {q} {q} && mount -o remount,bind,ro {q} && umask 022 && "
              f"exec {BIN / 'routerwatch'} sql --store {q} 'SELECT count(*) FROM dns'")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines() == [
        f"routerwatch: error: store {store} is readable by other users (mode 0755) and cannot be tightened "
        f"(Read-only file system): run `chmod -R o-rwx {store} && chmod 700 {store}` as its owner"]
    assert stat.S_IMODE(store.stat().st_mode) == 0o755


@needs_corpus
@needs_root
def test_closed_store_with_an_old_open_file_is_read_by_its_group(shared_tmp):
    """A directory others cannot enter protects what is inside: the dashboard reads without a word."""
    store = shared_tmp / "store"
    ok(cli("ingest", "--store", str(store), str(DNS)))
    for p in [store, *store.rglob("*")]:
        os.chown(p, 0, NOBODY)
        if p.is_dir():
            os.chmod(p, 0o750)
    os.chmod(store / "catalog.sqlite", 0o644)
    r = ok(cli("sql", "--store", str(store), "--format", "csv", "SELECT count(*) FROM dns", as_uid=NOBODY))
    assert r.stdout.splitlines()[-1] == "40" and r.stderr == ""
    assert stat.S_IMODE((store / "catalog.sqlite").stat().st_mode) == 0o644  # not the reader's to change


@needs_corpus
def test_exports_reports_and_eve_files(store_dir, tmp_path):
    ok(cli("ingest", "--store", str(store_dir), str(DNS)))
    out = tmp_path / "out"
    out.mkdir(mode=0o755)
    os.chmod(out, 0o755)  # a user's ordinary folder

    ok(cli("export", "--store", str(store_dir), "--duckdb", str(out / "copy.duckdb")))
    assert modes(out) == {".": 0o755, "copy.duckdb": 0o600}

    nested = out / "pq" / "today"
    ok(cli("export", "--store", str(store_dir), "--parquet", str(nested)))
    got = modes(out / "pq")
    tables = [r for r in got if r.endswith(".parquet")]
    assert "today/flows.parquet" in tables and "today/dns.parquet" in tables
    assert got == {".": 0o700, "today": 0o700, **{r: 0o600 for r in tables}}

    old = out / "again"  # an export into a folder that exists, over an older 0644 export
    old.mkdir(mode=0o755)
    os.chmod(old, 0o755)
    (old / "dns.parquet").write_bytes(b"old")
    os.chmod(old / "dns.parquet", 0o644)
    ok(cli("export", "--store", str(store_dir), "--parquet", str(old)))
    again = modes(old)
    assert again["."] == 0o755 and {m for r, m in again.items() if r != "."} == {0o600}
    assert (old / "dns.parquet").read_bytes()[:4] == b"PAR1"

    report = out / "report.md"
    r = ok(cli("report", "--store", str(store_dir), "-o", str(report)))
    assert stat.S_IMODE(report.stat().st_mode) == 0o600 and report.read_text().startswith("#")
    assert r.stderr.splitlines() == [f"wrote {report}"]
    report.write_text("old report")
    os.chmod(report, 0o644)
    ok(cli("report", "--store", str(store_dir), "-o", str(report)))
    assert stat.S_IMODE(report.stat().st_mode) == 0o600 and report.read_text() != "old report"
    assert sorted(p.name for p in out.iterdir()) == ["again", "copy.duckdb", "pq", "report.md"]  # no temp file left

    missing = cli("report", "--store", str(store_dir), "-o", str(out / "nowhere" / "r.md"))
    assert missing.returncode == 2 and missing.stderr.splitlines() == [
        f"routerwatch: error: cannot write {out / 'nowhere' / 'r.md'}: No such file or directory"]

    eve = out / "siem" / "eve.json"
    ok(cli("analyze", "--store", str(store_dir), "--eve", str(eve)))
    assert stat.S_IMODE(eve.stat().st_mode) == 0o640 and stat.S_IMODE(eve.parent.stat().st_mode) == 0o750
    assert eve.read_text().count('"event_type": "ledger"') == 1


def test_umask_is_only_ever_tightened():
    old = os.umask(0o022)
    try:
        assert permissions.restrict_umask() == 0o027
        os.umask(0o077)
        assert permissions.restrict_umask() == 0o077
        os.umask(0o002)
        with permissions.private_umask():
            assert os.umask(0o077) == 0o077
        assert os.umask(0o002) == 0o002  # restored
    finally:
        os.umask(old)


def test_open_entries_behind_a_closed_directory_are_tightened_quietly(tmp_path):
    """The open-time check looks at the directory and its top-level entries (a few stat calls)."""
    store = tmp_path / "s"
    store.mkdir(mode=0o700)
    os.chmod(store, 0o700)
    sqlite3.connect(store / "catalog.sqlite").close()
    os.chmod(store / "catalog.sqlite", 0o644)
    (store / "data" / "main").mkdir(parents=True)
    for d in (store / "data", store / "data" / "main"):
        os.chmod(d, 0o755)
    seen: list[str] = []
    permissions.secure_store(store, notice=seen.append)
    assert seen == []  # nothing was exposed behind the 0700 directory
    assert modes(store) == {".": 0o700, "catalog.sqlite": 0o640, "data": 0o750, "data/main": 0o750}
    os.chmod(store, 0o755)
    os.chmod(store / "data" / "main", 0o755)
    permissions.secure_store(store, notice=seen.append)
    assert seen == [f"routerwatch: store {store} was readable by other users: tightened (mode 0755 -> 0700, "
                    "1 entries inside lost o+rwx)"]
    assert modes(store) == {".": 0o700, "catalog.sqlite": 0o640, "data": 0o750, "data/main": 0o750}


def test_store_named_through_a_symlink_is_tightened_once(tmp_path):
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    os.chmod(real, 0o755)
    link.symlink_to(real)
    seen: list[str] = []
    permissions.secure_store(link, notice=seen.append)
    permissions.secure_store(link, notice=seen.append)
    assert seen == [f"routerwatch: store {link} was readable by other users: tightened (mode 0755 -> 0700)"]
    assert stat.S_IMODE(real.stat().st_mode) == 0o700 and link.is_symlink()
