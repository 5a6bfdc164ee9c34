"""`routerwatch ingest` through the CLI: bad input, truncation, idempotency, deterministic uids."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN, run_cli
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
    ],
    ids=["missing", "directory", "not-a-capture", "empty"],
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


def test_missing_keylog_file(small_pcap: Path, tmp_path: Path, store_dir: Path) -> None:
    p = run_cli("ingest", "--store", str(store_dir), "--keylog", str(tmp_path / "nope.keys"), str(small_pcap))
    assert_one_line_error(p, "key log", "no such file")
    assert not store_dir.exists()


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
