"""Secret detectors, keyed fingerprints and redaction (collector/secrets.py)."""

from __future__ import annotations

import json

import pytest
from mnemonic import Mnemonic

from collector.secrets import Fingerprinter, detect, redact, redact_headers, secret_row

MNEMONIC = "legal winner thank year wave sausage worth useful legal winner thank yellow"  # BIP-39 test vector

# One planted value of every kind (fake, but shaped like the real thing).
PLANTED = {
    "aws_access_key_id": "AKIAQ7EXAMPLE2X4Y6Z8",
    "openai_api_key": "sk-proj-Q1w2E3r4T5y6U7i8O9p0AsDfGhJkL",
    "anthropic_api_key": "sk-ant-api03-Zx9Cv8Bn7Mm6Ll5Kk4Jj3Hh2Gg1Ff0-AAAA",
    "google_api_key": "AIzaSyD3mOcKk3y-0123456789abcdefghijkXY",
    "github_token": "ghp_R4nd0mT0k3nV4lu3F0rT3st1ngPurp0s3sXY",
    "slack_token": "xoxb-2048-4096-R4nd0mSl4ckT0k3n",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZ2VudC0xMjMifQ.c2lnbmF0dXJlLXZhbHVlLWhlcmU",
    "eth_private_key": "0x8da4ef21b864d2cc526dbdb2a120bd2874c36c9d0a1fb7f8c63d7f7a8b41de8f",
    "bip39_mnemonic": MNEMONIC,
    "sk_api_key": "sk-R0ut3rIssu3dK3y0123456789abcdefXYZ",
}
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYz9q8w7e6r5"
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----"


@pytest.fixture
def fp() -> Fingerprinter:
    return Fingerprinter(b"k" * 32)


def test_every_kind_detected_in_prose():
    for kind, value in PLANTED.items():
        text = f"please use {value} for the deploy"
        matches = detect(text)
        assert [(m.kind, m.value) for m in matches] == [(kind, value)], kind


def test_aws_secret_by_context_and_near_key_id():
    m = detect(f'aws_secret_access_key = "{AWS_SECRET}"')
    assert [(x.kind, x.value) for x in m] == [("aws_secret_access_key", AWS_SECRET)]
    m = detect(f"AWS_ACCESS_KEY_ID={PLANTED['aws_access_key_id']}\nAWS_SECRET={AWS_SECRET}\n")
    assert {x.kind for x in m} == {"aws_access_key_id", "aws_secret_access_key"}
    m = detect(json.dumps({"AccessKeyId": PLANTED["aws_access_key_id"], "SecretAccessKey": AWS_SECRET}))
    assert {x.kind for x in m} == {"aws_access_key_id", "aws_secret_access_key"}


def test_pem_inside_json_fingerprints_like_raw(fp):
    raw = detect(PEM)
    esc = detect(json.dumps({"content": PEM}))
    assert [m.kind for m in raw] == ["pem_private_key"] == [m.kind for m in esc]
    assert fp.fingerprint(raw[0].canonical) == fp.fingerprint(esc[0].canonical)


def test_mnemonic_checksum_and_json_newlines():
    m = Mnemonic("english")
    phrase = m.generate(256)  # 24 words
    assert [x.kind for x in detect(json.dumps({"seed": phrase}))] == ["bip39_mnemonic"]
    assert [x.kind for x in detect(json.dumps({"seed": phrase.replace(" ", "\n")}))] == ["bip39_mnemonic"]
    # twelve wordlist words with a bad checksum are prose, not a seed
    assert detect("legal winner thank year wave sausage worth useful legal winner thank winner") == []
    # the same phrase fingerprints alike raw, in JSON with \n / \t escapes, and in upper case
    seen = [detect(json.dumps({"seed": phrase.replace(" ", sep)}))[0] for sep in (" ", "\n", "\t", " \r\n")]
    seen.append(detect(phrase.upper().lower())[0])
    assert {x.canonical for x in seen} == {phrase}


def test_mnemonic_quoted_in_code_inside_json_is_found():
    """A phrase quoted in code the agent read (`mnemonic: "..."` in a hardhat config) reaches a request
    as JSON with escaped quotes: `\\"legal ... yellow\\"`; the escapes are separators, not word letters."""
    phrase = "legal winner thank year wave sausage worth useful legal winner thank yellow"
    body = json.dumps({"content": f'module.exports = {{ accounts: {{ mnemonic: "{phrase}" }} }};'})
    (hit,) = detect(body)
    assert (hit.kind, hit.canonical) == ("bip39_mnemonic", phrase)
    assert body[hit.start:hit.end] == phrase


