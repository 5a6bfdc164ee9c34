"""The native decryptor (collector/tls/native_decrypt.py + records.py) against tshark: byte-identical
decrypted streams on every corpus capture it handles and on real TLS 1.2 / 1.3 captures made on
loopback with openssl (every AEAD suite, a KeyUpdate in both directions); a CBC suite falls back to
tshark; a wrong key log still fails loudly."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from analyzer.demo.pki import ensure_pki
from collector.tls.native_decrypt import NativeDecrypt, NativeUnsure
from collector.tls.pipeline import decode_capture
from collector.tls.tshark_decrypt import TsharkDecrypt
from tests.support.capture import capture_loopback, capture_tool

KEY = b"n" * 32
BODY = ("{\"text\": \"Prüfe die Daten — 数据 🚀 " + "x" * 40_000 + "\"}").encode()  # spans several records
TLS12 = ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305"]
TLS13 = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]


def decrypted_streams(job) -> dict[tuple, bytes]:
    """Decrypted TLS application bytes per direction (src, sport, dst, dport), retransmitted
    segments dropped the way StreamAssembler drops them (tshark's `tcp.nxtseq` not advancing)."""
    out: dict[tuple, bytes] = {}
    nxt: dict[tuple, int] = {}
    for seg in job:
        d = (seg.src, seg.sport, seg.dst, seg.dport)
        if seg.nxtseq:
            if seg.nxtseq <= nxt.get((seg.stream, *d), -1):
                continue
            nxt[(seg.stream, *d)] = seg.nxtseq
        if seg.data and seg.record_types:
            out[d] = out.get(d, b"") + seg.data
    return out


def _keys(corpus: Path, name: str) -> Path | None:
    k = corpus / (name.rsplit(".", 1)[0] + ".keys")
    return k if k.exists() else None


def test_corpus_streams_identical_to_tshark(corpus):
    native_ran = []
    for cap in sorted(p for p in corpus.iterdir() if p.suffix in (".pcap", ".pcapng")):
        keys = _keys(corpus, cap.name)
        try:
            native = decrypted_streams(NativeDecrypt(cap, keys))
        except NativeUnsure:
            continue
        assert native == decrypted_streams(TsharkDecrypt(cap, keys)), cap.name
        if native:
            native_ran.append(cap.name)
    assert {"http2-tls13-youtube-chrome.pcapng", "http2-quic-tls13-cloudflare-ipv6.pcapng",
            "https-tls12-tcp-split-records.pcap", "tls12-tls13-http10-scapy-nss.pcap"} <= set(native_ran)


def test_a_capture_the_caller_read_decrypts_the_same(corpus):
    """ingest hands its own read of the capture (records, header walk, flow assignment) to the
    decryptor: the rows are the same as from the decryptor's own read, and the mapping stays open."""
    from collector.capture.flows import assign
    from collector.capture.headers import walk
    from collector.capture.records import MappedFile, read_records
    from collector.tls.native_decrypt import Walked

    for name in ("http2-tls13-youtube-chrome.pcapng", "tls12-tls13-http10-scapy-nss.pcap",
                 "https-tls12-39-ciphers.pcapng"):
        cap = corpus / name
        own = decode_capture(cap, _keys(corpus, name), host_id="h", secret_key=KEY, run_id="r", workers=False)
        with MappedFile(cap) as mf:
            rec = read_records(cap, mf)
            h = walk(mf.buf, rec)
            given = decode_capture(cap, _keys(corpus, name), host_id="h", secret_key=KEY, run_id="r",
                                   workers=False, walked=Walked(mf, rec, h, assign(h)))
            assert len(mf.buf) == cap.stat().st_size  # not closed by the decryptor
        assert given.tables == own.tables and given.stats == {**own.stats, "seconds": given.stats["seconds"]}, name


def test_corpus_fallbacks_are_recorded(corpus):
    r = decode_capture(corpus / "https-tls12-39-ciphers.pcapng", corpus / "https-tls12-39-ciphers.keys",
                       host_id="h", secret_key=KEY, run_id="r")
    assert r.stats["decryptor"] == "tshark" and "cipher suite" in r.stats["native_fallback"]
    assert len(r.tables["http"]) == 39
    r = decode_capture(corpus / "http-nflog.pcap", None, host_id="h", secret_key=KEY, run_id="r")
    assert r.stats["decryptor"] == "tshark" and "link type" in r.stats["native_fallback"]
    r = decode_capture(corpus / "http2-tls13-youtube-chrome.pcapng", None, host_id="h", secret_key=KEY, run_id="r")
    assert r.stats["decryptor"] == "native" and r.stats["native_fallback"] is None  # keys from the pcapng DSB
    assert len(r.tables["http"]) == 15
    assert [m.alpn for m in r.streams if m.tls] == ["h2"]  # TLS 1.3: from the decrypted EncryptedExtensions


def test_big_connection_goes_to_tshark(corpus, monkeypatch):
    """A connection is reassembled whole in memory natively; past MAX_FLOW_BYTES tshark (streamed) does it."""
    import collector.tls.native_decrypt as nd

    monkeypatch.setattr(nd, "MAX_FLOW_BYTES", 100_000)
    r = decode_capture(corpus / "http2-tls13-youtube-chrome.pcapng", None, host_id="h", secret_key=KEY, run_id="r")
    assert r.stats["decryptor"] == "tshark" and "MiB" in r.stats["native_fallback"] and len(r.tables["http"]) == 15


# -- real TLS on loopback ------------------------------------------------------------------------
needs_tools = pytest.mark.skipif(capture_tool() is None or not shutil.which("tshark") or not shutil.which("openssl"),
                                 reason="needs tcpdump/dumpcap, tshark and openssl (CI has them)")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """`openssl s_server -HTTP` serving one file (a whole HTTP/1.0 response) from `root`."""

    def __init__(self, pki, root: Path, args: list[str]):
        self.port = _port()
        self.proc = subprocess.Popen(
            ["openssl", "s_server", "-accept", f"127.0.0.1:{self.port}", "-cert", str(pki.cert), "-key", str(pki.key),
             "-HTTP", "-quiet", *args], cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("openssl s_server did not start")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _client(port: int, pki, keylog: Path, args: list[str], path: str, key_update: bool = False) -> bytes:
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(pki.ca), "-keylogfile", str(keylog),
           *args]
    req = f"GET /{path} HTTP/1.0\r\n\r\n".encode()
    if not key_update:
        r = subprocess.run([*cmd, "-quiet", "-ign_eof"], input=req, capture_output=True, timeout=20)
        return r.stdout
    # interactive mode: a line "K" makes s_client send a KeyUpdate asking the server to update too
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdin is not None
    time.sleep(0.5)
    p.stdin.write(b"K\n")
    p.stdin.flush()
    time.sleep(0.3)
    p.stdin.write(req)
    p.stdin.flush()
    time.sleep(1.0)
    return p.communicate(timeout=20)[0]


def _capture(tmp_path: Path, name: str, runs: list[tuple[list[str], list[str], bool]]) -> tuple[Path, Path]:
    """One capture of several connections: (server args, client args, key update) each."""
    pki = ensure_pki(tmp_path / "pki")
    root = tmp_path / "www"
    root.mkdir(exist_ok=True)
    (root / "r.json").write_bytes(b"HTTP/1.0 200 ok\r\nContent-Type: application/json\r\n\r\n" + BODY)
    keylog = tmp_path / f"{name}.keys"
    for attempt in range(3):
        keylog.unlink(missing_ok=True)
        servers = [_Server(pki, root, s) for s, _, _ in runs]
        try:
            with capture_loopback(tmp_path / f"{name}.pcap", ports=[s.port for s in servers]) as cap:
                for srv, (_, cargs, ku) in zip(servers, runs, strict=True):
                    assert BODY in _client(srv.port, pki, keylog, cargs, "r.json", ku)
        finally:
            for s in servers:
                s.stop()
        if cap.stats.get("dropped", 0) == 0 or attempt == 2:
            return cap.path, keylog
    raise AssertionError("unreachable")


@needs_tools
def test_generated_tls12_and_tls13_identical_to_tshark(tmp_path):
    runs = [(["-tls1_2", "-cipher", c], ["-tls1_2", "-cipher", c], False) for c in TLS12]
    runs += [(["-tls1_3", "-ciphersuites", c], ["-tls1_3", "-ciphersuites", c], False) for c in TLS13]
    runs.append((["-tls1_3", "-ciphersuites", TLS13[2]], ["-tls1_3", "-ciphersuites", TLS13[2]], True))
    pcap, keys = _capture(tmp_path, "aead", runs)
    native = decrypted_streams(NativeDecrypt(pcap, keys))
    assert native == decrypted_streams(TsharkDecrypt(pcap, keys))
    assert sum(BODY in v for v in native.values()) == len(runs)
    r = decode_capture(pcap, keys, host_id="h", secret_key=KEY, run_id="r")
    assert r.stats["decryptor"] == "native" and r.errors == []
    assert r.stats["decrypted_flows"] == len(runs) and r.stats["undecrypted_flows"] == 0
    assert [(x["path"], x["status"], x["response_body_bytes"]) for x in r.tables["http"]] == [("/r.json", 200, len(BODY))] * len(runs)
    # the same packets reordered and repeated (out-of-order delivery, retransmissions): same bytes
    mangled = _reorder(pcap, tmp_path / "mangled.pcap")
    assert decrypted_streams(NativeDecrypt(mangled, keys)) == native
    r2 = decode_capture(mangled, keys, host_id="h", secret_key=KEY, run_id="r")
    assert r2.stats["decryptor"] == "native" and r2.stats["retransmissions_dropped"] >= 3
    assert r2.stats["capture_gaps"] == 0 and r2.tables["http"] and len(r2.tables["http"]) == len(r.tables["http"])
    # port reuse: every connection rewritten onto the first one's ports is still its own connection
    reused = _rewrite_ports(pcap, tmp_path / "reused.pcap")
    assert decrypted_streams(NativeDecrypt(reused, keys)) == decrypted_streams(TsharkDecrypt(reused, keys))
    r3 = decode_capture(reused, keys, host_id="h", secret_key=KEY, run_id="r")
    assert r3.stats["decryptor"] == "native" and r3.stats["tcp_streams"] == len(runs)
    assert r3.stats["decrypted_flows"] == len(runs) and len(r3.tables["http"]) == len(runs)
    # a wrong key log (another capture's) decrypts nothing and says so
    wrong = tmp_path / "wrong.keys"
    wrong.write_text("".join(f"{ln.split()[0]} {ln.split()[1]} {'00' * 32}\n" for ln in keys.read_text().splitlines()))
    r = decode_capture(pcap, wrong, host_id="h", secret_key=KEY, run_id="r")
    assert r.stats["decryptor"] == "native" and r.tables["http"] == [] and r.stats["decrypted_flows"] == 0
    assert r.errors and "decrypted none" in r.errors[0] and r.stats["undecrypted_flows"] == len(runs)


def _reorder(src: Path, dst: Path) -> Path:
    """A classic pcap of `src` (Ethernet/IPv4 on lo) where every TCP segment with more than 3,000
    payload bytes is cut into 1,000-byte segments sent out of order (the second after the third)
    and the second repeated (a retransmission)."""
    import struct

    out = []
    for ts, p in _packets(src):
        ihl = (p[14] & 0xF) * 4
        tcp = 14 + ihl
        head = tcp + (p[tcp + 12] >> 4) * 4
        payload = p[head:]
        if p[12:14] != b"\x08\x00" or p[23] != 6 or len(payload) <= 3000:
            out.append((ts, p))
            continue
        seq = struct.unpack_from("!I", p, tcp + 4)[0]
        pieces = []
        for k in range(0, len(payload), 1000):
            q = bytearray(p[:head]) + payload[k : k + 1000]
            struct.pack_into("!H", q, 16, len(q) - 14)
            struct.pack_into("!I", q, tcp + 4, (seq + k) & 0xFFFFFFFF)
            pieces.append(bytes(q))
        pieces[1], pieces[2] = pieces[2], pieces[1]
        pieces.insert(3, pieces[2])
        out += [(ts, q) for q in pieces]
    return _write_pcap(dst, out)


def _packets(src: Path) -> list[tuple[int, bytes]]:
    from collector.capture.records import MappedFile, read_records

    with MappedFile(src) as mf:
        rec = read_records(src, mf)
        assert rec.linktypes == [1]  # Ethernet on lo
        return [(int(t), bytes(mf.mm[o : o + c])) for t, o, c in
                zip(rec.ts_ns.tolist(), rec.data_off.tolist(), rec.caplen.tolist(), strict=True)]


def _write_pcap(dst: Path, pkts: list[tuple[int, bytes]]) -> Path:
    import struct

    with open(dst, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1))
        for ts, data in pkts:
            f.write(struct.pack("<IIII", ts // 10**9, ts % 10**9, len(data), len(data)) + data)
    return dst


def _rewrite_ports(src: Path, dst: Path) -> Path:
    """Every TCP connection of `src` moved onto the ports of its first connection (checksums are not
    checked by either decryptor), so the connections differ only by their SYN's sequence number."""
    import struct

    pkts = _packets(src)

    def ports(p: bytes) -> tuple[int, int, int]:
        tcp = 14 + (p[14] & 0xF) * 4
        return (*struct.unpack_from("!HH", p, tcp), tcp)

    syns = [ports(p)[:2] for _, p in pkts if p[14 + (p[14] & 0xF) * 4 + 13] & 0x12 == 0x02]
    servers = {d for _, d in syns}
    client, server = syns[0]
    out = []
    for ts, p in pkts:
        sp, dp, tcp = ports(p)
        q = bytearray(p)
        struct.pack_into("!HH", q, tcp, *((client, server) if dp in servers else (server, client)))
        out.append((ts, bytes(q)))
    return _write_pcap(dst, out)


@needs_tools
def test_cbc_suite_falls_back_to_tshark(tmp_path):
    cbc = "ECDHE-ECDSA-AES128-SHA256"
    pcap, keys = _capture(tmp_path, "cbc", [(["-tls1_2", "-cipher", cbc], ["-tls1_2", "-cipher", cbc], False)])
    with pytest.raises(NativeUnsure, match="cipher suite 0xc023"):
        list(NativeDecrypt(pcap, keys))
    r = decode_capture(pcap, keys, host_id="h", secret_key=KEY, run_id="r")
    assert r.stats["decryptor"] == "tshark" and "0xc023" in r.stats["native_fallback"]
    assert [(x["path"], x["response_body_bytes"]) for x in r.tables["http"]] == [("/r.json", len(BODY))]
