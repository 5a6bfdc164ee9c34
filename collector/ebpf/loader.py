"""Compile and attach the probes with bcc; drain their ring buffer in bulk.

Probe choice (why these and nothing else): see docs/collector-and-ebpf.md ("eBPF design"). In short,
only tracepoints and uprobes are used (kprobes/fentry are absent on some kernels), struct offsets
come from BTF (collector.ebpf.btf), and every record goes through one ring buffer submitted without
wakeups, drained by `Probes.drain()` on the caller's timer.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from collector.ebpf.btf import probe_offsets
from collector.ebpf.ringbuf import RingReader

SOURCE = Path(__file__).with_name("probes.bpf.c")
TRACEFS = Path("/sys/kernel/tracing")

# counter index -> name (see probes.bpf.c C_*)
COUNTERS = {
    0: "conn_seen",
    1: "conn_lost",
    2: "exec_lost",
    3: "ssl_lost",
    4: "ssl_truncated",
    5: "socket_map_full",
    6: "dns_lost",
    7: "exec_seen",
    8: "ssl_seen",
    9: "dns_seen",
    10: "exit_lost",
    11: "conn_unconnected",
    12: "dnsq_seen",
    13: "dnsq_lost",
}
SSL_FUNCS = [
    ("SSL_write", "ssl_write_enter"),
    ("SSL_write_ex", "ssl_write_ex_enter"),
    ("SSL_read", "ssl_read_enter"),
    ("SSL_read_ex", "ssl_read_ex_enter"),
]


class ProbeError(Exception):
    """eBPF is unavailable here (not root, no bcc, no BTF, or the program failed to load)."""


def ensure_tracefs() -> None:
    """bcc attaches tracepoints through tracefs; minimal hosts and containers may not mount it."""
    if (TRACEFS / "events").is_dir():
        return
    r = subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], capture_output=True, text=True)
    if r.returncode != 0 or not (TRACEFS / "events").is_dir():
        raise ProbeError(f"tracefs is not mounted at {TRACEFS} and mounting it failed: {r.stderr.strip()}")


def find_library(name: str) -> str | None:
    """Absolute path of a shared library as the dynamic loader would find it (libssl, libc)."""
    soname = ctypes.util.find_library(name)
    if not soname:
        return None
    for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
              "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"):
        p = Path(d) / soname
        if p.exists():
            return str(p.resolve())
    return soname


@dataclass
class ProbeOptions:
    ssl: bool = True  # libssl plaintext uprobes
    dns: bool = True  # getaddrinfo uprobe
    dns_send: bool = True  # syscall tracepoints reading DNS queries of processes with their own resolver
    ssl_libraries: list[str] = field(default_factory=list)  # extra binaries exporting SSL_* (e.g. node)
    discover_ssl: bool = True  # also probe binaries found defining SSL_* (collector.ebpf.targets)
    ringbuf_pages: int = 16384  # 64 MiB: ~350k connection records, seconds of slack if the drain stalls
    # 4 KiB chunks of plaintext per SSL call, the rest counted as truncated: an SDK writes a request
    # body in one SSL_write, and agents send prompts of hundreds of KiB (whole conversations), so 64
    # (256 KiB) where the kernel takes it. The copy loop is unrolled: 256 chunks exceed the verifier's
    # size limit (E2BIG); without CAP_SYS_ADMIN (the systemd unit's capabilities) attaching the
    # uprobes failed intermittently with 64 and 128 (perf_event_open: EINVAL; cause not found), never
    # with 16, so there the limit stays 16 (64 KiB): see `ssl_chunks`
    ssl_max_chunks: int = 64
    go_tls: bool = True  # Go crypto/tls uprobes on Go binaries (running, exec'd, or in ssl_libraries)
    log: Callable[[str], None] | None = None  # attach/refusal messages (Go binaries found later)
    netns_inum: int | None = None  # scope: only this network namespace (nsfs inode), filtered in the kernel
    cgroup_id: int | None = None  # scope: only tasks in this cgroup v2 (its id) or below it
    cgroup_level: int = 0  # depth of that cgroup under the cgroup2 root


CAP_SYS_ADMIN = 21
SSL_CHUNKS_WITHOUT_SYS_ADMIN = 16


def ssl_chunks(wanted: int) -> int:
    """The per-call plaintext limit (in 4 KiB chunks) this process can load: `wanted` with
    CAP_SYS_ADMIN, at most 16 without it (see ProbeOptions.ssl_max_chunks)."""
    try:
        status = Path("/proc/self/status").read_text()
        eff = int(next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff:")), 16)
    except (OSError, StopIteration, ValueError):
        eff = 0
    return wanted if eff & (1 << CAP_SYS_ADMIN) else min(wanted, SSL_CHUNKS_WITHOUT_SYS_ADMIN)


class Probes:
    """The loaded BPF program. `drain()` returns raw records grouped by type byte."""

    def __init__(self, options: ProbeOptions | None = None):
        self.options = options or ProbeOptions()
        if os.geteuid() != 0:
            raise ProbeError("eBPF needs root (or CAP_BPF+CAP_PERFMON)")
        try:
            from bcc import BPF  # Debian's python3-bpfcc, linked into the venv by deploy/deps.sh
        except ImportError as exc:
            raise ProbeError(f"bcc is not importable ({exc}); run deploy/deps.sh") from None
        ensure_tracefs()
        cflags = [f"-D{k}={v}" for k, v in probe_offsets().items()]
        cflags += [
            f"-DRINGBUF_PAGES={self.options.ringbuf_pages}",
            f"-DSSL_MAX_CHUNKS={ssl_chunks(self.options.ssl_max_chunks)}",
            "-Wno-unused-value",
            "-Wno-pointer-sign",
            "-Wno-compare-distinct-pointer-types",
        ]
        if not self.options.dns_send:
            cflags.append("-DRW_NO_DNS_SEND=1")
        if self.options.netns_inum is not None:
            cflags.append(f"-DSCOPE_NETNS={int(self.options.netns_inum)}U")
        if self.options.cgroup_id is not None:
            cflags += [f"-DSCOPE_CGROUP={int(self.options.cgroup_id)}ULL",
                       f"-DSCOPE_CGROUP_LEVEL={int(self.options.cgroup_level)}"]
        try:
            self.bpf = BPF(src_file=str(SOURCE).encode(), cflags=cflags)
        except Exception as exc:
            raise ProbeError(f"the BPF program failed to load: {exc}") from None
        self.attached: list[str] = ["tracepoints" if self.options.dns_send else "tracepoints (no DNS send-call probes)"]
        if self.options.dns:
            libc = find_library("c")
            if libc:
                self.bpf.attach_uprobe(name=libc.encode(), sym=b"getaddrinfo", fn_name=b"gai_enter")
                self.bpf.attach_uretprobe(name=libc.encode(), sym=b"getaddrinfo", fn_name=b"gai_return")
                self.attached.append(f"getaddrinfo@{libc}")
        if self.options.ssl:
            from collector.ebpf.targets import candidate_paths, ssl_binaries

            # libssl, configured binaries, and those found defining SSL_* themselves (node, static
            # Pythons); each real file once: two uprobes on one address would duplicate every record
            candidates = candidate_paths() if self.options.discover_ssl else []
            found = [t.path for t in ssl_binaries(candidates)]
            libs: list[str] = []
            for p in [find_library("ssl"), *self.options.ssl_libraries, *found]:
                if p and os.path.realpath(p) not in libs:
                    libs.append(os.path.realpath(p))
            for lib in libs:
                n = self._attach_ssl(lib)
                if n:
                    self.attached.append(f"ssl({n})@{lib}")
        self.go = None
        if self.options.ssl and self.options.go_tls:
            from collector.ebpf.go_tls import GoAttacher

            # Go binaries among running processes and --ssl-lib paths now; exec'd ones in drain()
            self.go = GoAttacher(self.bpf, self.options.log)
            for p in [*self.options.ssl_libraries, *candidates]:
                if self.go.add(p) == "attached":
                    self.attached.append(f"go-tls({self.go.attached[-1].probes})@{os.path.realpath(p)}")
        # read from the ring buffer's mapping directly (collector.ebpf.ringbuf), not through bcc's
        # per-record ctypes callback
        self._ring = RingReader(self.bpf[b"events"].map_fd, self.options.ringbuf_pages * mmap.PAGESIZE)
        self._socks = self.bpf[b"socks"]

    def _attach_ssl(self, lib: str) -> int:
        from bcc import BPF

        for _sym, fn in SSL_FUNCS:  # a verifier rejection is a bug: surface it, don't skip silently
            self.bpf.load_func(fn.encode(), BPF.KPROBE)
        self.bpf.load_func(b"ssl_return_probe", BPF.KPROBE)
        n = 0
        for sym, fn in SSL_FUNCS:
            try:
                self.bpf.attach_uprobe(name=lib.encode(), sym=sym.encode(), fn_name=fn.encode())
                self.bpf.attach_uretprobe(name=lib.encode(), sym=sym.encode(), fn_name=b"ssl_return_probe")
                n += 1
            except Exception:  # symbol absent in this build (e.g. no _ex before OpenSSL 1.1.1)
                continue
        return n

    def drain(self) -> dict[int, list[bytes]]:
        """Everything the kernel submitted so far, as raw records keyed by record type."""
        out: dict[int, list[bytes]] = {}
        self._ring.consume(out)
        if self.go is not None and out.get(2):  # T_EXEC: a Go agent started after the collector
            self.go.execs(out[2])
        return out

    def socket(self, sk: int) -> bytes | None:
        """The `socks` entry of a socket still open (struct sock_state, events.SOCK_STATE), None when
        the probes do not track it (opened before they loaded, already destroyed, the table full)."""
        table = self._socks
        try:
            leaf = table[table.Key(sk)]
        except KeyError:
            return None
        return ctypes.string_at(ctypes.addressof(leaf), ctypes.sizeof(leaf))

    def attach_counters(self) -> dict[str, int]:
        """Userspace attach counters (Go binaries probed, uprobes, refusals)."""
        return dict(self.go.counts) if self.go is not None else {}

    def counters(self) -> dict[str, int]:
        """Kernel-side counters (summed over CPUs): events seen and events lost."""
        table = self.bpf[b"counters"]
        out: dict[str, int] = {}
        for idx, name in COUNTERS.items():
            vals = table[ctypes.c_int(idx)]
            out[name] = int(sum(vals))
        return out

    def close(self) -> None:
        self._ring.close()
        self.bpf.cleanup()


