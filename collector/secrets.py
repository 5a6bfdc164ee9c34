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
from collections.abc import Iterable, Sequence
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
    reveal_last4: bool = True  # False for short values of unknown shape (a password's last 4 give too much)

    def __repr__(self) -> str:
        return f"SecretMatch(kind={self.kind!r}, start={self.start}, end={self.end}, value=<redacted>)"

    @property
    def canonical(self) -> str:
        return canonical(self.kind, self.value)

    @property
    def last4(self) -> str | None:
        return self.canonical[-4:] if self.reveal_last4 else None


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


# -- command lines -------------------------------------------------------------------------------
# A password or a random token on a command line has no shape a detector could know; the option or
# variable that carries it names it. `command_secrets` finds such values by name (no fingerprints, no
# raw values kept); `redact_command` is the one function every path that stores a command line calls
# (eBPF exec records, /proc reads, the proxy's process rows): named values first, then every credential
# shape (`redact`). docs/security.md lists the rules and what is deliberately left alone.

CMDLINE_SCAN_MAX = 32 * 1024  # characters of a command line looked at (and stored, before the store's cap)
SHORT_SECRET = 16  # a named value shorter than this gets no last4 (a typed password's end says too much)

# option names, by their last word ('--db-password' -> 'password'); a word after it names something else
# ('--token-file', '--password-stdin', '--secret-name'): that option's value is not the secret
_OPTION_WORDS = {"secret": "secret", "token": "token", "password": "password", "passwd": "password",
                 "passphrase": "password", "pass": "password", "apikey": "api_key", "credential": "credential",
                 "credentials": "credential", "auth": "auth"}
_OPTION_SUFFIXES = (("password", "password"), ("passwd", "password"), ("passphrase", "password"),
                    ("secret", "secret"), ("token", "token"), ("apikey", "api_key"))  # '--authtoken', '--dbpassword'
# '--<word>-key' is a secret unless the word makes it a public or structural key
_KEY_NOT_SECRET = frozenset({
    "public", "pub", "ssh", "sort", "primary", "partition", "foreign", "cache", "hot", "shard", "routing",
    "lookup", "index", "map", "group", "join", "order", "unique", "dedup", "idempotency", "object", "row",
    "column", "field", "label", "hash", "range", "dict", "name", "host", "trust", "gpg", "pgp"})  # fmt: skip
_KEY_KINDS = {"api": "api_key", "access": "access_key", "private": "private_key", "secret": "secret"}
# NAME=value: a NAME containing one of these (case-insensitive, '-' and '.' count as '_')
_ENV_WORDS = (("PASSWORD", "password"), ("PASSWD", "password"), ("PASSPHRASE", "password"), ("SECRET", "secret"),
              ("API_KEY", "api_key"), ("APIKEY", "api_key"), ("ACCESS_KEY", "access_key"),
              ("PRIVATE_KEY", "private_key"), ("CREDENTIAL", "credential"))
# ... unless its last word says the value is about the secret, not the secret ('PASSWORD_FILE=/run/...')
_ENV_NOT_VALUE = frozenset({
    "FILE", "PATH", "DIR", "URL", "URI", "ENDPOINT", "NAME", "ARN", "TYPE", "ENV", "VAR", "HEADER", "LENGTH",
    "LEN", "SIZE", "TTL", "EXPIRY", "EXPIRES", "MODE", "ENABLED", "REQUIRED", "FORMAT", "PROMPT", "CMD",
    "COMMAND", "HELPER", "PROVIDER", "STORE", "ALGORITHM", "ALG", "VERSION", "ROTATION", "SOURCE"})  # fmt: skip
