"""DNS messages and TLS hellos from tshark's field output for the few selected packets.

tshark prints one line per frame; several DNS messages in one frame (DNS over TCP) are split using
the per-message counts, and answers are taken from the Answers section only (resource records are
walked in order, so glue records in Additional never count as answers).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from collector.capture.ja4 import ja4
from collector.protocols.dns import QTYPES, RCODES, DnsMessage

FIELDS = [
    "frame.number",
    "dns.id", "dns.flags.response", "dns.flags.rcode",
    "dns.count.queries", "dns.count.answers", "dns.count.auth_rr", "dns.count.add_rr",
    "dns.qry.name", "dns.qry.type", "dns.resp.type", "dns.a", "dns.aaaa", "dns.cname",
    "tls.handshake.type", "tls.handshake.version", "tls.handshake.ciphersuite",
    "tls.handshake.extension.type", "tls.handshake.extensions.supported_version",
    "tls.handshake.extensions_alpn_str", "tls.handshake.sig_hash_alg", "tls.handshake.sig_hash_alg_len",
    "tls.handshake.extensions_server_name",
]
_I = {name: i for i, name in enumerate(FIELDS)}
DISPLAY_FILTER = "dns || tls.handshake.type == 1 || tls.handshake.type == 2"
TLS_VERSIONS = {0x0304: "TLS 1.3", 0x0303: "TLS 1.2", 0x0302: "TLS 1.1", 0x0301: "TLS 1.0", 0x0300: "SSL 3.0"}
SIG_LISTS = (13, 50, 34)  # extensions whose lists tshark reports as tls.handshake.sig_hash_alg


@dataclass
class Hello:
    frame: int
    client: bool
    version: int | None = None  # negotiated (ServerHello) or highest offered (ClientHello)
    sni: str | None = None
    alpn: list[str] = field(default_factory=list)
    cipher: int | None = None
    ciphers: list[int] = field(default_factory=list)
    extensions: list[int] = field(default_factory=list)
    supported_versions: list[int] = field(default_factory=list)
    sig_algs: list[int] = field(default_factory=list)
    legacy_version: int = 0
    fp_key: tuple[str, ...] = ()  # tshark's raw ClientHello fields (cache key: few distinct per host)
    random: bytes = b""  # ClientHello random (tlspeek; the key log's lookup key)

    def ja4(self, proto: str) -> str:
        if self.fp_key:
            return _ja4_cached(self.fp_key, proto, self.sni is not None)
        # parsed by tlspeek: the lists themselves are the cache key
        return _ja4_lists(proto, self.legacy_version, tuple(self.ciphers), tuple(self.extensions),
                          tuple(self.supported_versions), self.alpn[0] if self.alpn else None,
                          tuple(self.sig_algs), self.sni is not None)


def _ints(s: str, base: int = 10) -> list[int]:
    """Comma-aggregated integers (base 0 reads tshark's 0x-prefixed hex)."""
    if not s:
        return []
    try:
        return [int(x, base) for x in s.split(",")]
    except ValueError:
        out = []
        for x in s.split(","):
            try:
                out.append(int(x.strip(), base))
            except ValueError:
                pass
        return out


def _strs(s: str) -> list[str]:
    return [x for x in s.split(",") if x != ""] if s else []


_D = [_I[k] for k in ("dns.id", "dns.flags.response", "dns.flags.rcode", "dns.count.queries", "dns.count.answers",
                      "dns.count.auth_rr", "dns.count.add_rr", "dns.qry.name", "dns.qry.type", "dns.resp.type",
                      "dns.a", "dns.aaaa", "dns.cname")]


def _dns_simple(frame: int, f: list[str]) -> DnsMessage | None:
    """The common case without a Python walk: one message, one question, answers all A/AAAA/CNAME
    and nothing in Authority/Additional (so every value is an answer)."""
    i_id, i_resp, i_rc, i_q, i_an, i_ns, i_ar, i_name, i_type, _, i_a, i_aaaa, i_cname = _D
    if "," in f[i_id] or f[i_q] != "1" or f[i_ns] != "0" or f[i_ar] != "0" or "," in f[i_name]:
        return None
    vals = [v for k in (i_a, i_aaaa, i_cname) if f[k] for v in f[k].split(",")]
    if len(vals) != int(f[i_an] or 0):
        return None
    is_resp = f[i_resp] in ("1", "True")
    rc = int(f[i_rc] or 0, 0) if is_resp else None
    qt = int(f[i_type], 0) if f[i_type] else None
    name = f[i_name]
    return DnsMessage(
        frame=frame,
        trans_id=int(f[i_id], 0),
        is_response=is_resp,
        rcode=RCODES.get(rc, str(rc)) if rc is not None else None,
        query=name.lower().rstrip(".") if name else None,
        qtype=QTYPES.get(qt, str(qt)) if qt is not None else None,
        answers=vals,
    )


def _dns(frame: int, f: list[str]) -> list[DnsMessage]:
    simple = _dns_simple(frame, f)
    if simple is not None:
        return [simple]
    ids = _ints(f[_I["dns.id"]], 0)
    resp = _ints(f[_I["dns.flags.response"]], 0)
    rcodes = _ints(f[_I["dns.flags.rcode"]], 0)
    nq, na = _ints(f[_I["dns.count.queries"]]), _ints(f[_I["dns.count.answers"]])
    nns, nar = _ints(f[_I["dns.count.auth_rr"]]), _ints(f[_I["dns.count.add_rr"]])
    names, qtypes = _strs(f[_I["dns.qry.name"]]), _ints(f[_I["dns.qry.type"]], 0)
    rtypes = _ints(f[_I["dns.resp.type"]], 0)
    vals = {1: _strs(f[_I["dns.a"]]), 28: _strs(f[_I["dns.aaaa"]]), 5: _strs(f[_I["dns.cname"]])}
    used = {1: 0, 28: 0, 5: 0}
    out: list[DnsMessage] = []
    qpos = rpos = 0
    for k, tid in enumerate(ids):
        q = nq[k] if k < len(nq) else 0
        an = na[k] if k < len(na) else 0
        total = an + (nns[k] if k < len(nns) else 0) + (nar[k] if k < len(nar) else 0)
        is_resp = bool(resp[k]) if k < len(resp) else False
        qname = names[qpos] if qpos < len(names) and q else None
        qtype = qtypes[qpos] if qpos < len(qtypes) and q else None
        qpos += q
        answers: list[str] = []
        for j in range(total):
            if rpos + j >= len(rtypes):
                break
            t = rtypes[rpos + j]
            if t in vals:
                v = vals[t][used[t]] if used[t] < len(vals[t]) else None
                used[t] += 1
                if j < an and v is not None:
                    answers.append(v)
        rpos += total
        out.append(
            DnsMessage(
                frame=frame,
                trans_id=tid,
                is_response=is_resp,
                rcode=RCODES.get(rcodes[k], str(rcodes[k])) if is_resp and k < len(rcodes) else None,
                query=qname.lower().rstrip(".") if qname else qname,
                qtype=QTYPES.get(qtype, str(qtype)) if qtype is not None else None,
                answers=answers,
            )
        )
    return out


_CH = [_I[k] for k in ("tls.handshake.version", "tls.handshake.ciphersuite", "tls.handshake.extension.type",
                       "tls.handshake.extensions.supported_version", "tls.handshake.extensions_alpn_str",
                       "tls.handshake.sig_hash_alg", "tls.handshake.sig_hash_alg_len")]


@functools.lru_cache(maxsize=4096)
def _client_hello(key: tuple[str, ...]) -> tuple:
    """ClientHello fields other than SNI, parsed once per distinct client configuration."""
    version_s, ciphers_s, ext_s, sv_s, alpn_s, algs_s, lens_s = key
    legacy = (_ints(version_s, 0) or [0])[0]
    extensions = _ints(ext_s)
    supported = _ints(sv_s, 0)
    # tshark reports signature_algorithms, _cert and delegated_credentials lists in one field:
    # take the chunk that belongs to extension 13, by extension order and each list's length
    algs = _ints(algs_s, 0)
    chunks = iter([x // 2 for x in _ints(lens_s)])
    sig_algs: list[int] = []
    pos = 0
    for ext in extensions:
        if ext in SIG_LISTS:
            ln = next(chunks, None)
            if ln is None:
                break
            if ext == 13:
                sig_algs = algs[pos : pos + ln]
                break
            pos += ln
    sv = [v for v in supported if (v & 0x0F0F) != 0x0A0A]
    return legacy, _ints(ciphers_s, 0), extensions, supported, _strs(alpn_s), sig_algs, max(sv) if sv else legacy


@functools.lru_cache(maxsize=4096)
def _ja4_cached(key: tuple[str, ...], proto: str, has_sni: bool) -> str:
    legacy, ciphers, extensions, supported, alpn, sig_algs, _ = _client_hello(key)
    return ja4(proto=proto, version=legacy, ciphers=ciphers, extensions=extensions, supported_versions=supported,
               has_sni=has_sni, alpn_first=alpn[0] if alpn else None, sig_algs=sig_algs)


@functools.lru_cache(maxsize=4096)
def _ja4_lists(proto: str, legacy: int, ciphers: tuple, extensions: tuple, supported: tuple, alpn_first: str | None,
               sig_algs: tuple, has_sni: bool) -> str:
    return ja4(proto=proto, version=legacy, ciphers=list(ciphers), extensions=list(extensions),
               supported_versions=list(supported), has_sni=has_sni, alpn_first=alpn_first, sig_algs=list(sig_algs))


def _hellos(frame: int, f: list[str]) -> list[Hello]:
    types = _ints(f[_I["tls.handshake.type"]])
    out: list[Hello] = []
    if 1 in types:
        names = _strs(f[_I["tls.handshake.extensions_server_name"]])
        key = tuple(f[i] for i in _CH)
        h = Hello(frame=frame, client=True, sni=names[0] if names else None, fp_key=key)
        (h.legacy_version, h.ciphers, h.extensions, h.supported_versions, h.alpn, h.sig_algs,
         h.version) = _client_hello(key)
        out.append(h)
    if 2 in types:
        h = Hello(frame=frame, client=False)
        legacy = _ints(f[_I["tls.handshake.version"]], 0)
        # in a server frame the supported_version field is the selected version (TLS 1.3)
        sv = _ints(f[_I["tls.handshake.extensions.supported_version"]], 0)
        h.version = sv[0] if sv else (legacy[0] if legacy else None)
        cs = _ints(f[_I["tls.handshake.ciphersuite"]], 0)
        h.cipher = cs[0] if cs else None
        h.alpn = _strs(f[_I["tls.handshake.extensions_alpn_str"]])
        out.append(h)
    return out


def parse(text: str) -> tuple[list[DnsMessage], list[Hello]]:
    """tshark `-T fields` output (FIELDS, tab-separated) -> DNS messages and TLS hellos."""
    dns: list[DnsMessage] = []
    hellos: list[Hello] = []
    nf = len(FIELDS)
    i_dns, i_tls = _I["dns.id"], _I["tls.handshake.type"]
    for line in text.split("\n"):
        if not line:
            continue
        f = line.split("\t")
        if len(f) < nf:
            f += [""] * (nf - len(f))
        try:
            frame = int(f[0])
        except ValueError:
            continue
        if f[i_dns]:
            dns.extend(_dns(frame, f))
        if f[i_tls]:
            hellos.extend(_hellos(frame, f))
    return dns, hellos


def version_name(v: int | None) -> str | None:
    if v is None:
        return None
    return TLS_VERSIONS.get(v) or f"0x{v:04x}"
