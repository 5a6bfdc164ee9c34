"""ServerHello fields read with numpy (negotiated version, cipher, selected ALPN), and ClientHellos
(SNI, ALPN, JA4) read from the TLS record's bytes: their first segment, or the first few
reassembled by flows._split_client_hellos.

A ServerHello is a short fixed layout followed by a few extensions, so it is read vectorised for
all flows at once; only the selected ALPN string is decoded per flow. ClientHellos are walked the
same way (client_hellos: numpy over all hellos, one step per extension index); the fields they
share with other hellos (ciphers, extensions, versions, ALPN, signature algorithms: JA4's inputs)
are parsed once per distinct set by the per-hello parser (client_hello), which stays the
reference and reads whatever the vectorised walk declines. A hello whose segments tshark might
reassemble differently (flows._split_client_hellos), or anything unexpected, is left to tshark.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

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
PEEK_CHUNK = 2048  # server packets per compact buffer (4 MiB)


def peek_mapped(mapped: MappedFile, payload_off: np.ndarray, plen: np.ndarray, end: np.ndarray,
                release: bool = True) -> ServerHellos:
    """peek() over a mapped capture: the first SERVER_HELLO_WINDOW payload bytes of each packet are
    copied (MappedFile.take: pages released behind, unless `release` is False because the caller
    reads inside one part of MappedFile.in_file_order) into a compact buffer, a slice of packets at a
    time, and parsed there. The slices go in file order, so each maps only its own stretch of the
    file (in the callers' flow order every slice would map pages all over it)."""
    order = np.argsort(payload_off, kind="stable")
    parts: list[ServerHellos] = []
    for i in range(0, len(order), PEEK_CHUNK):
        o = order[i:i + PEEK_CHUNK]
        p, n, e = payload_off[o], plen[o], end[o]
        rows = mapped.take(p, SERVER_HELLO_WINDOW, release=release)
        base = np.arange(len(p), dtype=np.int64) * SERVER_HELLO_WINDOW
        parts.append(peek(rows.ravel(), np.where(p >= 0, base, -1), n, base + np.clip(e - p, 0, SERVER_HELLO_WINDOW)))
    if not parts:
        return peek(np.zeros(0, np.uint8), payload_off, plen, end)
    back = np.empty_like(order)
    back[order] = np.arange(len(order))  # row of each input in the file-ordered results
    return joined(parts, back)


def joined(parts: list[ServerHellos], rows: np.ndarray) -> ServerHellos:
    """The rows of `parts` (concatenated) in the order `rows` gives: output i is row rows[i]."""
    alpn = [a for s in parts for a in s.alpn]
    return ServerHellos(ok=np.concatenate([s.ok for s in parts])[rows],
                        version=np.concatenate([s.version for s in parts])[rows],
                        cipher=np.concatenate([s.cipher for s in parts])[rows],
                        alpn=[alpn[k] for k in rows.tolist()])


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


class ClientHelloFields(NamedTuple):
    """What a tls row takes from a ClientHello carried over TCP."""

    version: int  # highest supported_version (GREASE skipped), else the legacy version
    sni: str | None
    alpn: str | None  # the offered protocols, comma-joined
    ja4: str  # JA4 with protocol 't'


MAX_CLIENT_EXTENSIONS = 64  # more than this (real clients send ~20) goes to the per-hello parser
MAX_KEY_REGION = 512  # bytes of a cipher, version, signature or ALPN list compared in place; longer: per hello
MAX_ALPN_ENTRIES = 16


def client_hellos(bodies: list[bytes]) -> list[ClientHelloFields | None]:
    """client_hello() for many TLS records at once, with the same result for each (None where it
    returns None). The structure is walked with numpy for all records together; the fields other
    than the SNI are equal for every hello with the same cipher, extension, version, signature and
    ALPN bytes, so client_hello() parses one hello of each such group (few: one per client
    configuration) and its fields go to the whole group. Records the walk does not follow exactly
    (over MAX_CLIENT_EXTENSIONS extensions, two ALPN extensions, an ALPN entry running past its
    extension, a list longer than MAX_KEY_REGION) are parsed one by one by client_hello().

    Long because it mirrors client_hello() check for check, in order, over arrays: split into
    pieces, each would take and return a dozen per-hello arrays."""
    n = len(bodies)
    out: list[ClientHelloFields | None] = [None] * n
    if not n:
        return out
    joined = b"".join(bodies)
    if not joined:
        return out
    buf = np.frombuffer(joined, np.uint8)
    lens = np.fromiter(map(len, bodies), np.int64, n)
    base = np.zeros(n, np.int64)
    np.cumsum(lens[:-1], out=base[1:])

    def u8(i: np.ndarray) -> np.ndarray:
        return buf.take(i, mode="clip").astype(np.int64)

    def u16(i: np.ndarray) -> np.ndarray:
        return (u8(i) << 8) | u8(i + 1)

    # client_hello(): the record and handshake headers (positions from here on are in the body,
    # the handshake after its 4-byte header: b0 + p in buf)
    ok = (lens >= 47) & (u8(base) == 0x16) & (u8(base + 5) == 1)
    hs_end = 9 + ((u8(base + 6) << 16) | u16(base + 7))
    ok &= (hs_end <= 5 + u16(base + 3)) & (hs_end <= lens)
    b0 = base + 9
    blen = hs_end - 9
    # client_hello_body(): version, random, session id, ciphers, compression methods
    ok &= blen >= 38
    c = 35 + u8(b0 + 34)
    ok &= c + 2 <= blen
    c_end = c + 2 + u16(b0 + c)
    ok &= c_end + 1 <= blen
    e = c_end + 1 + u8(b0 + c_end)
    has_ext = ok & (e + 2 <= blen)
    ext_end = np.where(has_ext, e + 2 + u16(b0 + e), e)
    ok &= ~has_ext | (ext_end <= blen)
    e = np.where(has_ext, e + 2, e)
    # the extensions, one index at a time for every hello; "last wins" as in the per-hello loop
    zero = np.zeros(n, np.int64)
    types = np.zeros((n, MAX_CLIENT_EXTENSIONS), np.uint16)
    count = zero.copy()
    has_sni = np.zeros(n, bool)
    sni_a, sni_z, sv_a, sv_z, sig_a, sig_z = (zero.copy() for _ in range(6))
    alpn_n, alpn_a, alpn_z = zero.copy(), zero.copy(), zero.copy()
    active = has_ext & ok & (e + 4 <= ext_end)
    for k in range(MAX_CLIENT_EXTENSIONS):
        if not active.any():
            break
        t = u16(b0 + e)
        d = e + 4
        nxt = d + u16(b0 + e + 2)
        ok &= ~(active & (nxt > ext_end))
        act = active & ok
        types[act, k] = t[act]
        count += act
        size = nxt - d
        s = act & (t == 0) & (size >= 5) & (u8(b0 + d + 2) == 0)  # server_name: first host_name entry
        has_sni |= s
        sni_a = np.where(s, d + 5, sni_a)
        sni_z = np.where(s, np.minimum(d + 5 + u16(b0 + d + 3), blen), sni_z)
        a = act & (t == 16) & (size >= 2)  # ALPN
        alpn_n += a
        alpn_a = np.where(a, d + 2, alpn_a)
        alpn_z = np.where(a, nxt, alpn_z)
        v = act & (t == 43) & (size >= 1)  # supported_versions
        sv_a = np.where(v, d + 1, sv_a)
        sv_z = np.where(v, np.minimum(d + 1 + u8(b0 + d), blen), sv_z)
        g = act & (t == 13) & (size >= 2)  # signature_algorithms
        sig_a = np.where(g, d + 2, sig_a)
        sig_z = np.where(g, np.minimum(d + 2 + u16(b0 + d), blen), sig_z)
        e = np.where(act, nxt, e)
        active = act & (e + 4 <= ext_end)
    by_hand = active.copy()  # more extensions than the walk follows
    ok &= ~has_ext | by_hand | (e == ext_end)
    # ALPN entries: one extension whose entries end inside it (a longer one reads past it: by hand)
    by_hand |= ok & (alpn_n > 1)
    a = alpn_a.copy()
    walking = ok & (alpn_n == 1) & (a < alpn_z)
    for _ in range(MAX_ALPN_ENTRIES):
        if not walking.any():
            break
        nxt = a + 1 + u8(b0 + a)
        by_hand |= walking & (nxt > alpn_z)
        a = np.where(walking, nxt, a)
        walking &= a < alpn_z
    by_hand |= walking
    alpn_z = np.where(alpn_n == 1, alpn_z, alpn_a)
    regions = [(c + 2, c_end), (sv_a, sv_z), (sig_a, sig_z), (alpn_a, alpn_z)]
    for lo, hi in regions:
        by_hand |= ok & (hi - lo > MAX_KEY_REGION)
    for i in np.nonzero(ok & by_hand)[0].tolist():
        out[i] = _fields(client_hello(bodies[i]))
    walked = np.nonzero(ok & ~by_hand)[0]
    if not len(walked):
        return out
    # group the walked hellos by every byte their shared fields come from
    w0 = b0[walked]
    parts = [_be_bytes(u16(w0), 2), has_sni[walked, None].astype(np.uint8), _be_bytes(count[walked], 1)]
    parts.append(types[walked, : int(count[walked].max())].astype(">u2").view(np.uint8))
    for lo, hi in regions:
        parts.append(_region(buf, w0 + lo[walked], hi[walked] - lo[walked]))
    key = np.ascontiguousarray(np.concatenate(parts, axis=1))
    _, first, group = np.unique(key.view(np.dtype((np.void, key.shape[1]))).ravel(), return_index=True,
                                return_inverse=True)
    shared: list[tuple[int, str | None, str] | None] = []
    for i in walked[first].tolist():
        h = client_hello(bodies[i])
        shared.append(None if h is None else (h.version, ",".join(h.alpn) if h.alpn else None, h.ja4("t")))
    sni = [joined[p:q].decode("utf-8", "replace") if s else None
           for p, q, s in zip((w0 + sni_a[walked]).tolist(), (w0 + sni_z[walked]).tolist(), has_sni[walked].tolist(),
                              strict=True)]
    for i, g_, name in zip(walked.tolist(), group.reshape(-1).tolist(), sni, strict=True):
        f = shared[g_]
        out[i] = ClientHelloFields(f[0], name, f[1], f[2]) if f is not None else _fields(client_hello(bodies[i]))
    return out


def _fields(h: Hello | None) -> ClientHelloFields | None:
    if h is None:
        return None
    return ClientHelloFields(h.version, h.sni, ",".join(h.alpn) if h.alpn else None, h.ja4("t"))


def _be_bytes(x: np.ndarray, width: int) -> np.ndarray:
    """Each value as `width` big-endian bytes, an (n, width) uint8 matrix."""
    return (x[:, None] >> (8 * np.arange(width - 1, -1, -1))).astype(np.uint8)


def _region(buf: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Each region's length (2 bytes) and bytes, zero-padded to the longest: an (n, 2 + max) matrix."""
    width = int(length.max()) if len(length) else 0
    cols = np.arange(width)
    vals = buf.take(start[:, None] + cols, mode="clip")
    vals[cols >= length[:, None]] = 0
    return np.concatenate([_be_bytes(length, 2), vals], axis=1)