def test_mnemonic_scan_is_linear_and_exact():
    """Prose made of BIP-39 words is scanned in one pass (no per-window wordlist search); a phrase is
    found at its exact span; words separated by punctuation are not a phrase."""
    import random
    import time

    m = Mnemonic("english")
    phrase = m.generate(128)  # 12 words
    rnd = random.Random(7)
    prose = " ".join(rnd.choice(m.wordlist) for _ in range(5000))
    text = f"{prose[:20000]}. Here: {phrase}, ok"
    t = time.process_time()
    found = detect(text)
    assert time.process_time() - t < 0.5
    mine = [x for x in found if x.value == phrase]
    assert len(mine) == 1 and text[mine[0].start : mine[0].end] == phrase
    assert all(x.value != phrase.replace(" ", ", ", 5) for x in detect(phrase.replace(" ", ", ", 5)))


def test_no_false_positives_on_ordinary_llm_traffic():
    body = json.dumps(
        {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Summarise the sha256 digest " + "ab" * 32 + " for me"}],
            "id": "chatcmpl-9a8b7c6d5e4f3a2b1c0d",
            "skip": "sk-short",
        }
    )
    assert detect(body) == []


def test_canary_extra_values_win(fp):
    canary = "AKIACANARY0000000001"
    text, found = redact(f"x {canary} y", fp, extra_values=[canary])
    assert [m.kind for m, _ in found] == ["canary"]
    assert canary not in text


def test_redact_replaces_with_kind_and_fingerprint(fp):
    value = PLANTED["openai_api_key"]
    text, found = redact(f"key={value}!", fp)
    f = fp.fingerprint(value)
    assert text == f"key=[REDACTED:openai_api_key:{f[:12]}]!"
    assert len(f) == 24 and found[0][1] == f
    row = secret_row(found[0][0], found[0][1], direction="request", location="body", destination="r.example")
    assert row["last4"] == value[-4:] and value not in json.dumps(row)


def test_fingerprints_differ_between_stores():
    v = PLANTED["github_token"]
    assert Fingerprinter(b"a" * 32).fingerprint(v) != Fingerprinter(b"b" * 32).fingerprint(v)


def test_credential_headers(fp):
    key = PLANTED["anthropic_api_key"]
    headers = [
        ("Authorization", f"Bearer {PLANTED['openai_api_key']}"),
        ("x-api-key", key),
        ("api-key", "opaque-router-token-123"),
        ("Cookie", "session=abc"),
        ("User-Agent", "OpenAI/Python 3.57.0"),
    ]
    red, found = redact_headers(headers, fp)
    assert red[0][1].startswith("Bearer [REDACTED:openai_api_key:")
    assert red[1][1].startswith("[REDACTED:anthropic_api_key:")
    assert red[2][1].startswith("[REDACTED:api_key_header:")
    assert red[3][1].startswith("[REDACTED:cookie:")
    assert red[4] == headers[4]
    assert [(n, m.kind) for n, m, _ in found] == [
        ("authorization", "openai_api_key"),
        ("x-api-key", "anthropic_api_key"),
        ("api-key", "api_key_header"),
        ("cookie", "cookie"),
    ]
    assert all(v not in json.dumps(red) for _, v in headers[:4])


def test_repr_never_shows_value():
    m = detect(PLANTED["github_token"])[0]
    assert PLANTED["github_token"] not in repr(m)
    assert "k" * 32 not in repr(Fingerprinter(b"k" * 32))


def test_json_escaped_newlines_before_tokens():
    text = json.dumps({"content": "keys:\n" + "\n".join(PLANTED.values())})
    assert {m.kind for m in detect(text)} == set(PLANTED)


def test_every_kind_in_ordinary_headers(fp):
    for kind, value in PLANTED.items():
        headers = [("User-Agent", "curl/8"), ("X-Deploy-Note", f"use {value}"), ("Accept", "*/*")]
        red, found = redact_headers(headers, fp)
        assert [(n, m.kind) for n, m, _ in found] == [("x-deploy-note", kind)], kind
        assert value not in json.dumps(red) and red[0] == headers[0]


