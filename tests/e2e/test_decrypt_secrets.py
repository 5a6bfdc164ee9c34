"""Secrets never reach the store: one planted credential of every kind crosses a real TLS exchange
(headers and body, request and response), `routerwatch ingest --keylog` stores it, and no raw value
appears in any file under the store, in any row, or in the command's output; each is in
`secrets_seen` with the right kind."""

from __future__ import annotations

import json
import shutil

import pytest

from collector.store import Store
from tests.conftest import run_cli
from tests.support.capture import capture_loopback, capture_tool
from tests.support.clients import run_curl
from tests.support.fixtures import pki_dir, zoo  # noqa: F401

MNEMONIC = "legal winner thank year wave sausage worth useful legal winner thank yellow"
PLANTED = {
    "aws_access_key_id": "AKIAQ7EXAMPLE2X4Y6Z8",
    "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYz9q8w7e6r5",
    "openai_api_key": "sk-proj-Q1w2E3r4T5y6U7i8O9p0AsDfGhJkL",
    "anthropic_api_key": "sk-ant-api03-Zx9Cv8Bn7Mm6Ll5Kk4Jj3Hh2Gg1Ff0-AAAA",
    "google_api_key": "AIzaSyD3mOcKk3y-0123456789abcdefghijkXY",
    "github_token": "ghp_R4nd0mT0k3nV4lu3F0rT3st1ngPurp0s3sXY",
    "slack_token": "xoxb-2048-4096-R4nd0mSl4ckT0k3n",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZ2VudC0xMjMifQ.c2lnbmF0dXJlLXZhbHVlLWhlcmU",
    "pem_private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7x\n-----END PRIVATE KEY-----",
    "eth_private_key": "0x8da4ef21b864d2cc526dbdb2a120bd2874c36c9d0a1fb7f8c63d7f7a8b41de8f",
    "bip39_mnemonic": MNEMONIC,
}
ROUTER_KEY = "sk-R0ut3rIssu3dK3y0123456789abcdefXYZ"  # the bearer token a router issues (kind sk_api_key)

pytestmark = pytest.mark.skipif(capture_tool() is None or shutil.which("tshark") is None,
                                reason="needs tcpdump/dumpcap and tshark (CI has both)")


def _probes(value: str) -> list[str]:
    """The raw value and the distinctive pieces a partial leak would show."""
    core = value.replace("-----BEGIN PRIVATE KEY-----\n", "").replace("\n-----END PRIVATE KEY-----", "")
    out = {value, json.dumps(value)[1:-1], core[:24], core[-24:]}
    return [p for p in out if len(p) >= 12]


def test_planted_secrets_never_stored(zoo, tmp_path, store_dir):  # noqa: F811
    router = zoo("honest")
    content = "Use these for the deploy:\n" + "\n".join(
        f"{'AWS_SECRET_ACCESS_KEY=' if k == 'aws_secret_access_key' else ''}{v}" for k, v in PLANTED.items())
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}
    for _ in range(3):  # tcpdump on lo can miss a segment; then the capture is redone
        (tmp_path / "keys.log").unlink(missing_ok=True)
        with capture_loopback(tmp_path / "cap.pcap", ports=[router.port]):
            res = run_curl(router.url + "/v1/chat/completions", ca=router.ca_path, keylog=tmp_path / "keys.log",
                           http="1.1", json_body=body,
                           headers={"authorization": f"Bearer {ROUTER_KEY}", "x-goog-api-key": PLANTED["google_api_key"]})
        assert res.status == 200, res.stderr
        out = run_cli("ingest", str(tmp_path / "cap.pcap"), "--keylog", str(tmp_path / "keys.log"),
                      "--store", str(store_dir))
        assert out.returncode == 0, out.stderr[-3000:]
        q = run_cli("sql", "--store", str(store_dir), "--format", "json",
                    "SELECT count(*) AS n FROM http WHERE truncated")
        if json.loads(q.stdout)[0]["n"] == 0:
            break
        shutil.rmtree(store_dir)

    q = run_cli("sql", "--store", str(store_dir), "--format", "json",
                "SELECT kind, direction, location, last4, fingerprint FROM secrets_seen")
    assert q.returncode == 0, q.stderr
    seen = json.loads(q.stdout)
    kinds = {(s["kind"], s["direction"]) for s in seen}
    for kind in PLANTED:
        assert (kind, "request") in kinds, kind
    assert ("sk_api_key", "request") in kinds  # the router's own key, in the Authorization header
    assert all(len(s["fingerprint"]) == 24 and len(s["last4"]) <= 4 for s in seen)

    # every row of every table, as text
    with Store.open(str(store_dir), read_only=True) as st:
        dump = "".join(json.dumps(st.sql(f'SELECT * FROM "{t}"').fetchall(), default=str, ensure_ascii=False)
                       for t in st.tables())
    assert "[REDACTED:bip39_mnemonic:" in dump and "[REDACTED:pem_private_key:" in dump
    files = b"".join(p.read_bytes() for p in store_dir.rglob("*") if p.is_file())
    logs = out.stdout + out.stderr
    for kind, value in {**PLANTED, "sk_api_key": ROUTER_KEY}.items():
        for probe in _probes(value):
            assert probe not in dump, kind
            assert probe.encode() not in files, kind
            assert probe not in logs, kind
