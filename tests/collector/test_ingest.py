"""`routerwatch ingest` through the CLI: bad input, truncation, idempotency, deterministic uids."""

from __future__ import annotations

import json
import os
import shutil
import stat
import struct
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import BIN, CORPUS, run_cli
from tests.support import tshark
from tests.support.gen_capture import generate


@pytest.fixture(scope="module")
def small_pcap(tmp_path_factory) -> Path:
    """~3k packets: ~100 TLS connections with distinct SNI, DNS for every other one."""
    path = tmp_path_factory.mktemp("cap") / "small.pcap"
    generate(str(path), packets=3000, data=20)
    return path


def sql(store: Path, query: str) -> list[dict]:
    p = run_cli("sql", "--store", str(store), "--format", "json", query)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def assert_one_line_error(p: subprocess.CompletedProcess, *needles: str) -> None:
    assert p.returncode != 0
    lines = [ln for ln in p.stderr.splitlines() if ln.strip() and "Running as user" not in ln]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("routerwatch: error:"), lines
    for n in needles:
        assert n in lines[0], lines[0]


def test_ingest_small_capture(small_pcap: Path, store_dir: Path) -> None:
    p = run_cli("ingest", "--store", str(store_dir), "--host-id", "h1", str(small_pcap))
    assert p.returncode == 0, p.stderr
    flows = sql(store_dir, "SELECT proto, count(*) AS n, count(server_name) AS named FROM flows GROUP BY proto ORDER BY proto")
    assert flows == [{"proto": "tcp", "n": 103, "named": 103}, {"proto": "udp", "n": 52, "named": 0}]
    tls = sql(store_dir, "SELECT count(DISTINCT sni) AS sni, min(version) AS v, min(ja4) AS ja4, "
                         "bool_and(NOT decrypted) AS plain FROM tls")
    assert tls == [{"sni": 103, "v": "TLS 1.3", "ja4": tls[0]["ja4"], "plain": True}]
    assert tls[0]["ja4"].startswith("t13d0506h2_")
    states = sql(store_dir, "SELECT DISTINCT tcp_state, history FROM flows WHERE proto = 'tcp'")
    assert states == [{"tcp_state": "SF", "history": "ShADdFf"}]
    dns = sql(store_dir, "SELECT d.query, d.answers, f.proto, f.dst_port FROM dns d JOIN flows f USING (flow_uid) "
                         "WHERE d.query = 'api0.router0.example.com'")
    assert dns == [{"query": "api0.router0.example.com", "answers": ["198.18.0.1"], "proto": "udp", "dst_port": 53}]
    run = sql(store_dir, "SELECT status, packets, truncated, flows, format, header_walk, sha256 FROM ingest_runs")
    assert run[0]["status"] == "ok" and run[0]["packets"] == 2988 and run[0]["truncated"] is False
    assert run[0]["flows"] == 155 and run[0]["format"] == "pcap" and run[0]["header_walk"] == "numpy"


