"""Hosts named in a command, each with what the command would do with it (its intent).

`curl URL` fetches (intent 'fetch'), `ssh user@host` connects, a URL handed to another program is an
'arg', a URL in `echo`, `git commit -m`, a grep pattern or an `export` is only a 'mention', and one in
file content being written is 'written'. Only fetch/connect/install/index/arg are egress intents.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import urlsplit

from collector.toolcalls.model import HostRef

URL = re.compile(r"\b(?:https?|ftp|wss?|git|ssh|sftp|rsync)://[^\s'\"<>|;`)\\]+", re.I)
DEV_TCP = re.compile(r"/dev/(?:tcp|udp)/([A-Za-z0-9.\-:\[\]]+)/(\d+)")
HOSTLIKE = re.compile(r"^(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}$|^\d{1,3}(?:\.\d{1,3}){3}$")
USER_AT_HOST = re.compile(r"^(?:[a-z_][a-z0-9_.\-]*@)([a-z0-9.\-]+\.[a-z]{2,24}|\d{1,3}(?:\.\d{1,3}){3})(?::(\d+)|:.*)?$", re.I)
_FILE_EXT = re.compile(r"\.(?:sh|py|txt|json|ya?ml|toml|tar|gz|tgz|zip|js|ts|html?|md|log|csv|conf|cfg|ini|lock|"
                       r"whl|deb|rpm|xz|bz2|pem|crt|key|pub|env|sql|db|exe|bin|jar|go|rs|rb|pl|c|h|cpp|so|o)$")

DOWNLOADERS = {"curl", "wget", "fetch", "aria2c", "lwp-download", "lwp-request", "http", "https", "xh", "iwr",
               "invoke-webrequest", "invoke-restmethod", "irm", "httpie", "curlie", "axel"}
CONNECTORS = {"ssh", "scp", "sftp", "rsync", "nc", "ncat", "netcat", "telnet", "socat", "openssl", "ping", "ping6",
              "dig", "nslookup", "host", "mosh", "ftp", "tftp", "traceroute", "mtr", "drill", "kdig", "whois",
              "ssh-keyscan", "sshpass", "autossh", "nmap"}
# Commands whose arguments are text (a URL among them is only mentioned).
TEXT_COMMANDS = {"echo", "printf", "grep", "egrep", "fgrep", "rg", "ag", "ack", "sed", "awk", "gawk", "jq", "yq",
                 "export", "read", "test", "[", "cat", "less", "more", "head", "tail", "sort", "uniq", "wc", "tr",
                 "cut", "ls", "find", "fd", "tee", "touch", "mkdir", "rm", "mv", "cp", "chmod", "chown", "diff",
                 "true", "false", ":", "set", "unset", "local", "declare", "typeset", "alias", "logger", "notify-send",
                 "sqlite3", "column", "fold", "fmt", "nl", "rev", "md5sum", "sha256sum", "shasum", "stat", "file",
                 "basename", "dirname", "realpath", "readlink", "which", "type", "whereis", "man", "help"}
# Options of downloaders whose value is not the URL to fetch.
CURL_VALUE_OPTS = {
    "-o", "--output", "-H", "--header", "-d", "--data", "--data-raw", "--data-binary", "--data-urlencode",
    "--data-ascii", "--json", "-F", "--form", "--form-string", "-u", "--user", "-A", "--user-agent", "-e", "--referer",
    "-X", "--request", "-w", "--write-out", "-b", "--cookie", "-c", "--cookie-jar", "-T", "--upload-file", "-m",
    "--max-time", "-r", "--range", "-K", "--config", "-E", "--cert", "--key", "--cacert", "--capath", "--resolve",
    "--connect-to", "--retry", "--retry-delay", "--retry-max-time", "--connect-timeout", "--limit-rate", "-C",
    "--continue-at", "-y", "--speed-time", "-Y", "--speed-limit", "-z", "--time-cond", "--interface", "--dns-servers",
    "--proxy-user", "-U", "--oauth2-bearer", "--aws-sigv4", "--output-dir", "--create-file-mode", "--variable",
    "--expand-data", "--trace", "--trace-ascii", "--stderr", "--etag-save", "--etag-compare", "--local-port",
    "-x", "--proxy", "--max-redirs", "-P", "--ftp-port", "-t", "--telnet-option", "-Q", "--quote", "--max-filesize",
}
WGET_VALUE_OPTS = {
    "-O", "--output-document", "-o", "--output-file", "-a", "--append-output", "-P", "--directory-prefix", "--header",
    "--post-data", "--post-file", "--body-data", "--body-file", "--method", "-t", "--tries", "-T", "--timeout", "-w",
    "--wait", "--user", "--password", "--http-user", "--http-password", "--load-cookies", "--save-cookies", "-i",
    "--input-file", "--ca-certificate", "--certificate", "--private-key", "-e", "--execute", "-U", "--user-agent",
    "--referer", "-l", "--level", "-A", "--accept", "-R", "--reject", "-D", "--domains", "--limit-rate", "-Q", "--quota",
}
PROXY_OPTS = {"-x", "--proxy", "--preproxy", "--socks5", "--socks5-hostname", "--socks4"}


def parse_url(u: str) -> HostRef | None:
    u = u.rstrip(".,'\")]}")
    try:
        parts = urlsplit(u)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if not host or "[redacted" in host or "$" in host or "{" in host:
        return None
    return HostRef(host.lower(), port, u[:500])


@lru_cache(maxsize=8192)
def urls_in(text: str) -> tuple[HostRef, ...]:
    """URLs and /dev/tcp/H/P endpoints anywhere in `text` (intent left as 'fetch': callers set it)."""
    out: list[HostRef] = []
    for u in URL.findall(text):
        h = parse_url(u)
        if h is not None:
            out.append(h)
    for m in DEV_TCP.finditer(text):
        out.append(HostRef(m.group(1).strip("[]").lower(), int(m.group(2)), None, "connect"))
    return tuple(out)


def with_intent(hosts: tuple[HostRef, ...] | list[HostRef], intent: str) -> list[HostRef]:
    return [HostRef(h.host, h.port, h.url, "connect" if h.url is None and intent == "fetch" else intent)
            for h in hosts]


def bare_host(arg: str) -> HostRef | None:
    """`example.com`, `example.com:8080/path`, `user@host`, `host:path` (scp) -> HostRef."""
    a = arg.strip("'\"").lower()
    if not a or a.startswith("-") or "://" in a or "$" in a:
        return None
    m = USER_AT_HOST.match(a)
    if m:
        return HostRef(m.group(1), int(m.group(2)) if m.group(2) else None, None, "connect")
    hostpart = a.split("/", 1)[0]
    host, _, port = hostpart.partition(":")
    if HOSTLIKE.match(host) and not _FILE_EXT.search(host):
        return HostRef(host, int(port) if port.isdigit() else None, None, "connect")
    return None


def command_hosts(head: str, args: list[str]) -> list[HostRef]:
    """Hosts one simple command names, with its intent."""
    joined = " ".join(args)
    if head in DOWNLOADERS:
        return _downloader_hosts(head, args)
    if head in CONNECTORS:
        out = with_intent(urls_in(joined), "connect")
        for i, a in enumerate(args):
            h = bare_host(a)
            if h is not None:
                port = h.port
                if port is None and head in ("nc", "ncat", "netcat", "telnet") and i + 1 < len(args) and args[i + 1].isdigit():
                    port = int(args[i + 1])
                out.append(HostRef(h.host, port, None, "connect"))
            elif head == "socat" and re.match(r"^(?:tcp[46]?|udp[46]?|openssl|ssl)(?:-connect)?:", a, re.I):
                parts = a.split(":")
                if len(parts) >= 3 and HOSTLIKE.match(parts[1].lower().split(",")[0]):
                    port = parts[2].split(",")[0]
                    out.append(HostRef(parts[1].lower(), int(port) if port.isdigit() else None, None, "connect"))
            elif head == "openssl" and a.count(":") == 1 and i > 0 and args[i - 1] == "-connect":
                host, port = a.split(":")
                if HOSTLIKE.match(host.lower()):
                    out.append(HostRef(host.lower(), int(port) if port.isdigit() else None, None, "connect"))
        return out
    if head == "gh":  # GitHub's CLI talks to api.github.com; URLs in titles and bodies are text
        sub = [a for a in args if not a.startswith("-")][:2]
        fetches = sub[:1] == ["api"] or sub in (["repo", "clone"], ["release", "download"], ["gist", "view"])
        return with_intent(urls_in(joined), "fetch" if fetches else "mention")
    if head == "git":
        sub = next((a for a in args if not a.startswith("-")), "")
        if sub in ("clone", "fetch", "pull", "push", "ls-remote", "remote", "submodule", "archive"):
            out = with_intent(urls_in(joined), "fetch")
            out += [h for a in args if (h := bare_host(a)) is not None and "@" in a]
            return out
        return with_intent(urls_in(joined), "mention")
    if head in ("docker", "podman", "nerdctl", "skopeo", "crane", "oras"):
        return _image_hosts(args) + with_intent(urls_in(joined), "arg")
    if head in TEXT_COMMANDS:
        return with_intent(urls_in(joined), "mention")
    return with_intent(urls_in(joined), "arg")


def _downloader_hosts(head: str, args: list[str]) -> list[HostRef]:
    out: list[HostRef] = []
    skip = False
    for i, a in enumerate(args):
        if skip:
            skip = False
            if args[i - 1] in PROXY_OPTS:
                h = parse_url(a if "://" in a else "http://" + a)
                if h is not None:
                    out.append(HostRef(h.host, h.port, h.url, "connect"))
            continue
        if a.startswith("-"):
            if a == "--url":
                continue  # the next word is the URL: taken as positional
            opts = WGET_VALUE_OPTS if head == "wget" else CURL_VALUE_OPTS
            if a in opts or (len(a) > 2 and a[1] != "-" and a.isascii() and f"-{a[-1]}" in opts):
                skip = True  # `-o FILE`, and combined short flags ending in one: `-fsSLo FILE`
            continue
        if "://" in a:
            out += with_intent(urls_in(a), "fetch")
        else:
            h = bare_host(a)
            if h is not None:
                out.append(HostRef(h.host, h.port, None, "fetch"))
    return out


def _image_hosts(args: list[str]) -> list[HostRef]:
    """`docker pull ghcr.io/org/img:tag`, `docker login registry.example:5000`: the registry host."""
    sub = next((a for a in args if not a.startswith("-")), "")
    if sub not in ("pull", "run", "push", "login", "create", "copy", "inspect") and "build" not in args:
        return []
    out = []
    for a in args:
        if a.startswith("-") or a == sub:
            continue
        first = a.split("/", 1)[0].lower()
        host, _, port = first.partition(":")
        if ("/" in a or sub == "login") and "." in host and HOSTLIKE.match(host):
            out.append(HostRef(host, int(port) if port.isdigit() else None, None, "fetch"))
    return out