# Programs whose short options carry a password (their long forms, '--password=...', are generic).
# mode: 'both' (-pVALUE or -p VALUE), 'attached' (only -pVALUE: mysql's '-p db' prompts, 'db' is a
# database), 'userinfo' (user:PASSWORD), 'userinfo%' (user%PASSWORD)
_MYSQL = {"-p": ("password", "attached")}
_TOOL_OPTIONS: dict[str, tuple[dict[str, tuple[str, str]], str | None]] = {
    **{t: (_MYSQL, None) for t in ("mysql", "mysqldump", "mysqladmin", "mysqlimport", "mysqlshow", "mysqlcheck",
                                   "mysqlpump", "mysqlslap", "mysqlbinlog", "mariadb", "mariadb-dump",
                                   "mariadb-admin", "mariadb-import", "mariadb-show", "mariadb-check")},
    "sshpass": ({"-p": ("password", "both")}, None),
    **{t: ({"-p": ("password", "both")}, None) for t in ("mongo", "mongosh", "mongodump", "mongorestore",
                                                         "mongoexport", "mongoimport", "mongostat", "mongotop")},
    "redis-cli": ({"-a": ("password", "both")}, None),
    **{t: ({"-w": ("password", "both")}, None) for t in ("ldapsearch", "ldapmodify", "ldapadd", "ldapdelete",
                                                         "ldapwhoami", "ldapmodrdn", "ldapcompare", "ldappasswd",
                                                         "ldapexop")},
    "curl": ({"-u": ("password", "userinfo"), "--user": ("password", "userinfo"),
              "-U": ("password", "userinfo"), "--proxy-user": ("password", "userinfo")}, None),
    "smbclient": ({"-U": ("password", "userinfo%"), "--user": ("password", "userinfo%")}, None),
    **{t: ({"-P": ("password", "both")}, None) for t in ("sqlcmd", "bcp")},
    "openssl": ({"-k": ("password", "both"), "-passin": ("password", "both"), "-passout": ("password", "both")},
                None),
    # '-p' is a password only after 'login' ('docker run -p 8080:80' publishes a port)
    **{t: ({"-p": ("password", "both")}, "login") for t in ("docker", "podman", "nerdctl", "buildah", "skopeo",
                                                            "helm", "oras", "crane", "regctl")},
}
# the program a word names is one of these (or another tool): the options after it are its own
_OTHER_PROGRAMS = frozenset({
    "ssh", "scp", "sftp", "rsync", "psql", "pg_dump", "pg_restore", "python", "python3", "node", "bun", "deno",
    "bash", "sh", "zsh", "dash", "sudo", "doas", "env", "nc", "ncat", "socat", "git", "npm", "npx", "pip",
    "pip3", "uv", "uvx", "make", "kubectl", "timeout", "nohup", "nice", "exec", "xargs"})  # fmt: skip
_COMMAND_TAKERS = frozenset({"sshpass"})  # their first operand is the command they run: their options end there
_NOT_SECRET_VALUES = frozenset({"", "true", "false", "none", "null", "stdin", "-"})
# a value that points at the secret instead of being it: env:NAME / file:PATH / fd:N (openssl, many CLIs),
# $VAR as typed (quoted), a path under a well-known root, or a file name with a key/config extension
_REFERENCE = re.compile(
    r"(?:env|file|fd|keychain|op|vault|secret-manager):\S|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?$"
    r"|(?:~|\.\.?)/|/(?:etc|home|root|run|var|tmp|usr|opt|dev|proc|mnt|srv|media|nix|snap|Users|workspace|data"
    r"|app|secrets|keys|certs)(?:/|$)"
    r"|[\w.@~/-]*\.(?:pem|key|crt|cer|der|p8|p12|pfx|jks|keystore|json|txt|env|ya?ml|toml|ini|conf|cfg|gpg"
    r"|asc|pub|ppk|kdbx|csr)$")
_ENV_ASSIGN = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*)=")
_HEADER_ARG = re.compile(r"\s*([A-Za-z][A-Za-z0-9-]*)\s*:\s*(\S.*)", re.DOTALL)
_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:([^/\s@]+)@")
_WORD = re.compile(r"\S+")
_SPACE = re.compile(r"\s")
_OTHER_SPACE = re.compile(r"[^\S ]")  # whitespace other than a space
_NAMED_HINT = re.compile(r"(?:^|\s)-|[=:]")  # an option, NAME=value, a header or URL: else nothing is named
_SPLIT_NAME = re.compile(r"[-_.]+")
NAMED_KINDS = frozenset({"password", "token", "secret", "api_key", "key", "auth", "credential", "access_key",
                         "private_key", "url_password", *CREDENTIAL_HEADERS.values(), "bearer_token"})


@lru_cache(maxsize=4096)
def _option_kind(option: str) -> str | None:
    """The kind of secret option `option` ('--api-key', '-token', '--db_password') takes, else None."""
    parts = _SPLIT_NAME.split(option.lstrip("-").lower())
    parts = [p for p in parts if p]
    if not parts or parts[0] == "no" or len("".join(parts)) < 3:
        return None
    last = parts[-1]
    if last == "key":
        prev = parts[-2] if len(parts) > 1 else ""
        return None if prev in _KEY_NOT_SECRET else _KEY_KINDS.get(prev, "key")
    kind = _OPTION_WORDS.get(last)
    if kind is None:
        kind = next((k for w, k in _OPTION_SUFFIXES if last.endswith(w)), None)
    return kind