def test_the_capture_hash_is_the_files_sha256_across_windows(small_pcap: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """_sha256 maps the capture a window at a time: the digest is the whole file's sha256 whatever
    the window (one page, an odd number of pages, larger than the file)."""
    import hashlib
    import mmap

    from collector import ingest

    want = hashlib.sha256(small_pcap.read_bytes()).hexdigest()
    for window in (mmap.PAGESIZE, 3 * mmap.PAGESIZE, 1 << 30):
        monkeypatch.setattr(ingest, "HASH_WINDOW", window)
        assert ingest._sha256(small_pcap) == want, window


def test_a_capture_that_cannot_be_hashed_fails_the_ingest(small_pcap: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The hash runs in the store's thread; its error reaches the caller (flow ids are never made from
    an empty digest) and nothing is stored."""
    from collector import ingest as ingest_mod
    from collector.capture import flows

    def unreadable(_: Path) -> str:
        raise OSError("read error")

    def no_uids(*_):
        raise AssertionError("flow ids made without the capture's digest")

    monkeypatch.setattr(ingest_mod, "_sha256", unreadable)
    monkeypatch.setattr(flows, "flow_uids", no_uids)
    with pytest.raises(OSError, match="read error"):
        ingest_mod.ingest(small_pcap, store=str(tmp_path / "s"), host_id="h1")
    assert not (tmp_path / "s").exists() or sql(tmp_path / "s", "SELECT count(*) AS n FROM flows") == [{"n": 0}]


def test_the_store_an_ingest_opens_has_one_duckdb_worker(small_pcap: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """INGEST_DUCKDB_THREADS reaches Store.open (a second worker only competed with the ingest's own
    threads); a store the caller passes in is used as it is."""
    from collector import ingest as ingest_mod
    from collector.store import Store

    asked: list[int | None] = []
    real_open = Store.open.__func__

    def recording_open(cls, spec=None, **kw):
        asked.append(kw.get("threads"))
        return real_open(cls, spec, **kw)

    monkeypatch.setattr(Store, "open", classmethod(recording_open))
    ingest_mod.ingest(small_pcap, store=str(tmp_path / "s"), host_id="h1")
    assert asked == [ingest_mod.INGEST_DUCKDB_THREADS] == [1]


def test_a_rerun_after_an_interrupted_ingest_leaves_no_duplicates(small_pcap: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """An ingest that dies after committing some batches but before its run row (the crash case):
    the next ingest of the capture finds those rows by one flow's uid and start time, removes them,
    and stores every row once."""
    from collector import ingest as ingest_mod

    store = tmp_path / "s"
    real = ingest_mod._run_row

    def crash(*a, **k):  # noqa: ANN002, ANN003
        raise KeyboardInterrupt

    monkeypatch.setattr(ingest_mod, "_run_row", crash)
    with pytest.raises(KeyboardInterrupt):
        ingest_mod.ingest(small_pcap, store=str(store), host_id="h1", batch_rows=40)
    left = sql(store, "SELECT count(*) AS n FROM flows")[0]["n"]
    assert left > 0  # batches committed, no run row
    assert sql(store, "SELECT count(*) AS n FROM ingest_runs")[0]["n"] == 0
    monkeypatch.setattr(ingest_mod, "_run_row", real)
    res = ingest_mod.ingest(small_pcap, store=str(store), host_id="h1")
    assert res.status == "ok" and res.flows == 155
    counts = sql(store, "SELECT (SELECT count(*) FROM flows) AS flows, (SELECT count(DISTINCT flow_uid) FROM flows) AS uids, "
                        "(SELECT count(*) FROM tls) AS tls, (SELECT count(DISTINCT flow_uid) FROM tls) AS tls_uids")
    assert counts == [{"flows": 155, "uids": 155, "tls": 103, "tls_uids": 103}]


def test_ingest_starts_without_the_other_components_commands(tmp_path: Path) -> None:
    """`routerwatch ingest` registers only the collector's commands (the analyzer's and dashboard's
    imports are start-up time it never uses); the full command line is there for everything else."""
    probe = ("import sys; from collector.cli import main; rc = main(['ingest', sys.argv[1]]); "
             "print(rc, sorted(m for m in sys.modules if m.split('.')[0] in ('analyzer', 'dashboard')))")
    p = subprocess.run([str(BIN / "python"), "-c", probe, str(tmp_path / "missing.pcap")], capture_output=True,
                       text=True)
    assert p.stdout.split("\n")[0] == "2 []", p.stderr
    assert "no such file" in p.stderr
    top = run_cli("--help")
    assert top.returncode == 0 and " sql " in top.stdout and " ingest " in top.stdout and " dashboard " in top.stdout
    assert run_cli("sql", "--help").returncode == 0


def test_reingest_adds_nothing_and_uids_are_stable(small_pcap: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for _ in range(2):
        assert run_cli("ingest", "--store", str(a), "--host-id", "h1", str(small_pcap)).returncode == 0
    copy = tmp_path / "renamed.pcap"
    shutil.copy(small_pcap, copy)
    p = run_cli("ingest", "--store", str(a), "--host-id", "h1", str(copy))
    assert p.returncode == 0 and "already ingested" in p.stdout
    assert sql(a, "SELECT count(*) AS n FROM flows") == [{"n": 155}]
    assert sql(a, "SELECT status, count(*) AS n FROM ingest_runs GROUP BY status ORDER BY status") == [
        {"status": "duplicate", "n": 2}, {"status": "ok", "n": 1}]
    assert run_cli("ingest", "--store", str(b), "--host-id", "h1", str(small_pcap)).returncode == 0
    uids = "SELECT list(flow_uid ORDER BY flow_uid) AS u FROM flows"
    assert sql(a, uids) == sql(b, uids)


def test_a_duplicate_known_before_the_flows_stops_after_the_header_walk(small_pcap: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The look-up of earlier runs runs beside the header walk; when it is done first and finds the
    capture stored, nothing after the walk runs and the run row is the plain duplicate's."""
    import threading

    from collector import ingest as ingest_mod
    from collector.capture import flows

    store = tmp_path / "s"
    first = ingest_mod.ingest(small_pcap, store=str(store), host_id="h1")
    walk = ingest_mod._headers

    def walk_after_the_lookup(*args):  # the store's thread finishes first, deterministically
        for t in threading.enumerate():
            if t.name == "routerwatch-hash-open":
                t.join()
        return walk(*args)

    def no_flows(*_):
        raise AssertionError("flows assigned for a capture known to be stored")

    monkeypatch.setattr(ingest_mod, "_headers", walk_after_the_lookup)
    monkeypatch.setattr(flows, "assign", no_flows)
    again = ingest_mod.ingest(small_pcap, store=str(store), host_id="h1")
    assert (again.status, again.sha256, again.flows, again.dissected_packets) == ("duplicate", first.sha256, 0, 0)
    assert sql(store, "SELECT status, flows, dissected_packets, sha256 FROM ingest_runs ORDER BY ts") == [
        {"status": "ok", "flows": 155, "dissected_packets": first.dissected_packets, "sha256": first.sha256},
        {"status": "duplicate", "flows": 0, "dissected_packets": 0, "sha256": first.sha256}]


