"""The ClientHellos read from their first segment (tlspeek) equal tshark's dissection of the same
packets, and the vectorised reader (client_hellos) equals the per-hello parser (client_hello) on
every input, real, generated or mutated."""

from __future__ import annotations

import random
import struct
import subprocess

import numpy as np
import pytest

from collector.capture import dissect, flows, headers, tlspeek, tshark
from collector.capture.records import MappedFile, read_records
from tests.conftest import CORPUS
from tests.support.gen_capture import client_hello as generated_hello

CAPTURES = sorted(p for p in CORPUS.glob("*.pcap*")) if CORPUS.is_dir() else []
FIELDS = ("sni", "alpn", "legacy_version", "version", "ciphers", "extensions", "supported_versions", "sig_algs")


def _python_hellos(path) -> dict[int, tuple[dissect.Hello, tlspeek.ClientHelloFields]]:
    """Frame number -> (the per-hello parser's Hello, the fields ingest's selection stored) for the
    ClientHellos the selection read itself."""
    with MappedFile(path) as mf:
        rec = read_records(path, mf, None)
        if not all(lt in headers.FAST_LINKTYPES for lt in set(rec.linktypes)):
            return {}
        hd = headers.walk(mf.buf, rec)
        fa = flows.assign(hd)
        sel = flows.select_for_dissection(hd, fa, mf, rec.data_off + rec.caplen)
        out = {}
        for r, fields in sel.client_hellos.values():
            po = int(hd.payload_off[r])
            end = min(int(rec.data_off[r] + rec.caplen[r]), po + int(hd.plen[r]))
            out[r + 1] = (tlspeek.client_hello(bytes(mf.buf[po:end])), fields)
        return out


def _tshark_hellos(path) -> dict[int, dissect.Hello]:
    args = tshark.base_args() + ["-r", str(path), "-Y", "tls.handshake.type == 1 && tcp"]
    out = subprocess.run(args + tshark.fields_args(dissect.FIELDS), capture_output=True, text=True).stdout
    return {h.frame: h for h in dissect.parse(out)[1] if h.client}


def test_client_hello_fields_match_tshark() -> None:
    if not CAPTURES:
        pytest.skip(f"the shared corpus is not beside this checkout ({CORPUS}); CI always has it")
    parsed = 0
    for path in CAPTURES:
        mine, theirs = _python_hellos(path), _tshark_hellos(path)
        for frame, (h, fields) in mine.items():
            assert frame in theirs, (path.name, frame)
            t = theirs[frame]
            assert {k: getattr(h, k) for k in FIELDS} == {k: getattr(t, k) for k in FIELDS}, (path.name, frame)
            assert h.ja4("t") == t.ja4("t"), (path.name, frame)
            assert fields == (t.version, t.sni, ",".join(t.alpn) or None, t.ja4("t")), (path.name, frame)
        parsed += len(mine)
    assert parsed >= 10  # the corpus has many single-segment hellos: the Python path is exercised


def _reference(bodies: list[bytes]) -> list[tlspeek.ClientHelloFields | None]:
    out = []
    for b in bodies:
        h = tlspeek.client_hello(b)
        out.append(None if h is None else tlspeek.ClientHelloFields(h.version, h.sni, ",".join(h.alpn) or None,
                                                                    h.ja4("t")))
    return out


def _hello(exts: list[tuple[int, bytes]], ciphers: bytes = b"\x13\x01\x13\x02", legacy: int = 0x0303) -> bytes:
    """A ClientHello record with these extensions (type, data), in this order."""
    ext = b"".join(struct.pack("!HH", t, len(d)) + d for t, d in exts)
    body = struct.pack("!H", legacy) + bytes(32) + b"\x00" + struct.pack("!H", len(ciphers)) + ciphers + b"\x01\x00"
    body += struct.pack("!H", len(ext)) + ext
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def _sni(name: bytes) -> tuple[int, bytes]:
    return 0, struct.pack("!HBH", len(name) + 3, 0, len(name)) + name


def _alpn(*protos: bytes) -> tuple[int, bytes]:
    lst = b"".join(bytes([len(p)]) + p for p in protos)
    return 16, struct.pack("!H", len(lst)) + lst


SV13 = (43, b"\x04\x03\x04\x03\x03")
SIGS = (13, b"\x00\x04\x04\x03\x08\x04")


def _odd_hellos() -> list[bytes]:
    """Hellos the vectorised walk hands to the per-hello parser, or reads at its limits."""
    return [
        _hello([_sni(b"a.example"), *[(0x1000 + k, b"") for k in range(70)], SV13]),  # > 64 extensions
        _hello([_sni(b"b.example"), _alpn(b"h2"), _alpn(b"http/1.1"), SV13]),  # two ALPN extensions
        _hello([_sni(b"c.example"), (16, b"\x00\x03\x05h2"), SV13, SIGS]),  # an ALPN entry past its extension
        _hello([_sni(b"d.example"), SV13], ciphers=bytes(range(256)) * 3),  # a 768-byte cipher list
        _hello([_sni(b"first.example"), _sni(b"second.example"), SV13]),  # the last server_name wins
        _hello([_sni(b"caf\xc3\xa9.\xff.example"), _alpn(b"\xff\x00", b"h2"), SV13, SIGS]),  # not UTF-8
        _hello([(0, b"\x00\x05\x01\x00\x02ab"), SV13]),  # a server_name entry of another type: no SNI
        _hello([_sni(b"e.example"), (43, b"\x07\x0a\x0a\x03\x04\x03\x03"), (13, b"\x00\x09\x04\x03")]),  # short lists
        _hello([_sni(b"f.example"), (43, b""), (16, b"\x00"), (13, b"\x00")]),  # too short to read
        _hello([]),  # an empty extension block
        _hello([_sni(b"g.example")])[:-3],  # cut inside an extension
        _hello([_sni(b"h.example"), SV13])[:60],
        _hello([(0x0A0A, b""), _sni(b"grease.example"), _alpn(b"h2"), (0x1A1A, b"\x00"), SV13, SIGS]),
        _hello([_sni(b"i.example")]) + b"\x17\x03\x03\x00\x01\x00",  # another record behind the hello
        b"", b"\x16", b"\x16\x03\x01\x00\x00\x01" + bytes(60),
    ]