def test_mnemonic_in_sentence_case_or_capitals_is_found_and_fingerprints_alike(fp):
    """A phrase typed at the start of a sentence, in title case or in capitals is the same secret."""
    forms = [MNEMONIC, "Seed: " + MNEMONIC.capitalize() + ".", MNEMONIC.upper(), MNEMONIC.title()]
    found = [detect(t) for t in forms]
    assert [[m.kind for m in f] for f in found] == [["bip39_mnemonic"]] * 4
    assert {fp.fingerprint(f[0].canonical) for f in found} == {fp.fingerprint(MNEMONIC)}
    assert found[1][0].value == MNEMONIC.capitalize()


def test_mnemonic_found_across_any_whitespace_and_non_ascii_text():
    """The BIP-39 scan's quick test (UTF-8 bytes) must not miss a phrase str.split would find: words
    separated by Unicode whitespace or JSON escapes, next to non-ASCII prose."""
    for sep in (" ", "\u3000", "\x85", "\xa0", "\x1c", "\u2003", "\t", "\\n", " \\r\\n "):
        text = f"Prüfe 数据 🚀 seed: {MNEMONIC.replace(' ', sep)} — ✓"
        found = detect(text)
        assert [m.kind for m in found] == ["bip39_mnemonic"], repr(sep)
        assert found[0].value.replace(sep, " ") == MNEMONIC


def test_seed_phrase_quick_test_never_hides_a_run():
    """_maybe_run12's first check (47 characters of a-z, whitespace and escapes in a row) must pass
    every text the tokenising check would pass: generated texts of wordlist words (the shortest ones
    too), any whitespace or JSON escape between them, punctuation, digits and non-ASCII around."""
    import re

    from hypothesis import given, settings
    from hypothesis import strategies as st

    import collector.secrets as s

    words = Mnemonic("english").wordlist
    short = [w for w in words if len(w) == 3]
    seps = st.sampled_from([" ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0",
                            "\u2003", "\u3000", "\\n", "\\t", " \\r\\n "])
    noise = st.sampled_from([",", ".", "0", "X", "é", "数据", "🚀", "{\"k\": \"", "\"}", "-", "_", ""])
    piece = st.one_of(st.sampled_from(short), st.sampled_from(words), st.sampled_from(words).map(str.upper),
                      st.sampled_from(words).map(str.capitalize), seps, noise)

    def tokenising(text: str) -> bool:  # the check after the quick one, on its own
        b = text.encode("utf-8", "surrogatepass")
        if b"\\" in b:
            b = b.replace(b"\\n", b"  ").replace(b"\\t", b"  ").replace(b"\\r", b"  ")
        flags = bytes(map(s._bip39_bytes().__contains__, b.translate(s._PUNCT_B).split()))
        return re.search(b"\x01{12,}", flags) is not None

    @settings(max_examples=3000, deadline=None)
    @given(st.lists(piece, min_size=10, max_size=80), st.lists(st.sampled_from(short), min_size=12, max_size=12),
           seps)
    def check(pieces, twelve, sep):
        for text in ("".join(pieces), "".join(pieces) + sep.join(twelve)):
            if tokenising(text):
                assert s._maybe_run12(text), repr(text)

    check()
    assert s._maybe_run12(" ".join(short[:12])) and not s._maybe_run12('{"command": "ls -la /tmp/0"}')


def test_quick_trigger_regex_covers_every_trigger():
    """detect() runs the per-trigger checks only on texts the quick regex matches: it must match every
    case-sensitive trigger (its pieces are chosen by hand; one they miss is added whole, and that
    should be a deliberate choice, so the list is expected to cover all)."""
    import collector.secrets as s

    assert s._QUICK_UNCOVERED == ()
    assert all(s._ANY_CS_TRIGGER.search(t) for t in s._CS_TRIGGERS)
    for kind, value in PLANTED.items():
        assert [m.kind for m in detect(f"prefix {value} suffix")] == [kind], kind


def test_case_insensitive_detectors_any_case_and_after_two_character_lowercase_letters():
    """The assignment-style detectors (aws_secret_access_key = ..., private key: ...) are case-insensitive:
    any mix of cases is found, and so is a secret after letters that lower-case to two characters
    ('İ'), which once shifted the offsets of the lower-cased copy the triggers are looked up in."""
    eth = PLANTED["eth_private_key"][2:]
    for prefix in ("", "İİİ ", "Ἀ İ "):
        for name in ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY", "AWS_SeCrEt_AcCeSs_KeY"):
            found = detect(f"{prefix}{name} = {AWS_SECRET}")
            assert [(m.kind, m.value) for m in found] == [("aws_secret_access_key", AWS_SECRET)], (prefix, name)
        for name in ("private key", "PrivateKeY", "WALLET_KEY"):
            found = detect(f"{prefix}x {name}: {eth}")
            assert [(m.kind, m.value) for m in found] == [("eth_private_key", eth)], (prefix, name)


