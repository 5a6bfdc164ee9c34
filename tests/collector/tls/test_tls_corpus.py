"""Decryption of the shared corpus (collector/tls/pipeline.py): every capture's HTTP requests, decrypted
with its key log (or embedded secrets), match tshark's ground truth in EXPECTED.json."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from collector.capture.community_id import community_id
from collector.tls.keylog import KeyLogError, read_keylog
from collector.tls.pipeline import decode_capture

KEY = b"k" * 32


def _expected(corpus: Path) -> dict:
    return json.loads((corpus / "EXPECTED.json").read_text())["files"]


def _keyed(corpus: Path) -> list[str]:
    return [n for n in _expected(corpus) if (corpus / (n.rsplit(".", 1)[0] + ".keys")).exists()]


def test_every_keyed_capture_matches_expected_requests(corpus):
    exp = _expected(corpus)
    keyed = _keyed(corpus)
    assert len(keyed) >= 6
    for name in keyed:
        keys = corpus / (name.rsplit(".", 1)[0] + ".keys")
        r = decode_capture(corpus / name, keys, host_id="h", secret_key=KEY, run_id="r")
        got = sorted((x["method"], x["host"], x["path"]) for x in r.tables["http"])
        want = sorted((x["method"], x["host"], x["uri"]) for x in exp[name]["http_requests"])
        assert got == want, name
        assert r.errors == [], name
        if want:
            # every TCP conversation of these captures carries TLS, and every one decrypts
            assert r.stats["decrypted_flows"] == exp[name]["tcp_conversations"], name
            assert r.stats["undecrypted_flows"] == 0, name


def test_embedded_secrets_without_key_log(corpus):
    """pcapng Decryption Secrets Blocks decrypt on their own; the count matches tshark's."""
    exp = _expected(corpus)
    for name in _keyed(corpus):
        r = decode_capture(corpus / name, None, host_id="h", secret_key=KEY, run_id="r")
        assert len(r.tables["http"]) == exp[name]["http_requests_without_keylog"], name
    r = decode_capture(corpus / "http2-tls13-youtube-chrome.pcapng", None, host_id="h", secret_key=KEY, run_id="r")
    assert all(x["http_version"] == "HTTP/2" for x in r.tables["http"])


def test_flows_linked_by_community_id_within_time_bound(corpus):
    name = "https-tls12-39-ciphers.pcapng"
    first = decode_capture(corpus / name, corpus / "https-tls12-39-ciphers.keys", host_id="h", secret_key=KEY,
                           run_id="r")
    metas = [m for m in first.streams if m.tls]
    flows = pa.table({
        "flow_uid": [f"F{m.stream}" for m in metas],
        "community_id": [community_id("tcp", m.src_ip, m.src_port, m.dst_ip, m.dst_port) for m in metas],
        "ts_start": pa.array([int(m.ts_first * 1e6) for m in metas], pa.timestamp("us")),
        "ts_end": pa.array([int(m.ts_last * 1e6) for m in metas], pa.timestamp("us")),
        "src_ip": [m.src_ip for m in metas], "src_port": [m.src_port for m in metas],
    })
    r = decode_capture(corpus / name, corpus / "https-tls12-39-ciphers.keys", flows=flows, host_id="h",
                       secret_key=KEY, run_id="r")
    assert r.decrypted_flow_uids == {f"F{m.stream}" for m in metas}
    assert {x["flow_uid"] for x in r.tables["http"]} == r.decrypted_flow_uids
    assert r.stats["unlinked_streams"] == 0
    # a flow recorded an hour away is another connection on a reused port: not linked
    late = flows.set_column(2, "ts_start", pa.array([int((m.ts_first + 3600) * 1e6) for m in metas], pa.timestamp("us")))
    late = late.set_column(3, "ts_end", pa.array([int((m.ts_last + 3600) * 1e6) for m in metas], pa.timestamp("us")))
    r = decode_capture(corpus / name, corpus / "https-tls12-39-ciphers.keys", flows=late, host_id="h",
                       secret_key=KEY, run_id="r")
    assert r.decrypted_flow_uids == set() and r.stats["unlinked_streams"] == 39