@lru_cache(maxsize=4096)
def _variable_kind(name: str) -> str | None:
    """The kind of secret a NAME=value assignment holds, by NAME, else None."""
    n = name.upper().replace("-", "_").replace(".", "_")
    words = [w for w in n.split("_") if w]
    if not words or words[-1] in _ENV_NOT_VALUE:
        return None
    for w, kind in _ENV_WORDS:
        if w in n:
            return kind
    if any(w.endswith("TOKEN") for w in words):  # HF_TOKEN, GITHUBTOKEN; not MAX_TOKENS, TOKENIZERS_...
        return "token"
    if "PASS" in words or n.endswith("_PWD"):  # DB_PASS, MYSQL_PWD (not PWD, the working directory)
        return "password"
    return None


def _is_value(v: str) -> bool:
    """Could `v` be the secret itself (not a flag, a boolean, a reference to it, or already redacted)?"""
    return (v.lower() not in _NOT_SECRET_VALUES and not v.startswith("[REDACTED:")
            and _REFERENCE.match(v) is None)


def _value(out: list, i: int, w: str, start: int, kind: str, mode: str = "whole") -> None:
    """Record the secret part of w[start:] (per mode) as (word, start, end, kind)."""
    if mode == "userinfo" or mode == "userinfo%":
        cut = w.find(":" if mode == "userinfo" else "%", start)
        if cut < 0:
            return  # only a user name: the program asks for the password
        start = cut + 1
    if start < len(w) and _is_value(w[start:]):
        out.append((i, start, len(w), kind))


def _header_value(out: list, i: int, w: str) -> bool:
    """'Authorization: Bearer x', 'X-Api-Key: x' (curl -H, wget --header, httpie): the credential part."""
    m = _HEADER_ARG.match(w)
    if m is None:
        return False
    kind = CREDENTIAL_HEADERS.get(m.group(1).lower())
    if kind is None:
        return False
    start = m.start(2)
    if kind == "authorization":
        scheme, sp, rest = m.group(2).partition(" ")
        if sp and scheme.isalpha() and rest.strip():
            kind = "bearer_token" if scheme.lower() == "bearer" else f"{scheme.lower()}_credentials"
            start += len(scheme) + 1
            start += len(w) - start - len(w[start:].lstrip())
    if start < len(w):
        out.append((i, start, len(w.rstrip()), kind))
    return True


def _scan_words(words: Sequence[str]) -> list[tuple[int, int, int, str]]:
    """(word index, start, end, kind) of the values names mark as secrets, in order."""
    out: list[tuple[int, int, int, str]] = []
    tool: dict[str, tuple[str, str]] | None = None
    needs: str | None = None  # a word the tool's options wait for ('login')
    pending: tuple[str, str] | None = None  # (kind, mode) of an option whose value is the next word
    takes_command = False
    for i, w in enumerate(words):
        if pending is not None:
            kind, mode = pending
            pending = None
            if not (w.startswith("--") and len(w) > 2):  # a long option instead: that one took no value
                if mode == "scheme":  # 'Authorization:' 'Bearer' 'TOKEN' split into words
                    if w.isalpha() and i + 1 < len(words):
                        pending = ("bearer_token" if w.lower() == "bearer" else f"{w.lower()}_credentials", "whole")
                        continue
                    mode = "whole"
                _value(out, i, w, 0, kind, mode)
                continue
        if not w:
            continue
        if w[0] == "-" and len(w) > 1:
            if tool is not None and needs is None:
                hit = _tool_option(tool, w)
                if hit is not None:
                    kind, mode, at = hit
                    if at is None:
                        pending = (kind, mode)
                    else:
                        _value(out, i, w, at, kind, mode)
                    continue
            name, eq, _ = w.partition("=")
            kind = _option_kind(name) if len(name) > 2 else None
            if kind is not None:
                if eq:
                    _value(out, i, w, len(name) + 1, kind)
                else:
                    pending = (kind, "whole")
            continue
        if needs is not None and w == needs:
            needs = None
            continue
        if "=" in w and (m := _ENV_ASSIGN.match(w)) is not None:
            kind = _variable_kind(m.group(1))
            if kind is not None:
                _value(out, i, w, m.end(), kind)
                continue
        if ":" in w:
            if w[-1] == ":" and (kind := CREDENTIAL_HEADERS.get(w.lstrip("'\"")[:-1].lower())) is not None:
                pending = (kind, "scheme" if kind == "authorization" else "whole")  # 'X-Api-Key:' 'VALUE'
                continue
            if _header_value(out, i, w):
                continue
            if "@" in w and "://" in w:
                out.extend((i, m.start(1), m.end(1), "url_password") for m in _URL_PASSWORD.finditer(w)
                           if _is_value(m.group(1)))
                continue
        base = w.rpartition("/")[2]
        if base in _TOOL_OPTIONS:
            tool, needs = _TOOL_OPTIONS[base]
            takes_command = base in _COMMAND_TAKERS
        elif takes_command or base in _OTHER_PROGRAMS:
            tool, needs, takes_command = None, None, False
    return out


