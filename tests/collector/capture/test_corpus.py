"""Corpus conformance: every capture in the shared corpus vs tshark's ground truth (EXPECTED.json).

Checked per capture: TCP and UDP conversation counts (tshark `-z conv` semantics), the set of SNI
values (TLS and QUIC Initial), DNS query names and their A/AAAA answers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collector.ingest import ingest
from collector.store import Store
from tests.conftest import CORPUS

# Deliberate differences, each with its reason.
DELIBERATE = {
    # DNS over HTTPS carried as cleartext HTTP/2 is HTTP application data, not DNS transport: ingest
    # hands tshark only the handshake packets of non-DNS TCP flows (that is what keeps it fast), so
    # DoH messages are not in the dns table. The flow itself is counted.
    "doh-h2c-get.pcap": {"dns"},
}

CAPTURES = sorted(p.name for p in CORPUS.glob("*.pcap*")) if CORPUS.is_dir() else []


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> tuple[Path, dict]:
    if not CORPUS.is_dir():
        pytest.skip(f"the shared corpus is not beside this checkout ({CORPUS}); CI always has it")
    store = tmp_path_factory.mktemp("corpus") / "store"
    results = {}
    for name in CAPTURES:
        results[name] = ingest(CORPUS / name, store=str(store), host_id=name)
    return store, results


def _rows(store: Path, sql: str, params: list) -> list[tuple]:
    with Store.open(str(store), read_only=True) as st:
        return st.sql(sql, params).fetchall()


@pytest.mark.parametrize("name", CAPTURES)
def test_capture_matches_tshark(ingested, name: str) -> None:
    store, results = ingested
    exp = json.loads((CORPUS / "EXPECTED.json").read_text())["files"][name]
    res = results[name]
    assert res.packets == exp["packets"]
    assert res.truncated == (exp["read_error"] is not None)
    counts = dict(_rows(store, "SELECT proto, count(*) FROM flows WHERE host_id = ? GROUP BY proto", [name]))
    assert counts.get("tcp", 0) == exp["tcp_conversations"]
    assert counts.get("udp", 0) == exp["udp_conversations"]

    sni = {r[0] for r in _rows(store, "SELECT DISTINCT t.sni FROM tls t JOIN flows f USING (flow_uid) "
                                      "WHERE f.host_id = ? AND t.sni IS NOT NULL", [name])}
    assert sni == set(exp["tls_sni"])

    if "dns" in DELIBERATE.get(name, ()):
        return
    queries = {r[0] for r in _rows(store, "SELECT DISTINCT query FROM dns WHERE host_id = ? AND query IS NOT NULL", [name])}
    assert queries == set(exp["dns"]["queries"])
    answers: dict[str, dict[str, set]] = {}
    for q, a in _rows(store, "SELECT query, unnest(answers) FROM dns WHERE host_id = ? AND is_response", [name]):
        kind = "aaaa" if ":" in a else "a"
        if kind == "a" and not a.replace(".", "").isdigit():
            continue  # CNAME targets are answers too, but EXPECTED lists A/AAAA only
        answers.setdefault(q, {"a": set(), "aaaa": set()})[kind].add(a)
    want = {q: {"a": set(v["a"]), "aaaa": set(v["aaaa"])} for q, v in exp["dns"]["answers"].items()}
    assert answers == want


def test_embedded_secrets_counted(ingested) -> None:
    store, results = ingested
    exp = json.loads((CORPUS / "EXPECTED.json").read_text())["files"]
    rows = dict(_rows(store, "SELECT host_id, embedded_secrets FROM ingest_runs", []))
    for name in CAPTURES:
        assert rows[name] == exp[name]["embedded_tls_secrets"], name


def test_ja4_matches_foxio_reference(ingested) -> None:
    """JA4 values published by FoxIO for the same captures (python/test/testdata in FoxIO-LLC/ja4)."""
    store, _ = ingested
    got = dict(_rows(store, "SELECT t.sni, t.ja4 FROM tls t JOIN flows f USING (flow_uid) WHERE f.host_id = ?",
                     ["mixed-windows-dns-tls-http.pcapng"]))
    assert got["pdx-col.eum-appdynamics.com"] == "t13d1516h2_8daaf6152771_e5627efa2ab1"
    assert got["discovery.cem.cloud.us"] == "t12d190800_d83cc789557e_7af1ed941c26"
    assert got["app.slack.com"] == "t13d1516h2_8daaf6152771_9b887d9acb53"
    yt = _rows(store, "SELECT t.ja4 FROM tls t JOIN flows f USING (flow_uid) WHERE f.host_id = ?",
               ["http2-tls13-youtube-chrome.pcapng"])
    assert yt == [("t13d1516h2_8daaf6152771_e5627efa2ab1",)]


def test_server_hello_fields_match_tshark(ingested) -> None:
    """The ServerHellos read with numpy (tlspeek) agree with tshark's dissection of the same packets."""
    import subprocess

    store, _ = ingested
    for name in CAPTURES:
        out = subprocess.run(
            ["tshark", "-n", "-r", str(CORPUS / name), "-Y", "tls.handshake.type == 2 && tcp", "-T", "fields",
             "-E", "occurrence=f", "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "tls.handshake.ciphersuite",
             "-e", "tls.handshake.extensions.supported_version", "-e", "tls.handshake.version",
             "-e", "tls.handshake.extensions_alpn_str"],
            capture_output=True, text=True,
        ).stdout
        want = {}
        for line in out.splitlines():
            sport, dport, cipher, sv, legacy, alpn = (line.split("\t") + [""] * 6)[:6]
            v = int(sv or legacy, 16)
            want.setdefault((int(sport), int(dport)), (f"0x{int(cipher, 16):04x}", {0x0304: "TLS 1.3", 0x0303: "TLS 1.2"}.get(v, hex(v)), alpn or None))
        got = {
            (r[0], r[1]): (r[2], r[3], r[4])
            for r in _rows(store, "SELECT f.dst_port, f.src_port, t.cipher, t.version, t.alpn_selected FROM tls t "
                                  "JOIN flows f USING (flow_uid) WHERE f.host_id = ? AND f.proto = 'tcp'", [name])
        }
        assert got == want, name