def test_wrong_key_log_fails_loudly(corpus, tmp_path):
    name = "https-tls12-tcp-split-records.pcap"
    wrong = corpus / "tls12-illustrated.keys"
    r = decode_capture(corpus / name, wrong, host_id="h", secret_key=KEY, run_id="r")
    assert r.tables["http"] == [] and r.stats["decrypted_flows"] == 0 and r.stats["undecrypted_flows"] == 1
    assert r.errors and "decrypted none" in r.errors[0] and r.stats["keylog_sessions_matched"] == 0
    with pytest.raises(KeyLogError, match="no such file"):
        decode_capture(corpus / name, tmp_path / "missing.keys", host_id="h", secret_key=KEY, run_id="r")
    garbage = tmp_path / "garbage.keys"
    garbage.write_text("CLIENT_RANDOM zz 00\nhello world\n")
    with pytest.raises(KeyLogError, match="not an NSS key log") as e:
        read_keylog(garbage)
    assert "hello" not in str(e.value)
    empty = tmp_path / "empty.keys"
    empty.write_text("# only a comment\n")
    with pytest.raises(KeyLogError, match="empty"):
        read_keylog(empty)


def test_truncated_capture_and_no_keys(corpus, tmp_path):
    # the corpus file ends with an RST after complete responses (only a last partial record is cut)
    r = decode_capture(corpus / "http-cut-short.pcap", None, host_id="h", secret_key=KEY, run_id="r")
    assert r.stats["decryptor"] == "native"
    assert [(x["status"], x["truncated"]) for x in r.tables["http"]] == [(200, False)] * 8
    assert all(x["source"] == "cleartext" for x in r.tables["http"])
    cut = tmp_path / "cut.pcap"  # cut in the middle of the fifth response body
    cut.write_bytes((corpus / "http-cut-short.pcap").read_bytes()[:1_500_000])
    r = decode_capture(cut, None, host_id="h", secret_key=KEY, run_id="r")
    assert [(x["path"], x["truncated"]) for x in r.tables["http"]][-2:] == [("/msvcp140.dll", False), ("/nss3.dll", True)]
    assert r.tables["http"][-1]["response_body_bytes"] == 486724 and r.tables["http"][-1]["status"] == 200
    # 7 TLS flows carry data without keys (tshark's path counted 6: it reports no content type for
    # TLS 1.3 records it cannot decrypt, so a TLS 1.3 flow without keys looked data-less there)
    r = decode_capture(corpus / "mixed-windows-dns-tls-http.pcapng", None, host_id="h", secret_key=KEY, run_id="r")
    assert r.stats["undecrypted_flows"] == 7 and r.decrypted_flow_uids == set()


def test_decode_worker_gives_the_same_rows(corpus, monkeypatch):
    """Big captures decode in a worker process; rows (and their order) equal the in-process result."""
    import collector.tls.pipeline as pl

    name, keys = "http2-tls13-youtube-chrome.pcapng", "http2-tls13-youtube-chrome.keys"
    local = decode_capture(corpus / name, corpus / keys, host_id="h", secret_key=KEY, run_id="r", workers=False)
    monkeypatch.setattr(pl, "WORKER_AFTER", 3)
    monkeypatch.setattr(pl, "BATCH", 2)
    remote = decode_capture(corpus / name, corpus / keys, host_id="h", secret_key=KEY, run_id="r")
    assert remote.tables == local.tables and len(remote.tables["http"]) == 15