def _tool_option(options: dict[str, tuple[str, str]], w: str) -> tuple[str, str, int | None] | None:
    """(kind, mode, value start in w or None for 'the next word') when `w` is one of the tool's options."""
    hit = options.get(w)
    if hit is not None:
        return (hit[0], hit[1], None) if hit[1] != "attached" else None
    for opt, (kind, mode) in options.items():
        if opt.startswith("--"):
            if w.startswith(opt + "="):
                return kind, mode, len(opt) + 1
        elif len(opt) == 2 and w.startswith(opt) and len(w) > 2:
            return kind, mode, 2
    return None


def command_secrets(argv: Sequence[str], nested: bool = True) -> list[tuple[int, int, int, str]]:
    """(argument index, start, end, kind) of every value on a command line that an option or variable
    name marks as a secret. An argument holding a command of its own (`sh -c "mysql -pX"`) is read word
    by word too (quotes around a word are not part of its value); `nested=False`: the caller knows no
    argument holds whitespace."""
    out = _scan_words(argv)
    for i, a in enumerate(argv if nested else ()):
        if len(a) < 6 or _SPACE.search(a) is None:
            continue
        spans = [(m.start(), m.end()) for m in _WORD.finditer(a)]
        for j, s, e, kind in _scan_words([a[x:y] for x, y in spans]):
            base = spans[j][0]
            s, e = base + s, base + e
            if a[s] in "'\"":
                s += 1
            while e > s and a[e - 1] in "'\"":
                e -= 1
            if e > s:
                out.append((i, s, e, kind))
    if len(out) > 1:
        out = _outermost(out)
    return out


def _outermost(spans: list[tuple[int, int, int, str]]) -> list[tuple[int, int, int, str]]:
    """Per argument, drop spans inside another; order by position."""
    spans.sort(key=lambda t: (t[0], t[1], -t[2]))
    kept: list[tuple[int, int, int, str]] = []
    for t in spans:
        if kept and kept[-1][0] == t[0] and t[1] < kept[-1][2]:
            continue
        kept.append(t)
    return kept


def redact_command(argv: Sequence[str] | str, fp: Fingerprinter) -> tuple[str, list[tuple[SecretMatch, str]]]:
    """A command line as stored: the arguments joined by spaces, each value an option or variable names
    as a secret replaced by `[REDACTED:<kind>:<fingerprint[:12]>]`, then every credential shape (`redact`).
    `argv` is the argument list (from an exec record or /proc/PID/cmdline), or a command line whose
    argument boundaries are lost (a str: its words are its arguments). A value whose whole is a known
    credential shape gets that kind and its canonical fingerprint (the same key seen in a header links)."""
    if isinstance(argv, str):
        text = argv[:CMDLINE_SCAN_MAX]
        spans = [(m.start(), m.end()) for m in _WORD.finditer(text)]
        words = [text[s:e] for s, e in spans]
    else:
        words = list(argv)
        text = " ".join(words)
        if len(text) > CMDLINE_SCAN_MAX:  # the arguments that start before the cap, the last one cut there
            words, pos = [], 0
            for a in argv:
                if pos >= CMDLINE_SCAN_MAX:
                    break
                words.append(a[: CMDLINE_SCAN_MAX - pos])
                pos += len(a) + 1
            text = " ".join(words)
        spans = None
    nested = text.count(" ") != len(words) - 1 or _OTHER_SPACE.search(text) is not None
    found = command_secrets(words, nested) if _NAMED_HINT.search(text) is not None else []
    pairs: list[tuple[SecretMatch, str]] = []
    if found:
        spans = spans or _spans(words)
        out: list[str] = []
        pos = 0
        for i, s, e, kind in found:
            s, e = spans[i][0] + s, min(spans[i][0] + e, len(text))
            if s < pos or e <= s:
                continue
            value = text[s:e]
            inner = detect(value)
            if len(inner) == 1 and inner[0].start == 0 and inner[0].end == len(value):
                m = SecretMatch(inner[0].kind, s, e, value)
            else:
                m = SecretMatch(kind, s, e, value, reveal_last4=len(value) >= SHORT_SECRET)
            f = fp.fingerprint(m.canonical)
            out.append(text[pos:s])
            out.append(placeholder(m.kind, f))
            pos = e
            pairs.append((m, f))
        out.append(text[pos:])
        text = "".join(out)
    text, more = redact(text, fp)
    return text, pairs + more


def _spans(words: Sequence[str]) -> list[tuple[int, int]]:
    """(start, end) of each word in " ".join(words)."""
    out, pos = [], 0
    for w in words:
        out.append((pos, pos + len(w)))
        pos += len(w) + 1
    return out
