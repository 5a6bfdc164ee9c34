"""Go crypto/tls plaintext uprobe targets: where to probe `(*Conn).Write`/`(*Conn).Read` in a Go binary.

Go does not use libssl: an agent written in Go (crush, the Go SDKs) encrypts in `crypto/tls`,
compiled into its binary. Its plaintext passes through two methods whose Go signatures have not
changed since Go 1.0, `func (c *Conn) Write(b []byte) (int, error)` and `Read(b []byte) (int, error)`.
Since Go 1.17 (amd64) they use Go's register ABI: on entry RAX = c, RBX = &b[0], RCX = len(b);
on return RAX = n; R14 always holds the current goroutine (`g`).

Why uprobes at each RET instruction instead of uretprobes: a uretprobe replaces the return address
on the stack with a trampoline, and Go copies goroutine stacks when they grow (and its unwinder,
GC and panics walk them): the hijacked return address breaks that and crashes the program. So the
entry probe saves (conn, buf, len) keyed by the goroutine, and a plain uprobe on every RET inside
the function reads n from RAX. The RET addresses come from disassembling the function's bytes with
capstone (exact instruction boundaries: a byte search for 0xC3 would hit immediates and
displacements; in-process and byte-exact on a known [entry, end) range, where objdump would be a
subprocess per binary whose text output we would parse, and binutils is not on minimal hosts).

Supported: linux/amd64 binaries built by Go >= 1.17 (register ABI) whose functions can be found:
by `.symtab`, or for stripped binaries by `.gopclntab` in the Go 1.18+ layout
(`collector.ebpf.gopclntab`). Everything else is refused with a reason (`GoRefused`), which the
loader logs and counts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from collector.ebpf.gopclntab import GoBinary, GoBinaryError, go_binary

WRITE = "crypto/tls.(*Conn).Write"
READ = "crypto/tls.(*Conn).Read"
MIN_VERSION = (1, 17)  # the register ABI on amd64


class GoRefused(Exception):
    """A Go binary with crypto/tls that the Go probes cannot read (version, ABI, architecture, layout)."""


@dataclass
class GoTlsFunc:
    name: str
    entry: int  # virtual address (the loader turns it into the file offset a uprobe is placed by)
    rets: list[int]  # virtual addresses of every RET instruction inside the function


@dataclass
class GoTlsTarget:
    path: str
    go_version: str
    stripped: bool
    write: GoTlsFunc
    read: GoTlsFunc

    @property
    def probes(self) -> int:
        return 2 + len(self.write.rets) + len(self.read.rets)


def parse_version(v: str | None) -> tuple[int, int] | None:
    m = re.match(r"go(\d+)\.(\d+)", v or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def ret_addresses(code: bytes, entry: int, arch: str = "amd64") -> list[int]:
    """Addresses of the RET instructions in a function's machine code (linear sweep: Go puts no data
    inside functions on amd64; jump tables live in rodata)."""
    import capstone  # pinned in pyproject; imported here so non-Go paths never load it

    if arch != "amd64":
        raise GoRefused(f"architecture {arch}: only amd64 has Go-ABI probes")
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    rets = [addr for addr, _size, mnemonic, _ops in md.disasm_lite(code, entry) if mnemonic in ("ret", "retq")]
    return rets


def inspect(path: str | os.PathLike) -> GoTlsTarget | None:
    """The Go TLS probe target in `path`; None when it is not a Go binary or has no crypto/tls.
    Raises GoRefused when it is one we must not probe."""
    g = go_binary(path)
    if g is None:
        return None
    with g:
        return _inspect(g)


def _inspect(g: GoBinary) -> GoTlsTarget | None:
    version, modinfo = g.buildinfo()
    try:
        funcs = g.functions([WRITE, READ])
    except GoBinaryError as exc:  # stripped, and a pclntab layout we do not read
        if _has_tls_name(g):
            raise GoRefused(f"{g.path} ({version or 'unknown Go version'}, stripped): {exc}") from None
        return None
    if WRITE not in funcs or READ not in funcs:
        return None  # a Go program without crypto/tls (or with the methods dead-code eliminated)
    ver = parse_version(version)
    if ver is None:
        # no buildinfo (Go < 1.13 or damaged): a 1.18+ pclntab still proves the register ABI
        if g.pclntab_magic() not in (0xFFFFFFF0, 0xFFFFFFF1):
            raise GoRefused(f"{g.path}: Go version unknown (no buildinfo) and pclntab older than Go 1.18")
        version = "go1.18+ (pclntab)"
    elif ver < MIN_VERSION:
        raise GoRefused(f"{g.path}: {version} uses the stack ABI (register ABI from go1.17 on amd64)")
    if g.arch != "amd64":
        raise GoRefused(f"{g.path}: {version} for {g.arch}: only amd64 has Go-ABI probes")
    if re.search(r"GOEXPERIMENT=[^\n]*noregabi", modinfo):
        raise GoRefused(f"{g.path}: built with GOEXPERIMENT=noregabi (stack ABI)")
    out = {}
    for name, fn in funcs.items():
        rets = ret_addresses(g.code(fn), fn.entry, g.arch)
        if not rets:
            raise GoRefused(f"{g.path}: no RET found in {name} ({fn.size} bytes)")
        out[name] = GoTlsFunc(name, fn.entry, rets)
    return GoTlsTarget(g.path, version or "", not g.has_symtab, out[WRITE], out[READ])


def _has_tls_name(g: GoBinary) -> bool:
    s = g.sections.get(".gopclntab")
    return bool(s) and g._m.find(WRITE.encode(), s.offset, s.offset + s.size) >= 0


def go_tls_targets(paths: list[str]) -> tuple[list[GoTlsTarget], dict[str, str]]:
    """Inspect each path: (targets to probe, {path: refusal reason})."""
    targets: list[GoTlsTarget] = []
    refused: dict[str, str] = {}
    for p in paths:
        try:
            t = inspect(p)
        except GoRefused as exc:
            refused[p] = str(exc)
            continue
        except (OSError, GoBinaryError, ValueError) as exc:
            refused[p] = f"{p}: unreadable Go binary: {exc}"
            continue
        if t is not None:
            targets.append(t)
    return targets, refused


def _raise_nofile() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard))
        except (ValueError, OSError):
            pass


class GoAttacher:
    """Attaches the Go TLS probes (probes.bpf.c `go_tls_*`, loaded with the rest) to Go binaries,
    each real file once: at start (running processes' executables, `--ssl-lib` paths) and whenever a
    new executable is exec'd (`execs`). Uprobes live on the file, so every process running it, now or
    later, is covered. Refusals are logged once per file and counted."""

    FUNCS = ("go_tls_write_enter", "go_tls_read_enter", "go_tls_return")

    def __init__(self, attach: Callable[..., None], log: Callable[[str], None] | None = None,
                 max_binaries: int = 128):
        # attach(path, vaddr, program_name): collector.ebpf.loader.Probes.attach_uprobe
        self.attach = attach
        self.log = log or (lambda _m: None)
        self.max_binaries = max_binaries
        _raise_nofile()  # each uprobe is a perf-event fd (~17 per binary): a 1024 soft limit is too low
        self._seen: dict[tuple[int, int, int], str] = {}  # (dev, ino, mtime_ns) -> status
        self.attached: list[GoTlsTarget] = []
        self.counts = {"go_tls_binaries": 0, "go_tls_uprobes": 0, "go_tls_refused": 0, "go_tls_attach_errors": 0}

    def add(self, path: str) -> str:
        """Inspect and probe one file; returns its status ('attached', 'not-go-tls', 'refused', ...)."""
        try:
            st = os.stat(path)
        except OSError:
            return "missing"
        key = (st.st_dev, st.st_ino, st.st_mtime_ns)
        if key in self._seen:
            return self._seen[key]
        if len(self._seen) > 100_000:
            self._seen.clear()
        status = self._seen[key] = self._add(os.path.realpath(path))
        return status

    def _add(self, path: str) -> str:
        try:
            t = inspect(path)
        except GoRefused as exc:
            self.counts["go_tls_refused"] += 1
            self.log(f"Go TLS uprobes refused: {exc}")
            return "refused"
        except (OSError, GoBinaryError, ValueError) as exc:
            self.counts["go_tls_refused"] += 1
            self.log(f"Go TLS uprobes refused: {path}: unreadable Go binary ({exc})")
            return "refused"
        if t is None:
            return "not-go-tls"
        if len(self.attached) >= self.max_binaries:
            self.counts["go_tls_refused"] += 1
            self.log(f"Go TLS uprobes refused: {path}: already {self.max_binaries} Go binaries probed")
            return "refused"
        done = 0
        try:
            for fn, enter in ((t.write, "go_tls_write_enter"), (t.read, "go_tls_read_enter")):
                self.attach(path, fn.entry, enter)
                done += 1
                for ret in fn.rets:
                    self.attach(path, ret, "go_tls_return")
                    done += 1
        except Exception as exc:  # the file changed under us, or the uprobe limit: keep what attached
            self.counts["go_tls_attach_errors"] += 1
            self.log(f"Go TLS uprobes on {path}: attach failed after {done} probes: {exc}")
        self.attached.append(t)
        self.counts["go_tls_binaries"] += 1
        self.counts["go_tls_uprobes"] += done
        kind = "stripped, pclntab" if t.stripped else "symtab"
        self.log(f"Go TLS uprobes attached: {path} ({t.go_version}, {kind}, {done} probes)")
        return "attached"

    def execs(self, records: list[bytes]) -> None:
        """New executables from T_EXEC records: probe the Go ones (their later TLS calls are seen;
        calls made before the drain that reports the exec are not)."""
        from collector.ebpf import events as ev

        arr = ev.stack(records, ev.EXEC)
        for tgid, fname in set(zip(arr["tgid"].tolist(), arr["filename"].tolist(), strict=True)):
            try:
                path = os.readlink(f"/proc/{tgid}/exe")
            except OSError:
                path = fname.split(b"\0", 1)[0].decode(errors="replace")
                if not path.startswith("/"):
                    continue
            self.add(path)
