"""What a tool call would do: indicators, package installs and hosts, each with where it was found.

The evidence-strength model lives here, once, for every caller (the analyzer's enrichment, the
proxy's policy gate): an *execution* indicator is one that runs code or moves secrets the moment the
agent executes the call (download-and-execute, decode-and-execute, reverse shell, credential read
plus upload, persistence, an install from a URL or an index that is not a known package source).
Everything else (a credential read whose output only returns to the model, an environment dump, a
host named as a fetch target) is weaker evidence that needs something more to become an attack.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

# Indicator kinds (tool_call_indicators.kind).
DOWNLOAD_EXEC = "download_exec"  # a download piped or handed to an interpreter, or downloaded then run
BASE64_EXEC = "base64_exec"  # decoded (base64/xxd/gzip/...) then executed
REVERSE_SHELL = "reverse_shell"
CREDENTIAL_EXFIL = "credential_exfil"  # a credential (file, env) read and sent over the network in one call
SECRET_SENT = "secret_sent"  # a secret variable in a request's URL or body (host: where it goes)
PERSISTENCE = "persistence"  # cron, shell rc with a payload, systemd units, ssh authorized_keys, ld.so.preload
INSTALL_URL = "install_url"  # pip/npm/cargo/go install from a URL (host: the URL's host)
CUSTOM_INDEX = "custom_index"  # install from / configure a package index (host: the index's host)
CREDENTIAL_READ = "credential_read"  # reads a credential store (cloud keys, SSH private keys, wallets, ...)
ENV_FILE_READ = "env_file_read"  # reads a .env file (often holds API keys; commonly read while debugging)
ENV_DUMP = "env_dump"  # prints the whole environment (output returns to the model, and its router)
RUNS_FILE = "runs_file"  # runs a local script or program by path (detail: the path); evidence only together
                         # with an earlier call that wrote that file with a payload (ac1-written-then-run)

ALWAYS_EXECUTION = frozenset({DOWNLOAD_EXEC, BASE64_EXEC, REVERSE_SHELL, CREDENTIAL_EXFIL, PERSISTENCE})
SOURCE_DEPENDENT = frozenset({INSTALL_URL, CUSTOM_INDEX})  # execution unless the host is a known source
DESTINATION_DEPENDENT = frozenset({SECRET_SENT})  # execution unless it goes to a known (allowlisted) host
SECRET_READS = frozenset({CREDENTIAL_READ, ENV_FILE_READ, ENV_DUMP})

# Where a piece of text sat in the tool call (tool_call_indicators.context).
COMMAND = "command"  # would run when the agent executes the call
WRITTEN = "written"  # inside file content the call writes (write_file, heredoc into a file, echo > file)
ENCODED = "encoded"  # inside an encoded blob that nothing in the call decodes and runs

# What the call would do with a host (tool_call_hosts.intent). EGRESS_INTENTS are reasons to expect
# the agent, or a child it starts, to contact the host; the others are only text.
EGRESS_INTENTS = frozenset({"fetch", "connect", "install", "index", "arg"})


@dataclass(frozen=True)
class Indicator:
    kind: str
    detail: str  # the matching command fragment (as redacted as the input)
    host: str | None = None  # the remote host involved, when one is named
    context: str = COMMAND
    url: str | None = None  # install_url / custom_index: the package source
    path: str | None = None  # context 'written': the file the text was written to


@dataclass(frozen=True)
class Install:
    manager: str  # pip | npm | cargo | go
    package: str  # canonical name (typosquat-checked)
    spec: str  # as written


@dataclass(frozen=True)
class HostRef:
    host: str
    port: int | None
    url: str | None
    intent: str = "fetch"  # fetch | connect | install | index | arg | mention | written


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
        """One indicator per (kind, host, detail, context), one install per package, one host per
        (host, port), keeping the strongest intent a host was named with."""
        out = Analysis()
        seen_i: set = set()
        for i in self.indicators:
            k = (i.kind, i.host, i.detail, i.context)
            if k not in seen_i:
                seen_i.add(k)
                out.indicators.append(i)
        seen_p: set = set()
        for p in self.installs:
            k = (p.manager, p.package)
            if k not in seen_p:
                seen_p.add(k)
                out.installs.append(p)
        best: dict[tuple, HostRef] = {}
        for h in self.hosts:
            k = (h.host, h.port)
            old = best.get(k)
            if old is None or _INTENT_RANK[h.intent] > _INTENT_RANK[old.intent] or (
                    old.url is None and h.url is not None and _INTENT_RANK[h.intent] == _INTENT_RANK[old.intent]):
                best[k] = h
        out.hosts = list(best.values())
        return out


_INTENT_RANK = {"written": 0, "mention": 1, "arg": 2, "fetch": 3, "index": 4, "install": 4, "connect": 3}


def is_execution(ind: Indicator, known_source: Callable[[str, str | None], bool] | None = None,
                 known_host: Callable[[str], bool] | None = None) -> bool:
    """Is this indicator execution-strength evidence? `known_source(host, url)` says whether a package
    source is one the user trusts (a registry, a listed repository): installs from anywhere else run
    foreign code at install time. `known_host(host)` says whether a destination is expected (the
    allowlist, providers): a secret variable sent anywhere else is exfiltration, sent to its API
    (`?key=$MAPS_API_KEY` to the maps API) it is ordinary use."""
    if ind.context != COMMAND:
        return False
    if ind.kind in ALWAYS_EXECUTION:
        return True
    if ind.kind in SOURCE_DEPENDENT:
        return not (ind.host and known_source is not None and known_source(ind.host, ind.url))
    if ind.kind in DESTINATION_DEPENDENT:
        return not (ind.host and known_host is not None and known_host(ind.host))
    return False