# -- command lines (redact_command: flag- and variable-named secrets) ----------------------------
RANDOM40 = "Zq3xV9pL2mN8bT4wR7yK1cH6jD5fG0sA3eU8iO2q"  # no known shape: only its name marks it


def _cmd(argv, fp):
    from collector.secrets import redact_command

    text, pairs = redact_command(argv, fp)
    return text, [(m.kind, m.last4) for m, _ in pairs]


@pytest.mark.parametrize("argv, redacted, kinds", [
    # every flag the issue names, as `--flag value` and `--flag=value`
    (["agent", "--secret", RANDOM40, "-v"], "agent --secret {} -v", ["secret"]),
    (["agent", f"--token={RANDOM40}"], "agent --token={}", ["token"]),
    (["agent", "--password", RANDOM40, f"--passwd={RANDOM40}"], "agent --password {} --passwd={}",
     ["password", "password"]),
    (["agent", "--api-key", RANDOM40, f"--apikey={RANDOM40}"], "agent --api-key {} --apikey={}", ["api_key"] * 2),
    (["agent", "--key", RANDOM40, "--auth", RANDOM40, f"--credential={RANDOM40}"],
     "agent --key {} --auth {} --credential={}", ["key", "auth", "credential"]),
    # compound and single-dash (Go flag package) names; the last word decides
    (["srv", "--db-password", RANDOM40, f"-token={RANDOM40}", "--client_secret", RANDOM40, "--authtoken", RANDOM40],
     "srv --db-password {} -token={} --client_secret {} --authtoken {}", ["password", "token", "secret", "token"]),
    # NAME=value (env, make, docker -e / --build-arg, helm --set)
    (["env", f"OPENAI_API_KEY={RANDOM40}", f"db_password={RANDOM40}", f"HF_TOKEN={RANDOM40}", "agent"],
     "env OPENAI_API_KEY={} db_password={} HF_TOKEN={} agent", ["api_key", "password", "token"]),
    (["docker", "run", "-e", f"AWS_SECRET_ACCESS_KEY={RANDOM40}", "-e", f"GH_CREDENTIALS={RANDOM40}", "img"],
     "docker run -e AWS_SECRET_ACCESS_KEY={} -e GH_CREDENTIALS={} img", ["secret", "credential"]),
    (["helm", "install", "--set", f"auth.password={RANDOM40}", "x"], "helm install --set auth.password={} x",
     ["password"]),
    # -p of tools that take a password there
    (["mysql", "-uroot", f"-p{RANDOM40}", "shop"], "mysql -uroot -p{} shop", ["password"]),
    (["sshpass", "-p", RANDOM40, "ssh", "-p", "2222", "host"], "sshpass -p {} ssh -p 2222 host", ["password"]),
    (["/usr/bin/sshpass", f"-p{RANDOM40}", "scp", "a", "b:"], "/usr/bin/sshpass -p{} scp a b:", ["password"]),
    (["mongosh", "-u", "admin", "-p", RANDOM40], "mongosh -u admin -p {}", ["password"]),
    (["redis-cli", "-a", RANDOM40, "ping"], "redis-cli -a {} ping", ["password"]),
    (["ldapsearch", "-x", "-D", "cn=admin", "-w", RANDOM40], "ldapsearch -x -D cn=admin -w {}", ["password"]),
    (["docker", "login", "-u", "me", "-p", RANDOM40, "reg.example"], "docker login -u me -p {} reg.example",
     ["password"]),
    (["openssl", "enc", "-k", RANDOM40, "-passout", f"pass:{RANDOM40}"], "openssl enc -k {} -passout {}",
     ["password", "password"]),
    # user:password, headers and URLs with a password
    (["curl", "-u", f"bob:{RANDOM40}", "https://x.example"], "curl -u bob:{} https://x.example", ["password"]),
    (["curl", "-H", f"Authorization: Bearer {RANDOM40}", "-H", f"X-Api-Key: {RANDOM40}"],
     "curl -H Authorization: Bearer {} -H X-Api-Key: {}", ["bearer_token", "api_key_header"]),
    (["psql", f"postgresql://app:{RANDOM40}@db:5432/x"], "psql postgresql://app:{}@db:5432/x", ["url_password"]),
    # a command inside an argument is read word by word
    (["sh", "-c", f"mysql -p{RANDOM40} shop && curl -H 'X-Api-Key: {RANDOM40}' http://x"],
     "sh -c mysql -p{} shop && curl -H 'X-Api-Key: {}' http://x", ["password", "api_key_header"]),
])
def test_command_line_named_secrets(fp, argv, redacted, kinds):
    text, found = _cmd(argv, fp)
    assert RANDOM40 not in text
    f = fp.fingerprint(RANDOM40)
    holes = [f"[REDACTED:{k}:{f[:12]}]" for k in kinds]
    if "pass:" in " ".join(argv):  # openssl's pass:VALUE is redacted whole (its fingerprint is of pass:VALUE)
        holes[-1] = text.split()[-1]
    assert text == redacted.format(*holes)
    assert found == [(k, RANDOM40[-4:]) for k in kinds]


