"""ServerHello fields read with numpy (negotiated version, cipher, selected ALPN).

A ServerHello is a short fixed layout followed by a few extensions, so it is read vectorised for
all flows at once; only the selected ALPN string is decoded per flow. A ServerHello that is not
entirely inside its first segment (or anything unexpected) is left to tshark, which reassembles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_EXTENSIONS = 24


@dataclass
class ServerHellos:
    ok: np.ndarray  # bool: parsed here
    version: np.ndarray  # int64 (selected supported_version, else the legacy version)
    cipher: np.ndarray  # int64
    alpn: list[str | None]  # per row (None where absent or not ok)


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
