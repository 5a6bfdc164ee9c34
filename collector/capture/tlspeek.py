"""ServerHello fields read with numpy (negotiated version, cipher, selected ALPN), and ClientHellos
parsed in Python from their first segment (SNI, ALPN, and the JA4 inputs).

A ServerHello is a short fixed layout followed by a few extensions, so it is read vectorised for
all flows at once; only the selected ALPN string is decoded per flow. A hello that is not
entirely inside its first segment (or anything unexpected) is left to tshark, which reassembles.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from collector.capture.dissect import Hello
from collector.capture.records import MappedFile

MAX_EXTENSIONS = 24


@dataclass
class ServerHellos:
    ok: np.ndarray  # bool: parsed here
    version: np.ndarray  # int64 (selected supported_version, else the legacy version)
    cipher: np.ndarray  # int64
    alpn: list[str | None]  # per row (None where absent or not ok)


SERVER_HELLO_WINDOW = 2048  # bytes read per server packet: a ServerHello with a hybrid post-quantum
                            # key share is ~1.2 KB; a longer one is not ok here and goes to tshark
PEEK_CHUNK = 4096  # server packets per compact buffer (8 MiB)


def peek_mapped(mapped: MappedFile, payload_off: np.ndarray, plen: np.ndarray, end: np.ndarray) -> ServerHellos:
    """peek() over a mapped capture: the first SERVER_HELLO_WINDOW payload bytes of each packet are
    copied (MappedFile.take: file order, pages released behind) into a compact buffer, a slice of
    packets at a time, and parsed there."""
    parts: list[ServerHellos] = []
    for i in range(0, len(payload_off), PEEK_CHUNK):
        p, n, e = payload_off[i:i + PEEK_CHUNK], plen[i:i + PEEK_CHUNK], end[i:i + PEEK_CHUNK]
        rows = mapped.take(p, SERVER_HELLO_WINDOW)
        base = np.arange(len(p), dtype=np.int64) * SERVER_HELLO_WINDOW
        parts.append(peek(rows.ravel(), np.where(p >= 0, base, -1), n, base + np.clip(e - p, 0, SERVER_HELLO_WINDOW)))
    if not parts:
        return peek(np.zeros(0, np.uint8), payload_off, plen, end)
    return ServerHellos(ok=np.concatenate([s.ok for s in parts]), version=np.concatenate([s.version for s in parts]),
                        cipher=np.concatenate([s.cipher for s in parts]), alpn=[a for s in parts for a in s.alpn])


def peek(buf: np.ndarray, payload_off: np.ndarray, plen: np.ndarray, end: np.ndarray) -> ServerHellos:
    """Parse the TLS ServerHello at the start of each given payload."""

    def u8(i: np.ndarray) -> np.ndarray:
        return buf.take(i, mode="clip").astype(np.int64)

    def u16(i: np.ndarray) -> np.ndarray:
        return (u8(i) << 8) | u8(i + 1)

    p = payload_off
    limit = np.minimum(end, p + plen)  # captured bytes of this segment's payload
    ok = (plen >= 44) & (p >= 0) & (p + 44 <= limit) & (u8(p) == 0x16) & (u8(p + 5) == 2)
    rec_end = p + 5 + u16(p + 3)
    hs_end = p + 9 + ((u8(p + 6) << 16) | u16(p + 7))
    ok &= (hs_end <= rec_end) & (hs_end <= limit)
    base = p + 9
    version = u16(base)
    sid = u8(base + 34)
    c = base + 35 + sid
    cipher = u16(c)
    has_ext = c + 5 <= hs_end
    e = c + 5
    ext_end = np.where(has_ext, e + u16(c + 3), e)
    ok &= ext_end <= hs_end
    alpn_at = np.full(len(p), -1, np.int64)
    for _ in range(MAX_EXTENSIONS):
        active = ok & (e + 4 <= ext_end)
        if not active.any():
            break
        t, ln = u16(e), u16(e + 2)
        version = np.where(active & (t == 43) & (ln == 2), u16(e + 4), version)
        alpn_at = np.where(active & (t == 16) & (ln >= 3), e + 4, alpn_at)
        e = np.where(active, e + 4 + ln, e)
    ok &= e == ext_end
    alpn: list[str | None] = [None] * len(p)
    for i in np.nonzero(ok & (alpn_at >= 0))[0].tolist():
        o = int(alpn_at[i])
        n = int(buf[o + 2])
        alpn[i] = bytes(buf[o + 3 : o + 3 + n]).decode("utf-8", "replace")
    return ServerHellos(ok=ok, version=version, cipher=cipher, alpn=alpn)


def _u16s(b: bytes) -> list[int]:
    """Big-endian 16-bit list (a trailing odd byte ignored)."""
    return list(struct.unpack(f">{len(b) // 2}H", b[: len(b) & ~1]))


def client_hello(b: bytes) -> Hello | None:
    """The ClientHello fields tshark would report (all lists in wire order, GREASE kept), parsed from
    one TLS record that holds the whole hello; None when it does not (tshark then reassembles)."""
    n = len(b)
    if n < 47 or b[0] != 0x16 or b[5] != 1:
        return None
    rec_end = 5 + ((b[3] << 8) | b[4])
    hs_end = 9 + ((b[6] << 16) | (b[7] << 8) | b[8])
    if hs_end > rec_end or hs_end > n:
        return None
    return client_hello_body(b[9:hs_end])


def client_hello_body(b: bytes) -> Hello | None:
    """A ClientHello handshake body (after its 4-byte handshake header, however many records carried
    it: the native decryptor reassembles them) -> Hello; None when a length field does not fit."""
    hs_end = len(b)
    if hs_end < 38:
        return None
    legacy = (b[0] << 8) | b[1]
    c = 35 + b[34]  # after version(2) + random(32) + session id
    if c + 2 > hs_end:
        return None
    c_end = c + 2 + ((b[c] << 8) | b[c + 1])
    if c_end + 1 > hs_end:
        return None
    ciphers = _u16s(b[c + 2 : c_end])
    e = c_end + 1 + b[c_end]  # after compression methods
    h = Hello(frame=0, client=True, legacy_version=legacy, ciphers=ciphers, random=b[2:34])
    if e + 2 <= hs_end:
        ext_end = e + 2 + ((b[e] << 8) | b[e + 1])
        if ext_end > hs_end:
            return None
        e += 2
        exts = h.extensions
        while e + 4 <= ext_end:
            t = (b[e] << 8) | b[e + 1]
            d = e + 4
            e = d + ((b[e + 2] << 8) | b[e + 3])
            if e > ext_end:
                return None
            exts.append(t)
            if t == 0 and e - d >= 5 and b[d + 2] == 0:  # server_name: first host_name entry
                h.sni = b[d + 5 : d + 5 + ((b[d + 3] << 8) | b[d + 4])].decode("utf-8", "replace")
            elif t == 16 and e - d >= 2:  # ALPN protocol_name_list
                a = d + 2
                while a < e:
                    ln = b[a]
                    if ln:
                        h.alpn.append(b[a + 1 : a + 1 + ln].decode("utf-8", "replace"))
                    a += 1 + ln
            elif t == 43 and e - d >= 1:
                h.supported_versions = _u16s(b[d + 1 : d + 1 + b[d]])
            elif t == 13 and e - d >= 2:
                h.sig_algs = _u16s(b[d + 2 : d + 2 + ((b[d] << 8) | b[d + 1])])
        if e != ext_end:
            return None
    sv = [v for v in h.supported_versions if (v & 0x0F0F) != 0x0A0A]
    h.version = max(sv) if sv else legacy
    return h