def test_client_hellos_equal_the_per_hello_parser() -> None:
    bodies = [generated_hello(f"api{i}.example.com", bytes([i % 256]) * 32) for i in range(300)]
    bodies += _odd_hellos()
    expected = _reference(bodies)
    assert tlspeek.client_hellos(bodies) == expected
    assert expected[0] == (0x0304, "api0.example.com", "h2,http/1.1", expected[1].ja4)
    odd = expected[300:]
    assert odd[0].sni == "a.example" and odd[1].alpn == "h2,http/1.1" and odd[4].sni == "second.example"
    assert odd[3] is not None and odd[6].sni is None and odd[10] is None and odd[11] is None
    assert tlspeek.client_hellos([]) == []


def test_client_hellos_equal_the_per_hello_parser_on_mutations() -> None:
    seeds = [generated_hello(f"s{i}.example", bytes([7 * i % 256]) * 32) for i in range(20)] + _odd_hellos()[:9]
    rnd = random.Random(17)
    mutants = []
    for _ in range(3000):
        b = bytearray(rnd.choice(seeds))
        for _ in range(rnd.choice((1, 1, 2, 3, 8))):
            k = rnd.randrange(6)
            if k < 3 and b:
                b[rnd.randrange(len(b))] = rnd.randrange(256)
            elif k == 3 and b:
                i = rnd.randrange(len(b))
                del b[i:i + rnd.randrange(1, 40)]
            elif k == 4:
                i = rnd.randrange(len(b) + 1)
                b[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 20)))
            else:
                b = b[:rnd.randrange(len(b) + 1)]
        mutants.append(bytes(b))
    expected = _reference(mutants)
    assert tlspeek.client_hellos(mutants) == expected
    parsed = sum(x is not None for x in expected)
    assert 300 < parsed < 2900  # both outcomes are exercised


def test_client_hellos_of_the_corpus_equal_the_per_hello_parser() -> None:
    if not CAPTURES:
        pytest.skip(f"the shared corpus is not beside this checkout ({CORPUS}); CI always has it")
    bodies = []
    for path in CAPTURES:
        with MappedFile(path) as mf:
            rec = read_records(path, mf, None)
            if not all(lt in headers.FAST_LINKTYPES for lt in set(rec.linktypes)):
                continue
            hd = headers.walk(mf.buf, rec)
            for r in (hd.ok & (hd.proto == headers.TCP) & (hd.plen > 0)).nonzero()[0].tolist():
                po = int(hd.payload_off[r])
                b = bytes(mf.buf[po:min(int(rec.data_off[r] + rec.caplen[r]), po + int(hd.plen[r]))])
                if b[:1] == b"\x16":
                    bodies.append(b)
    expected = _reference(bodies)
    assert tlspeek.client_hellos(bodies) == expected
    assert sum(x is not None for x in expected) >= 10


def _server_hello(cipher: int, alpn: bytes | None) -> bytes:
    ext = struct.pack(">HHH", 43, 2, 0x0304)
    if alpn is not None:
        ext += struct.pack(">HHHB", 16, len(alpn) + 3, len(alpn) + 1, len(alpn)) + alpn
    body = struct.pack(">H", 0x0303) + bytes(32) + b"\0" + struct.pack(">HB", cipher, 0) + struct.pack(">H", len(ext)) + ext
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x03" + struct.pack(">H", len(hs)) + hs


def test_peek_mapped_equals_peek_in_any_order(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """peek_mapped reads the hellos in file order, a chunk at a time; its rows come back in the
    caller's order, equal to peek() over the whole file."""
    monkeypatch.setattr(tlspeek, "PEEK_CHUNK", 7)
    rng = random.Random(3)
    blob, offs = bytearray(), []
    for i in range(60):
        blob += rng.randbytes(rng.randrange(0, 3000))
        offs.append(len(blob))
        blob += _server_hello(0x1301 + i % 3, [b"h2", b"http/1.1", None][i % 3])
    path = tmp_path / "hellos.bin"
    path.write_bytes(bytes(blob))
    po = np.asarray(offs + [rng.randrange(len(blob)) for _ in range(40)] + [-1], np.int64)
    rng.shuffle(po)
    plen = np.full(len(po), 200, np.int64)
    end = np.minimum(po + 200, len(blob))
    with MappedFile(path) as mf:
        got = tlspeek.peek_mapped(mf, po, plen, end)
        want = tlspeek.peek(mf.buf, po, plen, end)
    assert got.ok.sum() >= 60
    assert got.ok.tolist() == want.ok.tolist() and got.alpn == want.alpn
    assert got.version[got.ok].tolist() == want.version[want.ok].tolist()
    assert got.cipher[got.ok].tolist() == want.cipher[want.ok].tolist()