@pytest.mark.parametrize("name", ["mixed-windows-dns-tls-http.pcapng", "dns-edns-udp-tcp-ipv6-ipv4frag.pcap",
                                  "http-vlan-qinqinq.pcap", "http2-quic-tls13-cloudflare-ipv6.pcapng",
                                  "dns-tcp-multirequest.pcap"])
def test_dns_handed_to_tshark_first_stores_the_same_rows(name: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A large capture's waiting tshark gets the DNS packets right after the flow assignment and a
    second one the rest (hellos it cannot read, QUIC): the rows are those of one tshark given everything."""
    from collector import ingest as ingest_mod
    from collector.store import Store

    cap = CORPUS / name
    if not cap.exists():
        pytest.skip(f"the shared corpus is not beside this checkout ({CORPUS}); CI always has it")
    fed: list[int] = []
    feed = ingest_mod.tshark.TsharkJob.feed
    monkeypatch.setattr(ingest_mod.tshark.TsharkJob, "feed", lambda self, data: (fed.append(len(data)), feed(self, data)))
    rows = {}
    for early in (0, 1 << 40):  # every capture is "large", then none is
        monkeypatch.setattr(ingest_mod, "EARLY_TSHARK_PACKETS", early)
        store = tmp_path / str(early)
        res = ingest_mod.ingest(cap, store=str(store), host_id="h1")
        assert res.status == "ok" and res.dissected_packets > 0
        with Store.open(str(store), read_only=True) as st:
            rows[early] = {t: sorted(map(repr, st.sql(f"SELECT * EXCLUDE (capture_id) FROM {t}" if t == "flows" else
                                                       f"SELECT * FROM {t}").fetchall()))
                           for t in ("flows", "dns", "tls")}
        if early == 0:
            early_feeds = len(fed)
    assert rows[0] == rows[1 << 40]
    assert early_feeds >= 1 and len(fed) - early_feeds == 1  # one tshark when nothing is early


def test_truncated_capture_ingests_what_is_readable(small_pcap: Path, tmp_path: Path, store_dir: Path) -> None:
    cut = tmp_path / "cut.pcap"
    data = small_pcap.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    p = run_cli("ingest", "--store", str(store_dir), str(cut))
    assert p.returncode == 0, p.stderr
    assert "warning" in p.stderr and "cut short" in p.stderr
    run = sql(store_dir, "SELECT status, truncated, packets, errors FROM ingest_runs")[0]
    assert run["status"] == "partial" and run["truncated"] is True
    assert 1500 < run["packets"] < 2988 and "cut short" in run["errors"]
    # every flow of the readable part is kept: as many as tshark finds in the cut file (110)
    assert sql(store_dir, "SELECT count(*) AS n FROM flows") == [{"n": tshark.conversations(cut)}]


def test_corrupt_record_stops_there(small_pcap: Path, tmp_path: Path, store_dir: Path) -> None:
    data = bytearray(small_pcap.read_bytes())
    off, n = 24, 0
    while n < 1000:  # walk to record 1000 and give it an absurd captured length
        off += 16 + struct.unpack_from("<I", data, off + 8)[0]
        n += 1
    struct.pack_into("<I", data, off + 8, 0x7FFFFFFF)
    bad = tmp_path / "corrupt.pcap"
    bad.write_bytes(bytes(data))
    p = run_cli("ingest", "--store", str(store_dir), str(bad))
    assert p.returncode == 0, p.stderr
    assert "corrupt record" in p.stderr
    assert sql(store_dir, "SELECT packets, truncated FROM ingest_runs") == [{"packets": 1000, "truncated": True}]


def test_corrupt_pcapng_block(tmp_path: Path, store_dir: Path, corpus: Path) -> None:
    data = bytearray((corpus / "dns-pcapng-multi-interface.pcapng").read_bytes())
    # find the 4th Enhanced Packet Block and break its length
    off, seen = 0, 0
    while off < len(data):
        btype, blen = struct.unpack_from("<II", data, off)
        if btype == 6:
            seen += 1
            if seen == 4:
                struct.pack_into("<I", data, off + 4, 7)
                break
        off += blen
    bad = tmp_path / "bad.pcapng"
    bad.write_bytes(bytes(data))
    p = run_cli("ingest", "--store", str(store_dir), str(bad))
    assert p.returncode == 0, p.stderr
    assert sql(store_dir, "SELECT packets, truncated, status FROM ingest_runs") == [
        {"packets": 3, "truncated": True, "status": "partial"}]


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda d: d / "missing.pcap", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: _write(d / "notes.txt", b"hello, this is not a capture\n"), "not a pcap or pcapng"),
        (lambda d: _write(d / "empty.pcap", b""), "empty"),
        (lambda d: _write(d / "cut.pcap", b"\xd4\xc3\xb2\xa1" + b"\x02\x00\x04\x00" + b"\0" * 5),
         "ends inside the pcap file header (13 of 24 bytes)"),
        (lambda d: _write(d / "v3.pcap", struct.pack("<IHHiIII", 0xA1B2C3D4, 3, 0, 0, 0, 65535, 1)), "pcap version 3.0"),
        (lambda d: _write(d / "cut.pcapng", b"\x0a\x0d\x0d\x0a" + b"\x1c\0\0\0" + b"\x4d\x3c\x2b\x1a"),
         "ends inside the pcapng section header (12 of 28 bytes)"),
        (lambda d: _write(d / "bom.pcapng", struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x11223344, 1, 0, -1) +
                          struct.pack("<I", 28)), "corrupt pcapng section header (byte-order magic 44332211)"),
        (lambda d: _write(d / "shb.pcapng", struct.pack("<IIIHHq", 0x0A0D0D0A, 4096, 0x1A2B3C4D, 1, 0, -1) +
                          struct.pack("<I", 28)), "block length 4096 in a 28-byte file"),
        (lambda d: Path("/dev/null"), "/dev/null is a character device, not a capture file"),
        (lambda d: _write(d / "lt.pcap", struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 0x0FFFFFFF)),
         "link type 268435455 does not exist"),  # found by the fuzz run: crashed writing tshark's pcapng
    ],
    ids=["missing", "directory", "not-a-capture", "empty", "13-bytes", "pcap-version", "pcapng-cut-header",
         "pcapng-bad-bom", "pcapng-shb-length", "device", "pcap-linktype"],
)
def test_bad_input_one_line_error_store_untouched(tmp_path: Path, store_dir: Path, make, needle: str) -> None:
    target = make(tmp_path)
    p = run_cli("ingest", "--store", str(store_dir), str(target))
    assert_one_line_error(p, needle)
    assert not store_dir.exists()


def test_unreadable_file(tmp_path: Path, small_pcap: Path, store_dir: Path) -> None:
    cap = tmp_path / "secret.pcap"
    shutil.copy(small_pcap, cap)
    os.chmod(cap, 0o000)
    cmd = [str(BIN / "routerwatch"), "ingest", "--store", str(store_dir), str(cap)]
    if os.geteuid() == 0:  # root reads anything: drop the capabilities that bypass file permissions
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all", *cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert_one_line_error(p, "permission denied")
    assert not store_dir.exists()


@pytest.mark.parametrize("kind, needle", [("missing", "no such file"), ("directory", "is a directory"),
                                          ("fifo", "is a FIFO (a pipe)")])
def test_keylog_that_is_no_file(small_pcap: Path, tmp_path: Path, store_dir: Path, kind: str, needle: str) -> None:
    keys = tmp_path / "keys"
    if kind == "directory":
        keys.mkdir()
    elif kind == "fifo":
        os.mkfifo(keys)  # never opened: a FIFO key log with no writer must not hang the ingest
    p = run_cli("ingest", "--store", str(store_dir), "--keylog", str(keys), str(small_pcap), timeout=60)
    assert_one_line_error(p, f"key log {keys}", needle)
    assert not store_dir.exists()


def test_capture_from_stdin_is_spooled_privately_and_deleted(small_pcap: Path, tmp_path: Path) -> None:
    """`cat x.pcap | routerwatch ingest -` (and /dev/stdin): the pipe is copied to a 0600 file under
    $TMPDIR that is gone afterwards; the flows are those of the file itself."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    a, b = tmp_path / "a", tmp_path / "b"
    for store, arg in ((a, "-"), (b, "/dev/stdin")):
        p = subprocess.run(f"cat {small_pcap} | {BIN / 'routerwatch'} ingest --store {store} --host-id h1 {arg}",
                           shell=True, capture_output=True, text=True, timeout=300, env={**os.environ, "TMPDIR": str(tmp)})
        assert p.returncode == 0, p.stderr
        assert not list(tmp.iterdir())
    assert run_cli("ingest", "--store", str(tmp_path / "c"), "--host-id", "h1", str(small_pcap)).returncode == 0
    uids = "SELECT list(flow_uid ORDER BY flow_uid) AS u, count(*) AS n FROM flows"
    assert sql(a, uids) == sql(b, uids) == sql(tmp_path / "c", uids) and sql(a, uids)[0]["n"] == 155
    assert sql(a, "SELECT file, file_bytes, status FROM ingest_runs") == [
        {"file": "<stdin>", "file_bytes": small_pcap.stat().st_size, "status": "ok"}]


def test_fifo_is_spooled_while_its_writer_writes(small_pcap: Path, tmp_path: Path, store_dir: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    fifo = tmp_path / "cap.fifo"
    os.mkfifo(fifo)
    ing = subprocess.Popen([str(BIN / "routerwatch"), "ingest", "--store", str(store_dir), str(fifo)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmp)})
    data = small_pcap.read_bytes()
    with open(fifo, "wb") as w:
        w.write(data[:100_000])
        w.flush()
        deadline = time.monotonic() + 30
        while not list(tmp.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        (spool,) = list(tmp.iterdir())
        assert stat.S_IMODE(spool.stat().st_mode) == 0o600
        w.write(data[100_000:])
    out, err = ing.communicate(timeout=300)
    assert ing.returncode == 0, err
    assert not list(tmp.iterdir())
    assert sql(store_dir, "SELECT file, packets, status FROM ingest_runs") == [
        {"file": str(fifo), "packets": 2988, "status": "ok"}]


def test_fifo_with_no_writer_is_refused_not_waited_on_forever(tmp_path: Path, store_dir: Path) -> None:
    fifo = tmp_path / "nobody.fifo"
    os.mkfifo(fifo)
    t = time.monotonic()
    p = run_cli("ingest", "--store", str(store_dir), "--wait", "1", str(fifo), timeout=60)
    assert_one_line_error(p, f"{fifo}: nothing arrived in 1 s")
    assert time.monotonic() - t < 30
    assert not store_dir.exists()


def test_stdin_that_is_no_capture_is_refused_at_its_first_bytes(tmp_path: Path, store_dir: Path) -> None:
    """An endless non-capture stream is refused after 4 bytes, not read to its (missing) end."""
    p = subprocess.run(f"yes | {BIN / 'routerwatch'} ingest --store {store_dir} -", shell=True, capture_output=True,
                       text=True, timeout=60)
    assert_one_line_error(p, "<stdin> is not a pcap or pcapng capture (unknown magic 790a790a)")
    p = subprocess.run([str(BIN / "routerwatch"), "ingest", "--store", str(store_dir), "-"], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60)
    assert_one_line_error(p, "<stdin> is a character device, not a capture file")
    assert not store_dir.exists()


@pytest.mark.parametrize("res, offset, needle", [
    (0x7F, 0, "if_tsresol 0x7f (10^-127 s)"), (0xFF, 0, "if_tsresol 0xff (2^-127 s)"),
    (19, 0, "if_tsresol 0x13 (10^-19 s)"), (None, 2**62, "if_tsoffset 4611686018427387904 s"),
], ids=["tsresol-0x7f", "tsresol-0xff", "tsresol-19", "tsoffset-2^62"])
def test_pcapng_interface_with_impossible_clock(tmp_path: Path, store_dir: Path, res, offset: int, needle: str) -> None:
    """An interface whose time resolution or offset no clock has: refused in one line, nothing written
    (before: OverflowError)."""
    from tests.collector.capture.test_readers import write_pcapng

    cap = tmp_path / "clock.pcapng"
    write_pcapng(cap, [(1, 6, 0), (1, res, offset)], [(0, 1_700_000_000 * 10**6, _frame()), (1, 5, _frame())])
    p = run_cli("ingest", "--store", str(store_dir), str(cap))
    assert_one_line_error(p, f"{cap}: interface 1 (block at byte ", needle)
    if store_dir.exists():  # the store may have been opened while the file was read: nothing is in it
        assert sql(store_dir, "SELECT (SELECT count(*) FROM ingest_runs) + (SELECT count(*) FROM flows) AS n") == [
            {"n": 0}]


def test_decryption_secrets_block_longer_than_itself(tmp_path: Path, store_dir: Path) -> None:
    """A DSB declaring more secret bytes than the block holds is skipped (before: the following packets
    were read as key-log text: 632 bogus embedded secrets, status ok); the packets after it count."""
    from tests.collector.capture.test_readers import _block

    f = _frame()
    t = 1_700_000_000 * 10**6
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = _block(1, struct.pack("<HHI", 1, 0, 0))
    dsb = _block(0x0A, struct.pack("<II", 0x544C534B, 5000) + b"CLIENT_RANDOM " + b"a" * 64 + b" " + b"b" * 96 + b"\n")
    pkts = [_block(6, struct.pack("<IIIII", 0, (t + i) >> 32, (t + i) & 0xFFFFFFFF, len(f), len(f)) + f
                   + b"CLIENT_RANDOM " + b"c" * 64 + b" " + b"d" * 96 + b"\n") for i in range(50)]
    cap = tmp_path / "dsb.pcapng"
    cap.write_bytes(shb + idb + dsb + b"".join(pkts))
    p = run_cli("ingest", "--store", str(store_dir), str(cap))
    assert p.returncode == 0, p.stderr
    warn = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(warn) == 1 and "corrupt decryption secrets block at byte 48 (secrets length 5000 in a 196-byte " \
        "block): skipped" in warn[0]
    assert sql(store_dir, "SELECT status, packets, embedded_secrets, decrypted_flows FROM ingest_runs") == [
        {"status": "partial", "packets": 50, "embedded_secrets": 0, "decrypted_flows": 0}]


def test_frame_beyond_wiresharks_limit_is_still_dissected(tmp_path: Path, store_dir: Path) -> None:
    """A DNS frame of 300 kB (our readers take up to 1 MiB; tshark refuses a whole pcapng over one frame
    above 256 KiB): found by the fuzz run as a TsharkError traceback. The frame goes to tshark cut."""
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    from tests.support.ingest_fuzz import epb, idb, shb

    q = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.0.0.1", dst="10.0.0.53")
              / UDP(sport=5353, dport=53) / DNS(id=7, rd=1, qd=DNSQR(qname="big.example")))
    t = 1_700_000_000 * 10**6
    cap = tmp_path / "big.pcapng"
    cap.write_bytes(shb() + idb(1) + epb(0, t, q) + epb(0, t + 1, q + b"\0" * 300_000))
    p = run_cli("ingest", "--store", str(store_dir), str(cap))
    assert p.returncode == 0 and not p.stderr.strip(), p.stderr
    assert sql(store_dir, "SELECT query, count(*) AS n FROM dns GROUP BY query") == [{"query": "big.example", "n": 2}]
    assert sql(store_dir, "SELECT status, packets FROM ingest_runs") == [{"status": "ok", "packets": 2}]


@pytest.mark.parametrize("damage, warning, decrypted, exchanges", [
    ("interface", "2 packets name an interface that has no description block", 1, 1),
    ("timestamp", "1 packets with timestamps beyond any date skipped", 2, 1),  # the lost packet held a request
])
def test_damaged_capture_is_decrypted_from_the_packets_read(corpus: Path, tmp_path: Path, store_dir: Path,
                                                            damage: str, warning: str, decrypted: int,
                                                            exchanges: int) -> None:
    """Packets the readers leave out (naming an interface nobody described, or stamped beyond year 2262):
    the native decryptor then misses TLS bytes and hands over to tshark, which reads a clean copy of the
    packets read here. Found by the fuzz run: tshark over the original refused the whole file
    (TsharkError), or handed back a timestamp from the year 148163 (ValueError)."""
    from tests.support.ingest_fuzz import layout, pcap_to_pcapng

    name = "tls12-tls13-http10-scapy-nss"
    data = bytearray(pcap_to_pcapng((corpus / f"{name}.pcap").read_bytes(), (corpus / f"{name}.keys").read_bytes()))
    epbs = [u for u in layout(bytes(data)).units if u[2] == 6]
    if damage == "interface":
        for k in (0, 5):
            struct.pack_into("<I", data, epbs[k][0] + 8, 7)
    else:
        struct.pack_into("<I", data, epbs[9][0] + 12, 0x7FFF_FFFF)  # ts high word: ~year 294,000
    cap = tmp_path / "damaged.pcapng"
    cap.write_bytes(bytes(data))
    p = run_cli("ingest", "--store", str(store_dir), str(cap))
    assert p.returncode == 0, p.stderr
    warn = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(warn) == 1 and warning in warn[0], warn
    assert "the native decryptor declined: the capture missed bytes of a TLS stream" in p.stdout
    assert sql(store_dir, "SELECT status, flows, decrypted_flows FROM ingest_runs") == [
        {"status": "partial", "flows": 2, "decrypted_flows": decrypted}]
    assert sql(store_dir, "SELECT count(*) AS n, bool_and(year(ts) = 2025) AS sane FROM http") == [
        {"n": exchanges, "sane": True}]


def _frame() -> bytes:
    """An Ethernet + IPv4 + TCP SYN frame."""
    from scapy.layers.l2 import Ether

    from tests.collector.capture.test_readers import tcp4

    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / tcp4())


