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