def test_split_capture_gives_the_same_rows(corpus, monkeypatch):
    """A big capture is split by connection between this process and a forked child: rows (and their
    order), stats and streams equal the one-process result; NativeUnsure in either still means tshark.

    decode_capture forks only from a process without other Python threads (as `routerwatch ingest`
    is); earlier tests in a full run leave threads behind (servers, writers), so then the check runs
    in a fresh pytest process."""
    import os
    import subprocess
    import sys
    import threading

    if threading.active_count() > 1 and not os.environ.get("ROUTERWATCH_SPLIT_TEST_CHILD"):
        env = dict(os.environ, ROUTERWATCH_SPLIT_TEST_CHILD="1")
        p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            f"{__file__}::test_split_capture_gives_the_same_rows"],
                           env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
        return
    assert threading.active_count() == 1

    import collector.tls.pipeline as pl

    forks = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            forks.append(pid)
        return pid

    cases = [("http2-tls13-youtube-chrome.pcapng", "http2-tls13-youtube-chrome.keys"),
             ("tls12-tls13-http10-scapy-nss.pcap", "tls12-tls13-http10-scapy-nss.keys"),
             ("mixed-windows-dns-tls-http.pcapng", None), ("http-cut-short.pcap", None),
             ("https-tls12-39-ciphers.pcapng", "https-tls12-39-ciphers.keys")]
    for name, keys in cases:
        args = (corpus / name, corpus / keys if keys else None)
        monkeypatch.setattr(pl, "EAGER_BYTES", 8 << 20)
        local = decode_capture(*args, host_id="h", secret_key=KEY, run_id="r", workers=False)
        monkeypatch.setattr(pl, "EAGER_BYTES", 0)
        monkeypatch.setattr(pl, "SEND_EXCHANGES", 2)  # the child's rows arrive in several messages
        monkeypatch.setattr(os, "fork", fork)
        n = len(forks)
        split = decode_capture(*args, host_id="h", secret_key=KEY, run_id="r")
        monkeypatch.setattr(os, "fork", real_fork)
        assert len(forks) == n + 1, name
        assert split.tables == local.tables, name
        assert split.stats["split"] == (split.stats["decryptor"] == "native") and not local.stats["split"]
        drop = {"seconds", "split"}
        assert {k: v for k, v in split.stats.items() if k not in drop} == \
            {k: v for k, v in local.stats.items() if k not in drop}, name
        assert split.decrypted_flow_uids == local.decrypted_flow_uids
        assert sorted(split.streams, key=lambda m: m.stream) == sorted(local.streams, key=lambda m: m.stream)
    assert split.stats["decryptor"] == "tshark" and "cipher suite" in split.stats["native_fallback"]
    assert len(split.tables["http"]) == 39

    # a child that dies (OOM-killed, crashed) costs time, not rows: the capture is decoded again here
    args = (corpus / cases[0][0], corpus / cases[0][1])
    local = decode_capture(*args, host_id="h", secret_key=KEY, run_id="r", workers=False)
    monkeypatch.setattr(pl, "_write_all", lambda fd, data: os._exit(9))  # only the child writes
    again = decode_capture(*args, host_id="h", secret_key=KEY, run_id="r")
    assert again.tables == local.tables and not again.stats["split"]
    assert "the decode child exited without a result: the capture was decoded again in one process" in again.warnings


def test_a_dead_decode_worker_fails_its_caller_not_the_process():
    """The decode worker killed (the OOM killer, a parser's crash) while batches are out: results()
    raises a RuntimeError naming the exit status and no data (the live collector logs it and goes on)."""
    from collector.llm.pipeline import DecodeContext
    from collector.secrets import Fingerprinter
    from collector.tls.worker import DecodeWorker

    ctx = DecodeContext("h", Fingerprinter(KEY), "keylog")
    worker = DecodeWorker()
    try:
        worker.submit((ctx, ctx, []))
        worker.child.proc.kill()
        worker.submit((ctx, ctx, []))
        with pytest.raises(RuntimeError, match=r"^decode worker failed: exit status -9$"):
            worker.results()
    finally:
        worker.close()
