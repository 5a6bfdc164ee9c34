"""Inline interpreter code (`python -c`, `node -e`, `perl -e`, a heredoc fed to `python3 -`): does it
fetch and run, decode and run, open a reverse shell, read credentials, or send data away?"""

from __future__ import annotations

import re

from collector.toolcalls import paths
from collector.toolcalls.hosts import urls_in, with_intent
from collector.toolcalls.model import (
    BASE64_EXEC,
    CREDENTIAL_READ,
    DOWNLOAD_EXEC,
    ENV_DUMP,
    ENV_FILE_READ,
    PERSISTENCE,
    REVERSE_SHELL,
    Analysis,
    Indicator,
)

NET = re.compile(
    r"urlopen|urllib\.request|urllib2|requests\.(?:get|post|put|request|Session)|http\.client|httpx\.|"
    r"urlretrieve|aiohttp|pycurl|socket\.create_connection|"  # python
    r"\bfetch\(|https?\.(?:get|request)\(|require\(['\"](?:node:)?https?['\"]\)|axios|got\(|undici|"  # node
    r"LWP::|HTTP::Tiny|Net::HTTP|open-uri|URI\.open|file_get_contents\(\s*['\"]https?|curl_exec|"  # perl/ruby/php
    r"IO::Socket::INET|TCPSocket\.new",
)
EXEC = re.compile(
    r"\b(?:exec|eval|compile)\s*\(|__import__\(\s*['\"]os['\"]\)\.system|new Function\(|vm\.runIn\w*\(|"
    r"\beval\s+[\w$(]|instance_eval|Kernel\.eval|\bsystem\s*\(\s*(?:get|\$_|\$content)|\(\s*eval\s*\)|"
    r"\|\s*(?:ba)?sh\b|"
    # a shell-out whose command is a variable (data-driven execution): execSync(d), os.system(code), ...
    r"\b(?:execSync|exec|spawnSync|system|popen|check_output|check_call|call|run|Popen)\s*\(\s*[A-Za-z_$][\w$.]*\s*[,)]",
)
SPAWN = re.compile(r"subprocess|os\.system|os\.popen|os\.exec|child_process|execSync|spawnSync|\bspawn\(|\bsystem\s*\(|`")
WRITE_FILE = re.compile(r"open\([^)]*['\"][wa]b?['\"]|write_bytes|write_text|writeFileSync|urlretrieve|File\.write|IO\.write")
B64 = re.compile(r"b64decode|base64\.|decodebytes|codecs\.decode\([^)]*rot|zlib\.decompress|marshal\.loads|"
                 r"\batob\(|Buffer\.from\([^)]*base64|decode_base64|unpack\(['\"]m|Base64\.decode|base64_decode")
REVSHELL_SOCKET = re.compile(r"socket\.socket|socket\(\)|net\.Socket|net\.connect|IO::Socket|TCPSocket|fsockopen")
REVSHELL_SPAWN = re.compile(r"pty\.spawn|os\.dup2|/bin/(?:ba)?sh|cmd\.exe|spawn\(['\"](?:/bin/)?(?:ba)?sh|exec\s*\(\s*['\"]/bin")
READ_FILE = re.compile(r"open\(|read_text|read_bytes|readFile|File\.read|IO\.read|file_get_contents|slurp|Path\(")
ENV_PRINT = re.compile(r"(?:print|json\.dumps|str|repr|pprint|console\.log|JSON\.stringify|puts|p|var_dump|print_r)"
                       r"\s*\(?\s*(?:dict\()?\s*(?:os\.environ\b(?!\s*[\[.]\s*(?:get)?)|process\.env\s*\)|ENV\s*\)?$|\$_ENV|getenv\(\)\))")
UPLOAD = re.compile(r"requests\.(?:post|put|patch)|\.post\(|\.put\(|urlopen\([^)]*data\s*=|method\s*[:=]\s*['\"](?:POST|PUT)|"
                    r"\.send\(|sendall\(|http\.request\(|Net::HTTP::Post|post_form|curl_setopt[^;]*POSTFIELDS")
_LITERAL = re.compile(r"""(['"])((?:\\.|(?!\1).){6,}?)\1""", re.S)
_SHELLISH = re.compile(r"\b(?:curl|wget|nc|ncat|socat|base64|bash|sh)\b|/dev/tcp/|\|")
PERSIST_WRITE = re.compile(r"open\([^)]*(?:authorized_keys|/etc/cron|crontab|systemd/|\.bashrc|\.zshrc|\.profile|ld\.so\.preload)[^)]*['\"][aw]")


def analyze_code(lang: str, code: str, context: str, shell) -> tuple[Analysis, list[str]]:  # noqa: ANN001
    """(findings, uploads) for one piece of interpreter code; `shell(text)` analyses shell strings it runs."""
    out = Analysis()
    uploads: list[str] = []
    net = NET.search(code)
    snippet = code[:300]
    host = _first_host(code)
    if net and (EXEC.search(code) or SPAWN.search(code) and WRITE_FILE.search(code)):
        out.indicators.append(Indicator(DOWNLOAD_EXEC, snippet, host, context))
    if B64.search(code) and EXEC.search(code):
        out.indicators.append(Indicator(BASE64_EXEC, snippet, host, context))
    if REVSHELL_SOCKET.search(code) and REVSHELL_SPAWN.search(code) or re.search(
            r"use Socket.*exec|TCPSocket.*(?:exec|spawn|system)|fsockopen.*(?:exec|shell_exec|system|proc_open)", code, re.S):
        out.indicators.append(Indicator(REVERSE_SHELL, snippet, host, context))
    m = paths.CREDENTIAL.search(code)
    if m and READ_FILE.search(code):
        out.indicators.append(Indicator(CREDENTIAL_READ, m.group(0)[:200], None, context))
    elif paths.ENV_FILE.search(code) and READ_FILE.search(code) and not re.search(r"load_dotenv|dotenv", code):
        out.indicators.append(Indicator(ENV_FILE_READ, ".env", None, context))
    if ENV_PRINT.search(code):
        out.indicators.append(Indicator(ENV_DUMP, snippet, None, context))
    if PERSIST_WRITE.search(code):
        out.indicators.append(Indicator(PERSISTENCE, snippet, None, context))
    if net and UPLOAD.search(code) or re.search(r"IO::Socket::INET|socket\.create_connection|net\.connect", code):
        uploads.append(snippet)
    intent = "written" if context == "written" else "mention" if context != "command" else "fetch" if net else "mention"
    out.hosts += with_intent(urls_in(code), intent)
    if SPAWN.search(code):  # shell strings the code runs: os.system("curl ... | sh"), run(["bash", "-c", "..."])
        for _q, lit in _LITERAL.findall(code):
            if _SHELLISH.search(lit):
                a, u = shell(lit)
                out.add(a)
                uploads += u
    return out, uploads


def _first_host(text: str) -> str | None:
    hs = urls_in(text)
    return hs[0].host if hs else None
