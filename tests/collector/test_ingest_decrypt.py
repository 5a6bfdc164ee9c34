"""Ingest hands its flows to the decryption pipeline when keys exist (a key log, or pcapng Decryption
Secrets Blocks): decrypted tables are committed with the flows and `tls.decrypted` is set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytest.importorskip("collector.tls.pipeline", reason="the decryption pipeline (collector.tls) is not in this tree")


def sql(store: Path, query: str) -> list[dict]:
    p = run_cli("sql", "--store", str(store), "--format", "json", query)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_keylog_decrypts_and_links_to_flows(corpus: Path, store_dir: Path) -> None:
    name = "tls12-tls13-http10-scapy-nss"
    p = run_cli("ingest", "--store", str(store_dir), "--keylog", str(corpus / f"{name}.keys"), str(corpus / f"{name}.pcap"))
    assert p.returncode == 0, p.stderr
    assert sql(store_dir, "SELECT version, decrypted FROM tls ORDER BY version") == [
        {"version": "TLS 1.2", "decrypted": True}, {"version": "TLS 1.3", "decrypted": True}]
    rows = sql(store_dir, "SELECT h.method, h.path, f.dst_port FROM http h JOIN flows f USING (flow_uid) ORDER BY h.ts")
    assert rows == [{"method": "GET", "path": "/pki/srv_key.pem", "dst_port": 443}] * 2
    assert sql(store_dir, "SELECT keylog, decrypted_flows FROM ingest_runs") == [{"keylog": True, "decrypted_flows": 2}]
    assert "  decrypted 2 of 2 TLS connections carrying data (native): 2 HTTP exchanges, 0 LLM exchanges" in p.stdout


def test_embedded_secrets_decrypt_without_keylog(corpus: Path, store_dir: Path) -> None:
    p = run_cli("ingest", "--store", str(store_dir), str(corpus / "http2-tls13-youtube-chrome.pcapng"))
    assert p.returncode == 0, p.stderr
    assert sql(store_dir, "SELECT embedded_secrets, decrypted_flows FROM ingest_runs") == [
        {"embedded_secrets": 179, "decrypted_flows": 1}]
    assert sql(store_dir, "SELECT bool_and(decrypted) AS d FROM tls") == [{"d": True}]
    assert sql(store_dir, "SELECT count(*) > 10 AS many FROM http h JOIN flows f USING (flow_uid)") == [{"many": True}]


def test_garbage_keylog_is_a_one_line_error(corpus: Path, tmp_path: Path, store_dir: Path) -> None:
    bad = tmp_path / "garbage.keys"
    bad.write_text("this is not a key log\n")
    p = run_cli("ingest", "--store", str(store_dir), "--keylog", str(bad), str(corpus / "tls12-illustrated.pcap"))
    assert p.returncode != 0
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("routerwatch: error:") and "key log" in lines[0]
    assert not store_dir.exists()


def test_a_better_key_log_later_decrypts_what_an_earlier_run_could_not(corpus: Path, tmp_path: Path) -> None:
    """The idempotency key is (host, capture sha256, key-log digest): a wrong key log first, the right one
    later adds the decrypted rows and nothing else (before: 'already ingested, nothing added' forever);
    the end state equals one run with the right key log."""
    name = "tls12-tls13-http10-scapy-nss"
    cap, right, wrong = corpus / f"{name}.pcap", corpus / f"{name}.keys", corpus / "tls12-illustrated.keys"
    a, one = tmp_path / "a", tmp_path / "one"

    def ingest(store: Path, *keys: Path) -> str:
        p = run_cli("ingest", "--store", str(store), "--host-id", "h1", *[x for k in keys for x in ("--keylog", str(k))],
                    str(cap))
        assert p.returncode == 0, p.stderr
        return p.stdout

    ingest(a, wrong)
    assert sql(a, "SELECT count(*) AS n FROM http") == [{"n": 0}]
    out = ingest(a, right)
    assert "already ingested" in out and "2 more TLS connections decrypted, 2 HTTP exchanges added" in out
    # the same keys again, reordered with a comment and a repeat: the same digest, nothing to do
    same = tmp_path / "same.keys"
    lines = right.read_text().splitlines()
    same.write_text("# copy\n" + "\n".join(reversed(lines + lines[:1])) + "\n")
    assert "nothing added" in ingest(a, same)
    assert "nothing added" in ingest(a)  # no key log: nothing new either
    runs = sql(a, "SELECT status, flows, decrypted_flows, decrypt_stats->>'new_exchanges' AS nx FROM ingest_runs "
                  "ORDER BY ts")
    assert runs == [{"status": "ok", "flows": 2, "decrypted_flows": 0, "nx": None},
                    {"status": "rekeyed", "flows": 0, "decrypted_flows": 2, "nx": "2"},
                    {"status": "duplicate", "flows": 0, "decrypted_flows": 0, "nx": None},
                    {"status": "duplicate", "flows": 0, "decrypted_flows": 0, "nx": None}]
    ingest(one, right)
    for q in ("SELECT flow_uid, community_id, bytes_out, bytes_in FROM flows ORDER BY flow_uid",
              "SELECT flow_uid, version, sni, decrypted FROM tls ORDER BY flow_uid",
              "SELECT exchange_id, flow_uid, method, path, status FROM http ORDER BY exchange_id",
              "SELECT exchange_id, kind, location, direction FROM secrets_seen ORDER BY ALL"):
        assert sql(a, q) == sql(one, q), q
    # a key log holding both sets: new digest, but every exchange it decrypts is stored: adds nothing
    both = tmp_path / "both.keys"
    both.write_text(wrong.read_text() + right.read_text())
    assert "0 more TLS connections decrypted, 0 HTTP exchanges added" in ingest(a, both)
    assert sql(a, "SELECT count(*) AS n FROM http") == [{"n": 2}]


def test_key_log_added_to_a_capture_with_embedded_secrets(corpus: Path, store_dir: Path) -> None:
    """A pcapng decrypted by its own Decryption Secrets Blocks, then given the same keys as a key log:
    a new digest, nothing new decrypted, no exchange stored twice."""
    cap = corpus / "http2-tls13-youtube-chrome.pcapng"
    assert run_cli("ingest", "--store", str(store_dir), str(cap)).returncode == 0
    before = sql(store_dir, "SELECT count(*) AS n FROM http")[0]["n"]
    p = run_cli("ingest", "--store", str(store_dir), "--keylog", str(corpus / "http2-tls13-youtube-chrome.keys"), str(cap))
    assert p.returncode == 0 and "0 more TLS connections decrypted, 0 HTTP exchanges added" in p.stdout, p.stdout
    assert sql(store_dir, "SELECT count(*) AS n, count(DISTINCT exchange_id) AS d FROM http") == [{"n": before, "d": before}]


def test_keylog_digest_is_keyed_and_normalised(tmp_path: Path) -> None:
    from collector.tls.keylog import keylog_digest

    line = "CLIENT_RANDOM " + "AB" * 32 + " " + "cd" * 48
    a, b = tmp_path / "a.keys", tmp_path / "b.keys"
    a.write_text(line + "\n")
    b.write_text("# comment\n\n" + line.lower() + "\n" + line + "\nnot a key line\n")
    assert keylog_digest(a, b"k" * 32) == keylog_digest(b, b"k" * 32)
    assert keylog_digest(a, b"k" * 32) != keylog_digest(a, b"j" * 32)
    assert "cd" * 48 not in keylog_digest(a, b"k" * 32) and len(keylog_digest(a, b"k" * 32)) == 32
