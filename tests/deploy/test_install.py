"""deploy/install.sh: idempotent, valid systemd units, and the privileges they grant really work:
the collector runs with only the unit's capabilities, the analyzer with none, and the dashboard's
group reads the store (its catalog in WAL mode) and cannot write it."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.collector.live.conftest import ebpf_skip_reason
from tests.conftest import BIN, REPO
from tests.support.units import as_collector_unit

INSTALL = REPO / "deploy" / "install.sh"
UNITS = ("routerwatch-collector.service", "routerwatch-dashboard.service", "routerwatch-analyzer.service")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="install.sh runs as root (CI runs as root)")


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        out[str(p.relative_to(root))] = (st.st_mode, st.st_gid, digest)
    return out


def install(root: Path, *extra: str) -> subprocess.CompletedProcess:
    """install.sh as a hardened admin runs it (umask 027): what the dashboard's user must read stays readable."""
    return subprocess.run(["bash", "-c", 'umask 027; exec bash "$0" "$@"', str(INSTALL), "--root", str(root),
                           "--no-start", *extra], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def installed() -> Path:
    """One install into a scratch root under a world-traversable directory (the dashboard's uid walks it)."""
    base = Path(tempfile.mkdtemp(prefix="rw-install-", dir="/tmp"))
    os.chmod(base, 0o755)
    for d in ("var", "var/lib", "etc"):  # there on every real system, 0755, whatever the admin's umask
        (base / d).mkdir()
        os.chmod(base / d, 0o755)
    first = install(base)  # with deploy/deps.sh, as a user would run it
    assert first.returncode == 0, first.stderr
    assert "user routerwatch: created" in first.stderr
    for unit in UNITS:
        assert f"unit {unit}: written" in first.stderr
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_second_run_changes_nothing(installed: Path):
    before = snapshot(installed)
    again = install(installed, "--skip-deps")
    assert again.returncode == 0, again.stderr
    assert "done (nothing to change)" in again.stderr, again.stderr
    assert snapshot(installed) == before
    assert open(installed / "etc/passwd").read().count("routerwatch:") == 1


def test_store_and_capture_directories(installed: Path):
    gid = group_id(installed)
    store = installed / "var/lib/routerwatch"
    for d in (store, store / "data"):
        st = d.stat()
        assert stat.S_IMODE(st.st_mode) == 0o2750 and st.st_gid == gid and st.st_uid == 0
    assert stat.S_IMODE((installed / "var/lib/routerwatch-capture").stat().st_mode) == 0o700
    assert "ROUTERWATCH_STORE=/var/lib/routerwatch" in (installed / "etc/default/routerwatch").read_text()


def test_store_left_open_before_the_install_is_given_to_the_group(tmp_path: Path):
    """A store a root `routerwatch ingest` filled (or a backup restored) before the install: what is
    inside gets the dashboard's group and loses o+rwx; a second run changes nothing."""
    base = tmp_path / "root"
    store = base / "var/lib/routerwatch"
    (store / "data/main/flows").mkdir(parents=True)
    for d in (store / "data/main", store / "data/main/flows"):
        os.chmod(d, 0o755)
    (store / "catalog.sqlite").write_bytes(b"catalog")
    (store / "data/main/flows/f.parquet").write_bytes(b"PAR1")
    (store / "secret.key").write_bytes(b"k" * 32)
    os.chmod(store / "catalog.sqlite", 0o644)
    os.chmod(store / "data/main/flows/f.parquet", 0o644)
    os.chmod(store / "secret.key", 0o600)
    first = install(base, "--skip-deps")
    assert first.returncode == 0, first.stderr
    gid = group_id(base)
    # data/main, data/main/flows, catalog, Parquet file, key (data/ itself is set up just before)
    assert f"install: store /var/lib/routerwatch: 5 files and folders given group {gid} and no access for " \
           "others" in first.stderr, first.stderr
    got = {str(p.relative_to(store)): (stat.S_IMODE(p.stat().st_mode), p.stat().st_gid) for p in store.rglob("*")}
    assert got == {"data": (0o2750, gid), "data/main": (0o750, gid), "data/main/flows": (0o750, gid),
                   "catalog.sqlite": (0o640, gid), "data/main/flows/f.parquet": (0o640, gid),
                   "secret.key": (0o600, gid)}
    again = install(base, "--skip-deps")
    assert again.returncode == 0 and "done (nothing to change)" in again.stderr, again.stderr


def test_units_verify_and_dashboard_is_never_root(installed: Path):
    units = [installed / "etc/systemd/system" / u for u in UNITS]
    text = {u.name: u.read_text() for u in units}
    assert "@" not in "".join(re.findall(r"^ExecStart=.*$", "".join(text.values()), re.M))
    assert f"{BIN.parent}/bin/routerwatch collect" in text[UNITS[0]]
    dash = text[UNITS[1]]
    assert re.search(r"^User=routerwatch$", dash, re.M) and "CapabilityBoundingSet=\n" in dash
    assert "ReadOnlyPaths=/var/lib/routerwatch\n" in dash and "ProtectSystem=strict" in dash
    ana = text[UNITS[2]]  # writes the store, with no capability at all
    # the store from the environment file (a fleet's catalog), this directory by default
    assert f"{BIN.parent}/bin/routerwatch analyze --follow --store ${{ROUTERWATCH_STORE}}" in ana
    assert "Environment=ROUTERWATCH_STORE=/var/lib/routerwatch\n" in ana
    assert "CapabilityBoundingSet=\n" in ana and "AmbientCapabilities=\n" in ana
    assert "ReadWritePaths=/var/lib/routerwatch\n" in ana and "ProtectSystem=strict" in ana
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    r = subprocess.run([analyze, "verify", *map(str, units)], capture_output=True, text=True, timeout=120)
    # verify exits 0 on unknown keys; its warnings are the signal
    noise = [ln for ln in (r.stderr + r.stdout).splitlines() if ln.strip() and "routerwatch" in ln]
    assert r.returncode == 0 and not noise, r.stderr


def who_has(path: Path) -> str:
    """For a failure message: the file's mode and owner now, and the processes that hold it open."""
    try:
        st = path.stat()
        now = f"now {oct(st.st_mode)} {st.st_uid}:{st.st_gid} ino {st.st_ino}"
    except OSError as e:
        now = f"now {e}"
    holders = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.path.realpath(fd) == str(path) for fd in fd_dir.iterdir()):
                holders.append((fd_dir.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:200])
        except OSError:
            continue
    return f"{now}; held by {holders}"


