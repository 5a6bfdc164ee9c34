"""JA4 TLS client fingerprints (FoxIO JA4 spec, BSD-3-Clause part), computed from ClientHello fields.

This tshark (4.0) has no ja4 field, so the parts come from tshark's ClientHello fields:
JA4 = a_b_c where
  a = proto (t/q/d) + version (highest supported_versions, else the hello's) + d|i (SNI present)
      + cipher count + extension count (2 digits each, GREASE excluded) + ALPN first/last char,
  b = sha256 of the sorted cipher list (4-hex, comma-joined), first 12 hex,
  c = sha256 of the sorted extensions without SNI/ALPN, '_', signature algorithms in order, first 12.
"""

from __future__ import annotations

import hashlib

VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2",
            0xFEFF: "d1", 0xFEFD: "d2", 0xFEFC: "d3"}
EMPTY = "000000000000"


def is_grease(v: int) -> bool:
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)


def _hash12(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12] if text else EMPTY


def _alpn_chars(alpn: str | None) -> str:
    if not alpn:
        return "00"
    first, last = alpn[0], alpn[-1]
    if first.isascii() and first.isalnum() and last.isascii() and last.isalnum():
        return first + last
    raw = alpn.encode("utf-8", "surrogateescape").hex()
    return raw[0] + raw[-1]


def ja4(
    *,
    proto: str,
    version: int,
    ciphers: list[int],
    extensions: list[int],
    supported_versions: list[int],
    has_sni: bool,
    alpn_first: str | None,
    sig_algs: list[int],
) -> str:
    """The JA4 string for one ClientHello (`proto`: 't' TCP, 'q' QUIC, 'd' DTLS)."""
    cs = [c for c in ciphers if not is_grease(c)]
    ex = [e for e in extensions if not is_grease(e)]
    sv = [v for v in supported_versions if not is_grease(v)]
    ver = VERSIONS.get(max(sv) if sv else version, "00")
    a = f"{proto}{ver}{'d' if has_sni else 'i'}{min(len(cs), 99):02d}{min(len(ex), 99):02d}{_alpn_chars(alpn_first)}"
    b = _hash12(",".join(f"{c:04x}" for c in sorted(cs)))
    ext_c = ",".join(f"{e:04x}" for e in sorted(e for e in ex if e not in (0x0000, 0x0010)))
    sigs = ",".join(f"{s:04x}" for s in sig_algs if not is_grease(s))
    c = _hash12(f"{ext_c}_{sigs}" if sigs else ext_c) if ext_c else EMPTY
    return f"{a}_{b}_{c}"