def test_tshark_missing_says_how_to_install(small_pcap: Path, tmp_path: Path, store_dir: Path) -> None:
    empty_path = tmp_path / "bin"
    empty_path.mkdir()
    p = run_cli("ingest", "--store", str(store_dir), str(small_pcap), env={"PATH": str(empty_path)})
    assert_one_line_error(p, "apt-get install tshark")
    assert not store_dir.exists()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_capture_without_flows(tmp_path: Path, store_dir: Path) -> None:
    """A header-only pcap and one with only ARP: recorded runs with no flows, not errors."""
    from scapy.layers.l2 import ARP, Ether

    hdr = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    arp = bytes(Ether() / ARP())
    (tmp_path / "empty.pcap").write_bytes(hdr)
    (tmp_path / "arp.pcap").write_bytes(hdr + struct.pack("<IIII", 1, 0, len(arp), len(arp)) + arp)
    for name in ("empty.pcap", "arp.pcap"):
        p = run_cli("ingest", "--store", str(store_dir), str(tmp_path / name))
        assert p.returncode == 0, p.stderr
    assert sql(store_dir, "SELECT packets, flows, status FROM ingest_runs ORDER BY packets") == [
        {"packets": 0, "flows": 0, "status": "ok"}, {"packets": 1, "flows": 0, "status": "ok"}]