def group_id(root: Path) -> int:
    for line in (root / "etc/group").read_text().splitlines():
        name, _x, gid, *_ = line.split(":")
        if name == "routerwatch":
            return int(gid)
    raise AssertionError("no routerwatch group")


@pytest.mark.ebpf
@pytest.mark.skipif(ebpf_skip_reason() is not None, reason=ebpf_skip_reason() or "")
def test_collector_runs_with_unit_caps_and_dashboard_group_reads_only(installed: Path):
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is not installed")
    store = installed / "var/lib/routerwatch"
    cmd = as_collector_unit(["sh", "-c", 'umask 027; exec "$0" "$@"', str(BIN / "routerwatch"), "collect",
                             "--store", str(store), "--capture-dir", str(installed / "var/lib/routerwatch-capture"),
                             "--iface", "lo", "--duration", "3", "--interval", "1"])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert "mode=ebpf+capture" in r.stderr, r.stderr  # probes and capture, with only the unit's caps
    # and the uprobes too (the uprobe PMU refuses them without CAP_SYS_ADMIN on 6.18: tracefs events)
    assert re.search(r"probes: .*getaddrinfo@.*ssl\(", r.stderr) and "refused" not in r.stderr, r.stderr

    # A short, quiet run may leave every row inlined in the catalog (DuckLake's small-insert
    # inlining); maintenance under the same umask then moves them into Parquet data files.
    compact = [*cmd[:cmd.index("collect")], "store", "compact", "--store", str(store)]
    r = subprocess.run(compact, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr

    # the analyzer with its unit's privileges (uid 0, no capability) writes findings into that store
    r = subprocess.run(["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--", "sh", "-c", 'umask 027; exec "$0" "$@"',
                        str(BIN / "routerwatch"), "analyze", "--store", str(store)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "analyzed" in r.stdout, r.stderr

    gid = group_id(installed)
    files = [p for p in store.rglob("*") if p.is_file() and p.name != "secret.key"]
    # a one-shot command leaves nothing behind that holds the store (its catalog anchor included)
    assert not [h for p in files if "held by []" not in (h := who_has(p))], [who_has(p) for p in files]
    assert any(p.name == "catalog.sqlite" for p in files) and any(p.suffix == ".parquet" for p in files)
    for p in [store, *store.rglob("*")]:
        if p.name == "secret.key":
            continue
        st = p.stat()
        assert st.st_gid == gid, p
        assert st.st_mode & stat.S_IRGRP and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH), (p, oct(st.st_mode))
    as_dashboard = ["setpriv", "--reuid=65534", f"--regid={gid}", "--clear-groups", "--"]
    for p in files:
        r = subprocess.run([*as_dashboard, "cat", str(p)], capture_output=True)
        assert r.returncode == 0, (p, r.stderr, who_has(p))
    denied = subprocess.run([*as_dashboard, "touch", str(store / "data" / "intruder")], capture_output=True)
    assert denied.returncode != 0
    # and reads it, through the WAL files it cannot write, without changing a file
    before = snapshot(store)
    r = subprocess.run([*as_dashboard, str(BIN / "routerwatch"), "sql", "--store", str(store), "--format", "csv",
                        "SELECT count(*) FROM analyzer_runs"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "1", r.stderr
    assert snapshot(store) == before
