"""Credential detectors and keyed fingerprints: the only place raw secrets are seen.

Everything that leaves this module is redacted: a secret becomes `kind + fingerprint + last 4`.
The fingerprint is HMAC-SHA256 keyed with the per-store secret (`Store.secret_key()`), so the
same credential seen twice in one store links, while fingerprints of different stores never
correlate and cannot be brute-forced without the key.

Canaries: a registered canary is known to the analyzer only by its fingerprint (the `canaries`
table). `detect()` cannot match a fingerprint, so canaries are found two ways: a caller that holds
the raw canary values passes them as `extra_values` (kind `canary`); otherwise the analyzer joins
`secrets_seen.fingerprint` against `canaries.fingerprint`, which works whenever the canary has a
detectable shape (an AWS key pair, an `sk-` key, a mnemonic, ...), because the fingerprint of a
detected value is computed over the same canonical value (`canonical()`) as the registered one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

FINGERPRINT_HEX = 24
REDACTED_FMT = "[REDACTED:{kind}:{fp}]"

# Header names whose whole value is a credential, whatever its shape.
CREDENTIAL_HEADERS = {
    "authorization": "authorization",
    "proxy-authorization": "authorization",
    "x-api-key": "api_key_header",
    "api-key": "api_key_header",
    "x-goog-api-key": "api_key_header",
    "openai-api-key": "api_key_header",
    "x-auth-token": "api_key_header",
    "cookie": "cookie",
    "set-cookie": "cookie",
}


class Fingerprinter:
    """Keyed fingerprints of secret values (HMAC-SHA256, hex, truncated to 24 characters)."""

    def __init__(self, key: bytes):
        if not key:
            raise ValueError("a fingerprint key is required (Store.secret_key())")
        self._key = bytes(key)

    def fingerprint(self, value: str) -> str:
        return hmac.new(self._key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[
            :FINGERPRINT_HEX
        ]

    def __repr__(self) -> str:  # never print the key
        return "Fingerprinter(<key>)"


@dataclass
class SecretMatch:
    """One credential found in a text. `value` is raw: never store, log or put it in an error."""

    kind: str
    start: int
    end: int
    value: str

    def __repr__(self) -> str:
        return f"SecretMatch(kind={self.kind!r}, start={self.start}, end={self.end}, value=<redacted>)"

    @property
    def canonical(self) -> str:
        return canonical(self.kind, self.value)

    @property
    def last4(self) -> str:
        return self.canonical[-4:]


_AWS_PREFIX = "AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA"
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


@dataclass(frozen=True)
class _Detector:
    """One credential shape. `triggers`: substrings, one of which must occur for the regex to run
    (a C-speed `in` test keeps ordinary bodies off the regex engine); `before`: characters that must
    not precede the match (a token boundary checked in Python, so the regex starts with a literal)."""

    kind: str
    triggers: tuple[str, ...]
    regex: re.Pattern[str]
    group: int = 0
    before: frozenset[str] = frozenset()
    lower: bool = False  # case-insensitive: the regex is only tried where a trigger occurs in text.lower()


def _d(kind: str, triggers: tuple[str, ...], pattern: str, group: int = 0, before=frozenset(), lower=False):
    return _Detector(kind, triggers, re.compile(pattern), group, frozenset(before), lower)


_DETECTORS: tuple[_Detector, ...] = (
    _d(
        "pem_private_key",
        ("PRIVATE KEY-----",),
        r"-----BEGIN[A-Z ]{0,40} PRIVATE KEY-----(?:[\s\S]{0,16384}?-----END[A-Z ]{0,40} PRIVATE KEY-----"
        r"|[A-Za-z0-9+/=\s\\]{0,16384})",
    ),
    _d("anthropic_api_key", ("sk-ant-",), r"sk-ant-[A-Za-z0-9_\-]{20,}", before=_TOKEN_CHARS),
    _d(
        "openai_api_key",
        ("sk-",),
        r"sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,}|[A-Za-z0-9_\-]{0,64}T3BlbkFJ[A-Za-z0-9_\-]{10,})",
        before=_TOKEN_CHARS,
    ),
    # any other `sk-` key: the shape routers (one-api, new-api, LiteLLM, DeepSeek-style) issue
    _d("sk_api_key", ("sk-",), r"sk-(?!ant-)[A-Za-z0-9_\-]{20,}", before=_TOKEN_CHARS),
    _d(
        "aws_access_key_id",
        ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA", "ABIA", "ACCA"),
        r"(?:" + _AWS_PREFIX + r")[A-Z0-9]{16}(?![A-Za-z0-9])",
        before=_ALNUM,
    ),
    _d(
        "aws_secret_access_key",
        ("aws_secret", "awssecret", "secret_access", "secretaccess"),
        r"(?i:aws_?secret_?access_?key|secret_?access_?key|aws_?secret(?:_?key)?)[\"']?\s*[:=]\s*[\"']?"
        r"([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
        group=1,
        lower=True,
    ),
    _d("google_api_key", ("AIza",), r"AIza[0-9A-Za-z_\-]{35}(?![A-Za-z0-9_\-])", before=_TOKEN_CHARS),
    _d(
        "github_token",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
        r"(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?![A-Za-z0-9_\-])",
        before=_TOKEN_CHARS,
    ),
    _d("slack_token", ("xox",), r"xox[abposre]-[A-Za-z0-9\-]{10,}", before=_TOKEN_CHARS),
    _d("slack_webhook", ("hooks.slack.com",), r"https://hooks\.slack\.com/services/[A-Za-z0-9_/]{20,}"),
    _d("jwt", ("eyJ",), r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*", before=_TOKEN_CHARS),
    _d("eth_private_key", ("0x",), r"0x[0-9a-fA-F]{64}(?![0-9A-Za-z])", before=_ALNUM),
    _d(
        "eth_private_key",
        tuple(f"{a}{s}key" for a in ("private", "priv", "wallet", "eth", "secret") for s in ("_", " ", "-", "")),
        r"(?i:priv(?:ate)?[_ \-]?key|wallet[_ \-]?key|eth[_ \-]?key|secret[_ \-]?key)[^\n]{0,40}?"
        r"(?<![0-9A-Za-z])([0-9a-fA-F]{64})(?![0-9A-Za-z])",
        group=1,
        lower=True,
    ),
)
_AWS_SECRET_NEAR = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_MNEMONIC_LENGTHS = (24, 21, 18, 15, 12)
# punctuation becomes a space (a 1:1 ASCII table keeps str.translate on its fast path); a run that
# then spans punctuation is rejected when its words are looked up in the text with only whitespace
# between. ASCII capitals become small letters: a phrase typed as a sentence ("Legal winner ...") or in
# capitals is still a phrase (its fingerprint is over the lower-case form either way)
_PUNCT = str.maketrans({**{c: " " for c in "\"'.,;:()[]{}<>`=|"},
                        **dict(zip(string.ascii_uppercase, string.ascii_lowercase, strict=True))})
_CS_TRIGGERS = tuple(sorted({t for d in _DETECTORS if not d.lower for t in d.triggers}))
_CI_TRIGGERS = tuple(sorted({t for d in _DETECTORS if d.lower for t in d.triggers}))
# Which texts need the per-trigger checks at all: a regex over pieces of the triggers that begin with
# characters rare in LLM JSON and prose ("yJ" of "eyJ", "k-" of "sk-", "Y-" of "KEY-----"...), not the
# triggers themselves, whose first letters (e, s, g, h) are common: sre tries its alternation only at
# a position whose character may start one, so this runs ~2.4x faster over the same texts. A trigger
# none of these pieces matches is added whole, so a detector added later is never skipped.
_QUICK_PIECES = ("0x", "xox", "yJ", "k-", "Y-", "gh[pousr]_", "github_pat_", r"\.slack\.", "AIza",
                 f"(?:{_AWS_PREFIX})")
_QUICK_UNCOVERED = tuple(t for t in _CS_TRIGGERS if not re.search("|".join(_QUICK_PIECES), t))
_ANY_CS_TRIGGER = re.compile("|".join(_QUICK_PIECES + tuple(re.escape(t) for t in _QUICK_UNCOVERED)))
_MIN_LEN = 15  # no detector matches fewer characters
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_RUN12 = re.compile(b"\x01{12,}")
_TOKEN = re.compile(r"\S+")
_WS_SEP = re.compile(r"(?:\s|\\n|\\t|\\r)+")


@lru_cache(maxsize=1)
def _bip39() -> dict[str, int]:
    """The English BIP-39 wordlist: word -> index."""
    from mnemonic import Mnemonic

    return {w: i for i, w in enumerate(Mnemonic("english").wordlist)}


def _looks_like_aws_secret(s: str) -> bool:
    return any(c.islower() for c in s) and any(c.isupper() for c in s) and any(c.isdigit() or c in "/+" for c in s)


def _checksum_ok(bits: int, n: int) -> bool:
    """BIP-39 checksum of `n` words given as their 11-bit indices packed into `bits` (what
    Mnemonic.check computes, without its per-word list.index)."""
    cs = n // 3
    entropy = (bits >> cs).to_bytes((n * 11 - cs) // 8, "big")
    return hashlib.sha256(entropy).digest()[0] >> (8 - cs) == bits & ((1 << cs) - 1)


def _mnemonics(text: str) -> list[SecretMatch]:
    """BIP-39 phrases: runs of 12-24 wordlist words, separated by whitespace only, with a valid
    checksum (prose almost never has one). Linear: str.split + one dict lookup per token marks
    wordlist words and a regex over the marks finds runs of >= 12 (most texts stop here); only then
    are token offsets computed, runs cut where punctuation separates words, and each window checked
    on its packed 11-bit indices (a shift, a mask and one SHA-256 of <= 32 bytes)."""
    if not _maybe_run12(text):
        return []
    index = _bip39()
    # JSON escapes (\n, \t, \r, and \" around a phrase quoted in code) become two spaces and punctuation
    # one, so offsets in `flat` are offsets in `text`
    flat = text.replace("\\n", "  ").replace("\\t", "  ").replace("\\r", "  ").replace('\\"', "  ") if "\\" in text else text
    flat = flat.translate(_PUNCT)
    toks = flat.split()
    flags = bytes(map(index.__contains__, toks))
    runs = list(_RUN12.finditer(flags))
    if not runs:
        return []
    spans = [m.span() for m in _TOKEN.finditer(flat)]
    if len(spans) != len(toks):  # str.split and re's \S disagree on some whitespace: use re's tokens
        toks = [flat[a:b] for a, b in spans]
        runs = list(_RUN12.finditer(bytes(map(index.__contains__, toks))))
    out: list[SecretMatch] = []
    for run in runs:
        start = run.start()
        for k in range(run.start() + 1, run.end() + 1):
            if k < run.end() and _WS_SEP.fullmatch(text, spans[k - 1][1], spans[k][0]):
                continue
            if k - start >= 12:  # [start, k): wordlist words with only whitespace between
                out.extend(_phrases(text, toks, spans, start, k, index))
            start = k
    return out


@lru_cache(maxsize=1)
def _bip39_bytes() -> dict[bytes, int]:
    return {w.encode(): i for w, i in _bip39().items()}


# bytes.translate: punctuation, the ASCII whitespace str.split knows and bytes.split does not
# (\x1c-\x1f), and every non-ASCII byte become spaces; capitals small letters (as _PUNCT)
_PUNCT_B = bytes(32 if c >= 0x80 or c in b"\"'.,;:()[]{}<>`=|\x1c\x1d\x1e\x1f" else c + 32 if 0x41 <= c <= 0x5A else c
                 for c in range(256))


# bytes.translate: what a seed phrase can be made of (wordlist letters a-z in either case; whitespace,
# including the separators str.isspace knows in ASCII and every non-ASCII byte; `\` of a JSON escape)
# -> "a", the rest "X"
_PHRASE_B = bytes(0x61 if 0x61 <= c <= 0x7A or 0x41 <= c <= 0x5A or c in b"\\ \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f"
                  or c >= 0x80 else 0x58 for c in range(256))
_SHORTEST_PHRASE = b"a" * 47  # 12 words of >= 3 letters and 11 separators


def _maybe_run12(text: str) -> bool:
    """False when `text` cannot hold 12 wordlist words in a row (most texts). First: a phrase is >= 47
    characters of only letters, whitespace and JSON escapes, so its UTF-8 bytes translate to 47 "a"s in a
    row (one translate and one substring search: ~8x cheaper than tokenising; JSON of code, commands
    and short prose stops here). Then the same tokenising as _mnemonics on UTF-8 bytes, where translate
    and split stay fast for non-ASCII text. Its separators are a superset of str.split's + _PUNCT
    (wordlist words are ASCII a-z), so every run _mnemonics would find is a run here too."""
    b = text.encode("utf-8", "surrogatepass")
    if _SHORTEST_PHRASE not in b.translate(_PHRASE_B):
        return False
    if b"\\" in b:
        b = b.replace(b"\\n", b"  ").replace(b"\\t", b"  ").replace(b"\\r", b"  ").replace(b'\\"', b"  ")
    return _RUN12.search(bytes(map(_bip39_bytes().__contains__, b.translate(_PUNCT_B).split()))) is not None


def _phrases(text: str, toks: list[str], spans: list[tuple[int, int]], lo: int, hi: int,
             index: dict[str, int]) -> list[SecretMatch]:
    total = hi - lo
    packed = 0
    for w in toks[lo:hi]:
        packed = (packed << 11) | index[w]
    out = []
    i = 0
    while i + 12 <= total:
        hit = 0
        for n in _MNEMONIC_LENGTHS:
            if i + n <= total and _checksum_ok((packed >> (11 * (total - i - n))) & ((1 << (11 * n)) - 1), n):
                hit = n
                break
        if not hit:
            i += 1
            continue
        s, e = spans[lo + i][0], spans[lo + i + hit - 1][1]
        out.append(SecretMatch("bip39_mnemonic", s, e, text[s:e]))
        i += hit
    return out


def _matches(d: _Detector, text: str, hay: str):
    """Regex matches of one detector; case-insensitive ones only at trigger positions (fast)."""
    if not d.lower:
        yield from d.regex.finditer(text)
        return
    starts = set()
    for t in d.triggers:
        pos = hay.find(t)
        while pos >= 0:
            starts.add(pos)
            pos = hay.find(t, pos + 1)
    end = -1
    for pos in sorted(starts):
        if pos < end:
            continue
        mt = d.regex.match(text, pos)
        if mt:
            end = mt.end()
            yield mt


def detect(text: str, extra_values: Iterable[str] = (), *, mnemonics: bool = True) -> list[SecretMatch]:
    """Every credential in `text`, non-overlapping, in order. `extra_values` are raw canaries (kind 'canary');
    `mnemonics=False` skips the seed-phrase scan (for text whose prose is scanned elsewhere)."""
    found: list[SecretMatch] = []
    for v in extra_values:
        if not v:
            continue
        start = text.find(v)
        while start >= 0:
            found.append(SecretMatch("canary", start, start + len(v), v))
            start = text.find(v, start + len(v))
    if len(text) < _MIN_LEN:
        return _non_overlapping(found)
    # one regex pass says whether any trigger occurs (most texts: none); only then test each one
    present = {t for t in _CS_TRIGGERS if t in text} if _ANY_CS_TRIGGER.search(text) else set()
    # case-insensitive triggers are found in a lower-cased copy whose offsets must be the text's: a few
    # letters lower-case to two characters ('İ'), and then only ASCII letters are folded
    lowered = text.lower()
    if len(lowered) != len(text):
        lowered = text.translate(_ASCII_LOWER)
    if "key" in lowered or "secret" in lowered:  # every case-insensitive trigger contains one of them
        present.update(t for t in _CI_TRIGGERS if t in lowered)
    for d in _DETECTORS if present else ():
        if present.isdisjoint(d.triggers):
            continue
        hay = lowered if d.lower else text
        for mt in _matches(d, text, hay):
            s, e = mt.span(d.group)
            # a token boundary; `\n`-style JSON escapes count as one (the 'n' is not part of the token)
            if d.before and s > 0 and text[s - 1] in d.before and not (s >= 2 and text[s - 2] == "\\"):
                continue
            found.append(SecretMatch(d.kind, s, e, text[s:e]))
            if d.kind == "aws_access_key_id":
                # the secret key usually follows its id closely (credentials files, env dumps, JSON)
                for near in _AWS_SECRET_NEAR.finditer(text, e, min(len(text), e + 300)):
                    if _looks_like_aws_secret(near.group()):
                        found.append(SecretMatch("aws_secret_access_key", near.start(), near.end(), near.group()))
                        break
    if mnemonics and len(text) >= 47:
        found.extend(_mnemonics(text))
    return _non_overlapping(found)


def _non_overlapping(found: list[SecretMatch]) -> list[SecretMatch]:
    """Canaries win, then the longest match; ties by position."""
    if len(found) <= 1:
        return found
    prio = sorted(found, key=lambda m: (m.kind != "canary", -(m.end - m.start), m.start))
    kept: list[SecretMatch] = []
    for m in prio:
        if all(m.end <= k.start or m.start >= k.end for k in kept):
            kept.append(m)
    kept.sort(key=lambda m: m.start)
    return kept


def canonical(kind: str, value: str) -> str:
    """The form fingerprints are computed over, so the same secret fingerprints alike wherever seen
    (a PEM key inside JSON has `\\n` escapes, a mnemonic may be spaced differently)."""
    if kind == "pem_private_key":
        body = value.replace("\\n", "\n").replace("\\r", "")
        body = re.sub(r"-----(BEGIN|END)[A-Z ]*-----", "", body)
        return re.sub(r"[^A-Za-z0-9+/=]", "", body)
    if kind == "bip39_mnemonic":  # words separated by JSON escapes (\\n, \\t, \\r) inside a body
        return " ".join(re.sub(r"\\[ntr]", " ", value).split()).lower()
    if kind == "eth_private_key":
        return value.lower().removeprefix("0x")
    return value


def placeholder(kind: str, fingerprint: str) -> str:
    return REDACTED_FMT.format(kind=kind, fp=fingerprint[:12])


def redact(
    text: str, fp: Fingerprinter, extra_values: Iterable[str] = (), *, mnemonics: bool = True
) -> tuple[str, list[tuple[SecretMatch, str]]]:
    """`text` with every secret replaced by `[REDACTED:<kind>:<fingerprint[:12]>]`, and the matches
    with their fingerprints (the caller turns them into secrets_seen rows and drops the values)."""
    matches = detect(text, extra_values, mnemonics=mnemonics)
    if not matches:
        return text, []
    out: list[str] = []
    pairs: list[tuple[SecretMatch, str]] = []
    pos = 0
    for m in matches:
        f = fp.fingerprint(m.canonical)
        out.append(text[pos : m.start])
        out.append(placeholder(m.kind, f))
        pos = m.end
        pairs.append((m, f))
    out.append(text[pos:])
    return "".join(out), pairs


# headers whose values are syntactically constrained (numbers, dates, tokens of a fixed grammar)
STRUCTURAL_HEADERS = frozenset({
    "content-length", "date", "transfer-encoding", "connection", "content-encoding", "accept-encoding",
    "cache-control", "keep-alive", "vary", "age", "expires", "last-modified", "etag", "accept-ranges",
})  # fmt: skip


def redact_header(
    name: str, value: str, fp: Fingerprinter, extra_values: Iterable[str] = ()
) -> tuple[str, list[tuple[SecretMatch, str]]]:
    """A header value with credentials removed. Credential headers (Authorization, x-api-key, Cookie, ...)
    are replaced whole; the kind is the detected shape of the token (e.g. `openai_api_key`) when known."""
    lname = name.lower()
    header_kind = CREDENTIAL_HEADERS.get(lname)
    if header_kind is None:
        if lname in STRUCTURAL_HEADERS and not extra_values:
            return value, []
        return redact(value, fp, extra_values)
    scheme = ""
    token = value
    if header_kind == "authorization":
        parts = value.split(None, 1)
        if len(parts) == 2 and parts[0].isalpha():
            scheme, token = parts[0] + " ", parts[1]
            header_kind = "bearer_token" if parts[0].lower() == "bearer" else f"{parts[0].lower()}_credentials"
    if not token:
        return value, []
    inner = detect(token, extra_values)
    if len(inner) == 1 and inner[0].start == 0 and inner[0].end == len(token.rstrip()):
        kind = inner[0].kind
    else:
        kind = header_kind
    m = SecretMatch(kind, len(scheme), len(scheme) + len(token), token)
    f = fp.fingerprint(m.canonical)
    return scheme + placeholder(kind, f), [(m, f)]


def redact_headers(
    headers: Iterable[tuple[str, str]], fp: Fingerprinter, extra_values: Iterable[str] = ()
) -> tuple[list[tuple[str, str]], list[tuple[str, SecretMatch, str]]]:
    """Headers with credentials redacted, plus (header name, match, fingerprint) for each secret."""
    headers = list(headers)
    out: list[tuple[str, str]] = []
    found: list[tuple[str, SecretMatch, str]] = []
    # one scan over all ordinary values first: most header sets hold no secret, and then each value
    # need not be scanned alone (credential headers are always replaced, whatever they hold)
    clean = False
    if not extra_values:
        ordinary = [v for n, v in headers if n.lower() not in CREDENTIAL_HEADERS]
        clean = not ordinary or not detect("\n".join(ordinary))
    for name, value in headers:
        if clean and name.lower() not in CREDENTIAL_HEADERS:
            out.append((name, value))
            continue
        red, pairs = redact_header(name, value, fp, extra_values)
        out.append((name, red))
        found.extend((name.lower(), m, f) for m, f in pairs)
    return out, found


def secret_row(
    match: SecretMatch,
    fingerprint: str,
    *,
    direction: str,
    location: str,
    destination: str | None = None,
    ts=None,
    host_id: str | None = None,
    flow_uid: str | None = None,
    exchange_id: str | None = None,
    pid: int | None = None,
) -> dict:
    """One `secrets_seen` row: kind, keyed fingerprint and last 4 characters; never the value."""
    return {
        "ts": ts,
        "host_id": host_id,
        "flow_uid": flow_uid,
        "exchange_id": exchange_id,
        "kind": match.kind,
        "fingerprint": fingerprint,
        "last4": match.last4,
        "direction": direction,
        "destination": destination,
        "location": location,
        "pid": pid,
    }