def test_ingest_leaves_pandas_unloaded(tmp_path):
    """pyarrow's pandas check imported pandas in every ingest (~40 MB of resident memory);
    `routerwatch ingest` refuses it as the collector does (collector/live/lean.py). It also freezes
    its imports out of the garbage collector's full collections (lean.freeze_imports), and a plain
    ingest (no key log) never imports pyarrow.compute (~0.04 s)."""
    import sys

    from collector.store import Store

    cap = tmp_path / "c.pcap"
    generate(str(cap), packets=2000)
    code = ("import sys\nfrom collector.cli import main\n"
            f"rc = main(['ingest', '--store', {str(tmp_path / 's')!r}, {str(cap)!r}])\n"
            "import gc\n"
            "print(rc, sorted(m for m in sys.modules if m.split('.')[0] == 'pandas'), gc.get_freeze_count() > 10_000,\n"
            "      'pyarrow.compute' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "0 [] True False", r.stdout + r.stderr
    # flows are stored in ts_start order (built sorted: collector.ingest._flow_table)
    starts = [row[0] for row in Store.open(str(tmp_path / "s"), read_only=True).sql("SELECT ts_start FROM flows").fetchall()]
    assert len(starts) == 102 and starts == sorted(starts)


def test_tls_columns_name_each_distinct_version_and_cipher_once() -> None:
    """_named (the tls table's version and cipher columns) names values as the per-row code did,
    keeps None as null and calls the namer once per distinct value; _columns transposes rows."""
    import numpy as np

    from collector.capture.dissect import version_name
    from collector.ingest import _columns, _named

    calls: list[int] = []

    def name(v: int) -> str | None:
        calls.append(v)
        return version_name(v)

    values = np.array([0x0304, None, 0x0303, 0x0304, 0x7F1C, None], dtype=object)
    assert _named(values, name).to_pylist() == ["TLS 1.3", None, "TLS 1.2", "TLS 1.3", "0x7f1c", None]
    assert sorted(calls) == [0x0303, 0x0304, 0x7F1C]
    cipher = _named(np.array([0x1301, None, 0xC02F], dtype=object), lambda c: f"0x{c:04x}")
    assert cipher.to_pylist() == ["0x1301", None, "0xc02f"]
    assert _named(np.array([], dtype=object), version_name).to_pylist() == []
    assert _columns([(1, "a"), (2, "b")], 2) == [[1, 2], ["a", "b"]]
    assert _columns([], 3) == [[], [], []]
