"""Shell analysis of tool-call arguments: what would this command do if the agent ran it?

Work SQL does badly, done once per tool call and stored (`tool_call_indicators`, `tool_call_hosts`,
`package_installs`) so rules stay plain SQL. Detects download-and-execute (`curl … | sh`,
`bash -c "$(curl …)"`, download to a file then run it), decode-and-execute (base64/xxd into a shell
or `exec(b64decode(…))`), reverse shells, reads of credential and wallet files, environment dumps,
package installs and every URL/host named. Nothing here executes anything.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shlex
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import urlsplit

MAX_DEPTH = 4
MAX_TEXT = 64_000

DOWNLOADERS = {"curl", "wget", "fetch", "aria2c", "lwp-download", "http", "https", "xh", "iwr", "invoke-webrequest"}
SHELLS = {"sh", "bash", "zsh", "dash", "ksh", "ash", "fish", "csh", "tcsh", "busybox"}
INTERPRETERS = SHELLS | {
    "python", "python2", "python3", "perl", "ruby", "node", "nodejs", "php", "pwsh", "powershell", "lua",
    "osascript", "deno", "bun", "iex", "invoke-expression",
}
WRAPPERS = {"sudo", "doas", "nohup", "time", "exec", "command", "builtin", "nice", "stdbuf", "setsid", "xargs", "env"}
SEPARATORS = {";", "&&", "||", "&", "\n", "|&"}

_URL = re.compile(r"\b(?:https?|ftp|wss?|git|ssh|sftp)://[^\s'\"<>|;`)\\]+", re.I)
_DEV_TCP = re.compile(r"/dev/(?:tcp|udp)/([A-Za-z0-9.\-:\[\]]+)/(\d+)")
_SUBST = re.compile(r"\$\(((?:[^()]|\((?:[^()]|\([^()]*\))*\))*)\)|`([^`]*)`|<\(((?:[^()]|\([^()]*\))*)\)")
_B64_BLOB = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{24,}={0,2}(?![A-Za-z0-9+/=])")
_HOSTLIKE = re.compile(r"^(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}$|^\d{1,3}(?:\.\d{1,3}){3}$")

_PY_NET = re.compile(r"urlopen|urllib\.request|requests\.(?:get|post)|http\.client|httpx\.(?:get|Client)|urlretrieve")
_PY_EXEC = re.compile(r"\b(?:exec|eval)\s*\(|subprocess|os\.system|os\.popen|__import__\(\s*['\"]os")
_PY_B64 = re.compile(r"b64decode|base64\.|decodebytes|codecs\.decode\([^)]*rot|zlib\.decompress|marshal\.loads")
_PY_REVSHELL = re.compile(r"socket\.socket|socket\(\)")
_PY_SPAWN = re.compile(r"pty\.spawn|subprocess|os\.dup2|/bin/(?:ba)?sh")
_JS_NET = re.compile(r"\bfetch\(|https?\.get\(|require\(['\"]https?['\"]\)|axios")
_JS_EXEC = re.compile(r"\beval\s*\(|child_process|new Function\(|execSync|\bexec\(")

_REVERSE_SHELL = [
    re.compile(r"/dev/(?:tcp|udp)/"),
    re.compile(r"\b(?:nc|ncat|netcat|nc\.traditional)\b[^|;&\n]*\s-(?:[a-z]*e|c)\s"),
    re.compile(r"\bsocat\b[^\n]*\bexec:", re.I),
    re.compile(r"\bmkfifo\b[^\n]*\b(?:nc|ncat|netcat|telnet)\b"),
    re.compile(r"\b(?:ba)?sh\s+-i\s*[<>]&"),
    re.compile(r"\btelnet\b[^|\n]*\|\s*/bin/(?:ba)?sh"),
]
_CREDENTIAL_PATHS = re.compile(
    r"(?:\.aws/credentials|\.aws/config\b|\.ssh/id_[a-z0-9_]+|\.ssh/authorized_keys|\.kube/config|"
    r"\.docker/config\.json|\.netrc\b|\.git-credentials|\.npmrc\b|\.pypirc\b|\.config/gcloud|"
    r"application_default_credentials\.json|\.azure/(?:accessTokens|msal_token_cache)|wallet\.dat|"
    r"\.ethereum/keystore|keystore/UTC--|\.bitcoin/|\.electrum/|solana/id\.json|\.config/solana|"
    r"(?:MetaMask|Exodus|Phantom)[^\s'\"]*|/etc/shadow\b|\.gnupg/|\.password-store|\.vault-token|"
    r"(?<![\w.])\.env(?:\.local|\.production)?(?![\w.]))",
    re.I,
)
_ENV_DUMP = [
    re.compile(r"/proc/(?:self|\d+|\*|\$\$)/environ"),
    re.compile(r"\b(?:print|json\.dumps|str|repr)\s*\(\s*(?:dict\()?\s*os\.environ\b"),
    re.compile(r"\bprocess\.env\b\s*\)"),
]
_WRITE_PATH = re.compile(r"^(?:-o|--output|-O|--output-document)$")
# Text without any of these cannot carry an indicator, an install or a host: skip the shell parser.
_INTERESTING = re.compile(
    r"curl|wget|fetch|aria2c|://|base(?:64|32|nc)|xxd|openssl|/dev/|\bnc\b|ncat|netcat|socat|mkfifo|telnet|"
    r"pip|npm|pnpm|yarn|\bbunx?\b|npx|cargo|\bgo\s|\buv\s|poetry|pdm|rye|\beval\b|\bsource\b|\bexec\b|"
    r"python|perl|ruby|node|php|pwsh|powershell|\b(?:ba|z|da|k|c|tc)?sh\b|\benv\b|printenv|export|\bset\b|environ|"
    r"@|ssh|scp|rsync|gunzip|zcat|gzip|uudecode|\brev\b|\biex\b|invoke-|lwp|\bhttps?\b|\bxh\b|\$\(|`|<\(|\bdig\b|"
    r"nslookup|\bhost\b|ping|\.\s",
    re.I,
)


@dataclass
class Indicator:
    kind: str  # download_exec | base64_exec | reverse_shell | credential_read | env_dump
    detail: str
    host: str | None = None


@dataclass
class Install:
    manager: str  # pip | npm | cargo | go
    package: str
    spec: str  # as written


@dataclass
class HostRef:
    host: str
    port: int | None
    url: str | None


@dataclass
class Analysis:
    indicators: list[Indicator] = field(default_factory=list)
    installs: list[Install] = field(default_factory=list)
    hosts: list[HostRef] = field(default_factory=list)

    def add(self, other: Analysis) -> None:
        self.indicators += other.indicators
        self.installs += other.installs
        self.hosts += other.hosts

    def dedup(self) -> Analysis:
        seen: set = set()
        out = Analysis()
        for i in self.indicators:
            k = (i.kind, i.host, i.detail)
            if k not in seen:
                seen.add(k)
                out.indicators.append(i)
        for p in self.installs:
            k = ("i", p.manager, p.package)
            if k not in seen:
                seen.add(k)
                out.installs.append(p)
        for h in self.hosts:
            k = ("h", h.host, h.port)
            if k not in seen:
                seen.add(k)
                out.hosts.append(h)
        return out


# -- entry points ----------------------------------------------------------------------------------
@lru_cache(maxsize=32768)
def analyze_arguments(arguments: str | None) -> Analysis:
    """Tool-call arguments (JSON text, usually) -> everything the strings in it would do.
    Cached: agents repeat the same tool calls, and the analysis is pure (callers must not mutate it)."""
    if not arguments:
        return Analysis()
    arguments = arguments[:MAX_TEXT]
    try:
        obj = json.loads(arguments)
    except (ValueError, RecursionError):
        obj = arguments
    out = Analysis()
    for s in _strings(obj):
        out.add(analyze_command(s))
    return out.dedup()


def analyze_command(cmd: str, depth: int = 0) -> Analysis:
    """One shell command line (or script) -> indicators, installs, hosts."""
    out = Analysis()
    if not cmd or depth > MAX_DEPTH:
        return out
    if not _INTERESTING.search(cmd) and not _CREDENTIAL_PATHS.search(cmd) and not _B64_BLOB.search(cmd):
        return out
    out.hosts += extract_hosts(cmd)
    for rx in _REVERSE_SHELL:
        m = rx.search(cmd)
        if m:
            out.indicators.append(Indicator("reverse_shell", _snip(cmd, m), _first_host(cmd)))
            break
    m = _CREDENTIAL_PATHS.search(cmd)
    if m and not _only_written(cmd, m):
        out.indicators.append(Indicator("credential_read", m.group(0)[:200], None))
    for rx in _ENV_DUMP:
        m = rx.search(cmd)
        if m:
            out.indicators.append(Indicator("env_dump", _snip(cmd, m), None))
            break
    _substitutions(cmd, depth, out)
    commands = split_commands(cmd)
    if commands is None:  # unbalanced quotes: fall back to patterns on the raw text
        _regex_fallback(cmd, out)
    else:
        _pipelines(commands, cmd, depth, out)
        _download_then_run(commands, out)
    _encoded_blobs(cmd, depth, out)
    return out


# -- tokenising ------------------------------------------------------------------------------------
@lru_cache(maxsize=8192)
def split_commands(cmd: str) -> list[tuple[str, list[str]]] | None:
    """Shell text -> [(separator before, argv)], separators being '|', ';', '&&', ... ; None if unparsable.
    Redirections are kept in argv as ('>', target) pairs of tokens."""
    lex = shlex.shlex(cmd, posix=True, punctuation_chars="();<>|&\n")
    lex.whitespace = " \t\r"
    lex.whitespace_split = True
    lex.commenters = ""
    try:
        tokens = list(lex)
    except ValueError:
        return None
    out: list[tuple[str, list[str]]] = []
    sep = ";"
    argv: list[str] = []
    for tok in tokens:
        if tok in SEPARATORS or tok == "|" or (tok and set(tok) <= set("|&;\n") and tok not in ("&",)):
            if argv:
                out.append((sep, argv))
            argv = []
            sep = "|" if tok in ("|", "|&") else ";"
            continue
        if tok in ("(", ")"):
            continue
        argv.append(tok)
    if argv:
        out.append((sep, argv))
    return out


def _head(argv: list[str]) -> tuple[str, list[str]]:
    """Strip wrappers (sudo, env X=y, nohup, ...) and return (basename of the command, its args)."""
    i = 0
    while i < len(argv):
        a = argv[i]
        base = a.rsplit("/", 1)[-1].lower()
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", a):
            i += 1
            continue
        if base in WRAPPERS:
            rest = [x for x in argv[i + 1 :] if not x.startswith("-") and not re.match(r"^[A-Za-z_]\w*=", x)]
            if not rest:  # `env`, `sudo -l`: the wrapper is the command
                return base, argv[i + 1 :]
            i += 1
            while i < len(argv) and argv[i].startswith("-"):
                i += 1
            if base == "timeout" and i < len(argv):
                i += 1
            continue
        if base == "timeout":
            i += 2
            continue
        return base, argv[i + 1 :]
    return "", []


def _reads_stdin(head: str, args: list[str]) -> bool:
    """An interpreter that would run what it reads on stdin (no script file argument)."""
    if head in ("iex", "invoke-expression"):
        return True
    rest = [a for a in args if a not in (">", ">>", "<", "2>", "&>") and not a.startswith("2>")]
    if not rest:
        return True
    if rest[0] in ("-", "-s", "/dev/stdin") or rest[0].startswith("-s"):
        return True
    flags_only = all(a.startswith("-") for a in rest)
    return flags_only and "-c" not in rest and "-e" not in rest


# -- detectors -------------------------------------------------------------------------------------
def _pipelines(commands: list[tuple[str, list[str]]], text: str, depth: int, out: Analysis) -> None:
    pipeline: list[tuple[str, list[str]]] = []
    for sep, argv in [*commands, (";", [])]:
        if sep != "|" and pipeline:
            _check_pipeline(pipeline, out)
            pipeline = []
        if not argv:
            continue
        head, args = _head(argv)
        pipeline.append((head, args))
        _inline_code(head, args, depth, out)
        inst = package_installs(head, args)
        out.installs += inst
        if head in ("env", "printenv") and not [a for a in args if not a.startswith("-")]:
            out.indicators.append(Indicator("env_dump", " ".join([head, *args])[:200]))
        if head == "export" and args == ["-p"] or head == "set" and not args:
            out.indicators.append(Indicator("env_dump", " ".join([head, *args])[:200]))


def _check_pipeline(pipeline: list[tuple[str, list[str]]], out: Analysis) -> None:
    source = None  # 'download' | 'decode'
    detail: list[str] = []
    host = None
    decoded = False
    downloaded = False
    for head, args in pipeline:
        detail.append(" ".join([head, *args]))
        if _is_downloader(head, args):
            downloaded = True
            host = host or _first_host(" ".join(args))
        elif _is_decoder(head, args):
            decoded = True
        elif head in INTERPRETERS and (downloaded or decoded) and _reads_stdin(head, args):
            source = "download" if downloaded else "decode"
            text = " | ".join(detail)[:300]
            if downloaded:
                out.indicators.append(Indicator("download_exec", text, host))
            if decoded:
                out.indicators.append(Indicator("base64_exec", text, host))
            return
    del source


def _is_downloader(head: str, args: list[str]) -> bool:
    if head in DOWNLOADERS:
        return True
    if head.startswith("python") and "-c" in args:
        return bool(_PY_NET.search(" ".join(args)))
    if head in ("nc", "ncat", "netcat", "telnet", "openssl") and any(_HOSTLIKE.match(a.lower()) for a in args):
        return head != "openssl" or "s_client" in args
    return False


def _is_decoder(head: str, args: list[str]) -> bool:
    joined = " ".join(args)
    if head in ("base64", "base32", "basenc") and re.search(r"(?:^|\s)-(?:d|D|-decode)\b", " " + joined):
        return True
    if head == "xxd" and "-r" in joined:
        return True
    if head == "openssl" and re.search(r"\b(?:base64|enc)\b", joined) and "-d" in args:
        return True
    if head in ("gunzip", "zcat", "uudecode", "rev") or head == "gzip" and "-d" in args:
        return True
    if head.startswith("python") and "-c" in args and _PY_B64.search(joined):
        return True
    return False


def _inline_code(head: str, args: list[str], depth: int, out: Analysis) -> None:
    """`sh -c STRING`, `eval STRING`, `python -c CODE`, `node -e CODE`, ... analysed recursively."""
    code = None
    for i, a in enumerate(args):
        is_flag = a in ("-c", "-e", "-r", "--eval", "-Command", "-command") or (
            head in SHELLS and re.match(r"^-[a-zA-Z]*c[a-zA-Z]*$", a) is not None
        )
        if is_flag:
            if i + 1 < len(args):
                code = args[i + 1]
            break
    if head in ("eval", "source", ".") and args:
        code = " ".join(args)
    if code is None:
        return
    if head in SHELLS or head in ("eval", "su", "source", ".", "pwsh", "powershell"):
        inner = analyze_command(code, depth + 1)
        out.add(inner)
        return
    if head.startswith("python") or head in ("perl", "ruby", "php", "node", "nodejs", "deno", "bun"):
        net = _PY_NET.search(code) or _JS_NET.search(code) or re.search(r"LWP::|Net::HTTP|open-uri|file_get_contents\(['\"]https?", code)
        exe = _PY_EXEC.search(code) or _JS_EXEC.search(code) or re.search(r"\bsystem\s*\(|`|\bexec\b", code)
        b64 = _PY_B64.search(code) or re.search(r"\batob\(|Buffer\.from\([^)]*base64|decode_base64|unpack\(['\"]m", code)
        if net and exe:
            out.indicators.append(Indicator("download_exec", code[:300], _first_host(code)))
        if b64 and exe:
            out.indicators.append(Indicator("base64_exec", code[:300], _first_host(code)))
        if _PY_REVSHELL.search(code) and _PY_SPAWN.search(code) or re.search(r"use Socket.*exec|TCPSocket.*(?:exec|spawn|system)", code, re.S):
            out.indicators.append(Indicator("reverse_shell", code[:300], _first_host(code)))
        out.hosts += extract_hosts(code)


def _substitutions(cmd: str, depth: int, out: Analysis) -> None:
    """`bash -c "$(curl …)"`, `eval "$(wget -qO- …)"`, `bash <(curl …)`, `. <(curl …)`."""
    for m in _SUBST.finditer(cmd):
        inner = next(g for g in m.groups() if g is not None)
        sub = split_commands(inner) or []
        has_dl = any(_is_downloader(*_head(argv)) for _, argv in sub)
        has_dec = any(_is_decoder(*_head(argv)) for _, argv in sub)
        if not (has_dl or has_dec):
            continue
        before = cmd[: m.start()].rstrip(" \"'")
        ctx = before.split("\n")[-1]
        ctx = re.split(r"[;&|]", ctx)[-1].strip()
        words = ctx.split()
        runs = False
        if words:
            head, args = _head(words)
            runs = head in INTERPRETERS or head in ("eval", "source", ".", "exec") or (head in SHELLS and "-c" in args)
        elif m.group(0).startswith("<(") is False and before.endswith("$"):
            runs = False
        if runs:
            host = _first_host(inner)
            if has_dl:
                out.indicators.append(Indicator("download_exec", _snip(cmd, m), host))
            if has_dec:
                out.indicators.append(Indicator("base64_exec", _snip(cmd, m), host))


def _download_then_run(commands: list[tuple[str, list[str]]], out: Analysis) -> None:
    """`curl -o /tmp/x URL && chmod +x /tmp/x && /tmp/x` (or `sh /tmp/x`)."""
    files: dict[str, str | None] = {}
    for _sep, argv in commands:
        head, args = _head(argv)
        if head in DOWNLOADERS:
            for i, a in enumerate(args):
                if _WRITE_PATH.match(a) and i + 1 < len(args) and not args[i + 1].startswith("-"):
                    files[args[i + 1]] = _first_host(" ".join(args))
                if a in (">", ">>") and i + 1 < len(args):
                    files[args[i + 1]] = _first_host(" ".join(args))
            if "-O" in args or "--remote-name" in args:
                for u in _URL.findall(" ".join(args)):
                    name = urlsplit(u).path.rsplit("/", 1)[-1]
                    if name:
                        files[name] = _first_host(u)
            continue
        if not files:
            continue
        targets = [argv[0]] if head else []
        if head in INTERPRETERS and args:
            targets.append(args[0])
        for t in targets:
            for f, host in files.items():
                if t == f or t.rsplit("/", 1)[-1] == f.rsplit("/", 1)[-1] and t.endswith(f.rsplit("/", 1)[-1]):
                    if head == "chmod":
                        continue
                    out.indicators.append(Indicator("download_exec", " ".join(argv)[:300], host))
                    return


def _regex_fallback(cmd: str, out: Analysis) -> None:
    if re.search(r"\b(?:curl|wget)\b[^|]*\|\s*(?:sudo\s+)?(?:ba|z|da|k)?sh\b", cmd):
        out.indicators.append(Indicator("download_exec", cmd[:300], _first_host(cmd)))
    if re.search(r"base64\s+(?:-d|--decode|-D)[^|]*\|\s*(?:sudo\s+)?(?:ba|z|da|k)?sh\b", cmd):
        out.indicators.append(Indicator("base64_exec", cmd[:300], _first_host(cmd)))


def _encoded_blobs(cmd: str, depth: int, out: Analysis) -> None:
    """Long base64 strings are decoded and analysed too: an obfuscated `curl … | sh` is still one."""
    for m in _B64_BLOB.finditer(cmd):
        blob = m.group(0)
        if len(blob) < 24 or "[REDACTED" in cmd[max(0, m.start() - 12) : m.start()]:
            continue
        try:
            raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
            text = raw.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if not text.isprintable() and not all(c.isprintable() or c in "\n\t\r" for c in text):
            continue
        inner = analyze_command(text, depth + 1)
        for ind in inner.indicators:
            if ind.kind in ("download_exec", "reverse_shell"):
                out.indicators.append(Indicator("base64_exec", f"base64 of: {ind.detail}"[:300], ind.host))
        out.indicators += inner.indicators
        out.hosts += inner.hosts


# -- package installs ------------------------------------------------------------------------------
_PIP_VALUE_OPTS = {
    "-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-i", "--index-url", "--extra-index-url",
    "-f", "--find-links", "-t", "--target", "--prefix", "--root", "--platform", "--python-version",
    "--implementation", "--abi", "--trusted-host", "--proxy", "--cert", "--client-cert", "--cache-dir",
    "--src", "--log", "--timeout", "--retries", "--exists-action", "--progress-bar", "--upgrade-strategy",
    "--python", "-p", "--group", "--only-binary", "--no-binary", "--index", "--default-index",
}
_NPM_VALUE_OPTS = {"--registry", "--prefix", "-w", "--workspace", "--tag", "--cache", "--userconfig", "-C", "--dir"}
_CARGO_VALUE_OPTS = {
    "--version", "--vers", "--git", "--path", "--branch", "--tag", "--rev", "--registry", "--index",
    "--features", "-F", "--root", "--target", "--profile", "-j", "--jobs", "--rename", "--package", "-p",
}


def package_installs(head: str, args: list[str]) -> list[Install]:
    """`pip install X`, `python -m pip install X`, `uv add X`, `npm i X`, `cargo add X`, `go install X@v`, ..."""
    if head.startswith("python") and args[:2] == ["-m", "pip"]:
        head, args = "pip", args[2:]
    if head == "uv" and args[:1] == ["pip"]:
        head, args = "pip", args[1:]
    if head in ("uv", "poetry", "pdm", "rye") and args[:1] == ["add"]:
        return _specs("pip", args[1:], _PIP_VALUE_OPTS)
    if head == "pipx" and args[:1] in (["install"], ["run"]):
        return _specs("pip", args[1:2] if args[:1] == ["run"] else args[1:], _PIP_VALUE_OPTS)
    if re.match(r"^pip(?:\d(?:\.\d+)?)?$", head) and args[:1] == ["install"]:
        return _specs("pip", args[1:], _PIP_VALUE_OPTS)
    if head in ("npm", "pnpm", "yarn", "bun", "cnpm") and args[:1] and args[0] in ("install", "i", "add", "isntall", "in"):
        return _specs("npm", args[1:], _NPM_VALUE_OPTS)
    if head in ("npx", "bunx") and args:
        return _specs("npm", [a for a in args if not a.startswith("-")][:1], _NPM_VALUE_OPTS)
    if head == "cargo" and args[:1] and args[0] in ("install", "add"):
        return _specs("cargo", args[1:], _CARGO_VALUE_OPTS)
    if head == "go" and args[:1] and args[0] in ("install", "get"):
        return _specs("go", args[1:], set())
    return []


def _specs(manager: str, args: list[str], value_opts: set[str]) -> list[Install]:
    out: list[Install] = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a in (">", ">>", "<", "2>", "&>", "2>&1") or a.startswith("2>"):
            break
        if a.startswith("-"):
            if a in value_opts:
                skip = True
            continue
        name = normalise_package(manager, a)
        if name:
            out.append(Install(manager, name, a))
    return out


def normalise_package(manager: str, spec: str) -> str | None:
    """A package spec as written -> its canonical name; None for paths, URLs, archives."""
    s = spec.strip().strip("'\"")
    if not s or "://" in s or s.startswith((".", "/", "~", "git+", "file:")) or s.endswith((".whl", ".tar.gz", ".tgz", ".zip")):
        return None
    if manager == "pip":
        s = re.split(r"[\[=<>!~;@ ]", s, maxsplit=1)[0]
        if "/" in s or not re.match(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$", s):
            return None
        return re.sub(r"[-_.]+", "-", s.lower())
    if manager == "npm":
        if s.startswith("@"):
            scope, _, rest = s.partition("/")
            name = rest.split("@", 1)[0]
            return f"{scope}/{name}".lower() if name else None
        if "/" in s or ":" in s:
            return None
        return s.split("@", 1)[0].lower() or None
    if manager == "cargo":
        return s.split("@", 1)[0].lower() or None
    if manager == "go":
        return s.split("@", 1)[0] or None
    return s


# -- hosts -----------------------------------------------------------------------------------------
@lru_cache(maxsize=8192)
def _hosts_cached(text: str) -> tuple[HostRef, ...]:
    return tuple(_extract_hosts(text))


def extract_hosts(text: str) -> list[HostRef]:
    return list(_hosts_cached(text))


def _extract_hosts(text: str) -> list[HostRef]:
    """URLs, `/dev/tcp/H/P`, `user@host`, and bare hosts handed to downloaders or netcat."""
    out: list[HostRef] = []
    for u in _URL.findall(text):
        u = u.rstrip(".,'\"")
        try:
            parts = urlsplit(u)
            host = parts.hostname
            port = parts.port
        except ValueError:
            continue
        if host and "[redacted" not in host:
            out.append(HostRef(host.lower(), port, u[:500]))
    for m in _DEV_TCP.finditer(text):
        out.append(HostRef(m.group(1).strip("[]").lower(), int(m.group(2)), None))
    for m in re.finditer(r"\b(?:git@|[a-z_][a-z0-9_\-]*@)([a-z0-9.\-]+\.[a-z]{2,24})(?=[:/\s]|$)", text, re.I):
        if not re.match(r"^\S+@\S+\.\S+$", m.group(0) + "x") or "git@" in m.group(0) or re.search(r"\b(?:ssh|scp|rsync|sftp|git)\b", text):
            out.append(HostRef(m.group(1).lower(), None, None))
    cmds = split_commands(text) or []
    for _sep, argv in cmds:
        head, args = _head(argv)
        if head in DOWNLOADERS or head in ("nc", "ncat", "netcat", "telnet", "ssh", "scp", "ping", "dig", "nslookup", "host"):
            for i, a in enumerate(args):
                al = a.lower().strip("'\"")
                if al.startswith("-") or "://" in al:
                    continue
                hostpart = al.split("/", 1)[0].split("@")[-1]
                host, _, port = hostpart.partition(":")
                if _HOSTLIKE.match(host) and not re.search(r"\.(?:sh|py|txt|json|tar|gz|zip|js|html)$", host):
                    p = int(port) if port.isdigit() else None
                    if p is None and head in ("nc", "ncat", "netcat", "telnet") and i + 1 < len(args) and args[i + 1].isdigit():
                        p = int(args[i + 1])
                    out.append(HostRef(host, p, None))
    return out


def _first_host(text: str) -> str | None:
    hs = extract_hosts(text)
    return hs[0].host if hs else None


def _snip(text: str, m: re.Match) -> str:
    a = max(0, m.start() - 80)
    return text[a : m.end() + 120].strip()[:300]


def _only_written(cmd: str, m: re.Match) -> bool:
    """`echo x > .env` writes a credential file; it does not read one."""
    before = cmd[: m.start()].rstrip().rstrip("~/").rstrip()
    return before.endswith((">", ">>")) or bool(re.search(r"(?:>|>>)\s*\S*$", cmd[: m.start()]))


def _strings(obj: object) -> list[str]:
    """Every string in a JSON value; an argv list (["bash", "-lc", "..."]) also as one command line."""
    out: list[str] = []
    if isinstance(obj, str):
        out.append(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            out += _strings(v)
    elif isinstance(obj, list):
        if obj and all(isinstance(x, str) for x in obj) and len(obj) <= 64:
            out.append(shlex.join(obj))
        else:
            for v in obj:
                out += _strings(v)
    return out