@pytest.mark.parametrize("argv", [
    ["python", "-m", "http.server", "-p", "8080"],  # -p of a tool that takes no password there
    ["mysql", "-p", "shop"],  # mysql's lone -p prompts; 'shop' is the database
    ["docker", "run", "-p", "8080:80", "img"],  # -p before 'login' publishes a port
    ["ssh", "-p", "2222", "-i", "/root/.ssh/id_ed25519", "host"],
    ["curl", "--key", "/etc/ssl/private/client.key", "--cert", "client.crt", "https://x"],  # paths name files
    ["agent", "--key-file", "creds.bin", "--token-file", "tok", "--password-stdin", "--secret-name", "prod"],
    ["agent", "--max-tokens", "4096", "--sort-key", "name", "--public-key", "ssh-ed25519 AAAAC3Nz"],
    ["env", "MAX_TOKENS=4096", "TOKENIZERS_PARALLELISM=false", "PWD=/home/a", "DB_PASSWORD_FILE=/run/secrets/db"],
    ["openssl", "pkcs12", "-passin", "env:P12_PASS", "-passout", "file:/run/secrets/out"],
    ["agent", "--token", "--verbose"],  # a long option where the value would be: the flag had none
    ["agent", "--auth=false", "--no-auth", "x"],
    ["curl", "-u", "bob", "https://x"],  # only a user name: curl asks for the password
])
def test_command_line_left_alone(fp, argv):
    assert _cmd(argv, fp) == (" ".join(argv), [])


def test_command_line_value_of_known_shape_keeps_its_kind_and_fingerprint(fp):
    """A flag's value that is an OpenAI key is fingerprinted as one: the same key seen in a request
    header links to this command line."""
    key = PLANTED["openai_api_key"]
    text, found = _cmd(["agent", "--api-key", key, "--note", PLANTED["github_token"]], fp)
    assert found == [("openai_api_key", key[-4:]), ("github_token", PLANTED["github_token"][-4:])]
    assert f"[REDACTED:openai_api_key:{fp.fingerprint(key)[:12]}]" in text
    assert redact_headers([("Authorization", f"Bearer {key}")], fp)[1][0][2] == fp.fingerprint(key)


def test_command_line_short_values_give_no_last4_and_text_input_works(fp):
    text, found = _cmd("mysql -uroot -phunter2 shop", fp)  # a command line without argument boundaries
    assert text == f"mysql -uroot -p[REDACTED:password:{fp.fingerprint('hunter2')[:12]}] shop"
    assert found == [("password", None)]
    from collector.secrets import redact_command

    (m, f), = redact_command(["x", "--password", "hunter2"], fp)[1]
    row = secret_row(m, f, direction="cmdline", location="cmdline")
    assert row["last4"] is None and "hunter2" not in json.dumps(row)
    # a redacted command line redacted again is unchanged (no placeholder becomes a "secret")
    assert _cmd(text, fp) == (text, [])


def test_command_line_redaction_is_cheap(fp):
    """Exec records arrive by the thousand per second: an ordinary command line costs microseconds."""
    import time

    from collector.secrets import redact_command

    argv = ["/usr/bin/python3", "-m", "pytest", "-x", "-q", "tests/collector/test_ingest.py", "--tb=short"]
    n = 5000
    t = time.process_time()
    for _ in range(n):
        redact_command(argv, fp)
    per = (time.process_time() - t) / n
    assert per < 200e-6, f"{per * 1e6:.1f} us per command line"
