"""Compile the probes (in a child process, with bcc), attach them, drain their ring buffer in bulk.

Probe choice (why these and nothing else): see docs/collector-and-ebpf.md ("eBPF design"). In short,
only tracepoints and uprobes are used (kprobes/fentry are absent on some kernels), struct offsets
come from BTF (collector.ebpf.btf), and every record goes through one ring buffer submitted without
wakeups, drained by `Probes.drain()` on the caller's timer.

Memory: bcc compiles with LLVM in-process and what that leaves resident (~230 MB) would stay for the
collector's life, so the compile runs in a short-lived child (collector.ebpf.build) that hands the
loaded programs and maps over as file descriptors; this process attaches them with a few raw
syscalls (collector.ebpf.bpfsys) and never imports bcc.
"""

from __future__ import annotations

import ctypes.util
import errno
import importlib.util
import json
import mmap
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from collector.ebpf import bpfsys
from collector.ebpf.ringbuf import RingReader

SOURCE = Path(__file__).with_name("probes.bpf.c")
TRACEFS = Path("/sys/kernel/tracing")
BUILD_TIMEOUT_S = 900  # bcc's compile takes ~5 s of CPU; on a loaded host minutes of wall time
MAPS = ("events", "counters", "socks")  # the maps this process reads
BCC_STRAY_REF_CTR = 6  # the ref_ctr_offset uprobes attached by Debian's python3-bpfcc 0.26 carry here

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
    """Tracepoints are attached by their tracefs ids; minimal hosts and containers may not mount it."""
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
    dns_send: bool = True  # read DNS queries of processes with their own resolver at each UDP send (no syscall probes)
    ssl_libraries: list[str] = field(default_factory=list)  # extra binaries exporting SSL_* (e.g. node)
    discover_ssl: bool = True  # also probe binaries found defining SSL_* (collector.ebpf.targets)
    ringbuf_pages: int = 8192  # 32 MiB: ~175k connection records, seconds of slack if the drain stalls
    # 4 KiB chunks of plaintext per SSL call, the rest counted as truncated: an SDK writes a request
    # body in one SSL_write, and agents send prompts of hundreds of KiB (whole conversations), so 64
    # (256 KiB). The copy loop is unrolled: 256 chunks exceed the verifier's size limit (E2BIG). Under
    # the collector unit's capabilities (no CAP_SYS_ADMIN) this was once held to 16 after attaching
    # failed now and then with EINVAL: that was bcc's stray USDT semaphore offset (Probes._attach_pair),
    # and 64 chunks loaded and attached 12 times of 12 under those capabilities since (docs/collector-and-ebpf.md)
    ssl_max_chunks: int = 64
    go_tls: bool = True  # Go crypto/tls uprobes on Go binaries (running, exec'd, or in ssl_libraries)
    log: Callable[[str], None] | None = None  # attach/refusal messages (Go binaries found later)
    netns_inum: int | None = None  # scope: only this network namespace (nsfs inode), filtered in the kernel
    cgroup_id: int | None = None  # scope: only tasks in this cgroup v2 (its id) or below it
    cgroup_level: int = 0  # depth of that cgroup under the cgroup2 root


def build_objects(cflags: list[str], maps: tuple[str, ...] = MAPS, timeout: float = BUILD_TIMEOUT_S,
                  btf_offsets: bool = True) -> tuple[dict[str, tuple[int, str]], dict[str, int]]:
    """Compile and load probes.bpf.c in a child process (collector.ebpf.build), with the kernel's
    struct offsets (collector.ebpf.btf, read there) added to `cflags` when `btf_offsets`; returns the
    loaded programs ({name: (fd, kind)}) and maps ({name: fd}), now owned by this process."""
    if importlib.util.find_spec("bcc") is None:
        raise ProbeError("bcc is not importable; run deploy/deps.sh")
    here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with here, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen([sys.executable, "-m", "collector.ebpf.build", str(there.fileno())],
                                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err,
                                    pass_fds=(there.fileno(),), cwd=Path(__file__).resolve().parents[2])
        finally:
            there.close()
        assert proc.stdin is not None
        proc.stdin.write(json.dumps({"source": str(SOURCE), "cflags": cflags, "btf_offsets": btf_offsets,
                                    "maps": list(maps)}).encode())
        proc.stdin.close()
        here.settimeout(timeout)
        try:
            msg, fds, _flags, _addr = socket.recv_fds(here, 1 << 20, 253)
        except TimeoutError:
            proc.kill()
            proc.wait()
            raise ProbeError(f"compiling the BPF program took more than {timeout:.0f} s") from None
        proc.wait()
        header = json.loads(msg) if msg else {"error": f"the compiler process exited with status {proc.returncode}"}
        if "error" in header:
            for fd in fds:
                os.close(fd)
            err.seek(0)
            detail = err.read().decode(errors="replace").strip().splitlines()[-20:]
            raise ProbeError(f"the BPF program failed to load: {header['error']}"
                             + ("\n" + "\n".join(detail) if detail else ""))
    programs = {name: (fds[p["index"]], p["kind"]) for name, p in header["programs"].items()}
    return programs, {name: fds[i] for name, i in header["maps"].items()}


def uprobe_targets(path: str, names: list[str]) -> dict[str, int]:
    """{function name: file offset} of the functions among `names` that ELF file `path` defines
    (a uprobe is placed by file offset; a symbol's value is a virtual address)."""
    from collector.ebpf.elf import ElfFile

    elf = ElfFile.open(path)
    if elf is None:
        return {}
    with elf:
        try:
            syms = elf.symbols(names)
        except ValueError:
            return {}
        out = {}
        for n, sym in syms.items():
            off = elf.file_offset(sym.value) if sym.value else None
            if off is not None:
                out[n] = off
        return out


def file_offset(path: str, vaddr: int) -> int:
    """The file offset of virtual address `vaddr` in ELF file `path` (what a uprobe is placed by)."""
    from collector.ebpf.elf import ElfFile

    elf = ElfFile.open(path)
    if elf is None:
        raise ProbeError(f"{path}: not an ELF64 file")
    with elf:
        off = elf.file_offset(vaddr)
    if off is None:
        raise ProbeError(f"{path}: address {vaddr:#x} is in no section of the file")
    return off


class Probes:
    """The loaded BPF program. `drain()` returns raw records grouped by type byte.

    `programs` maps each BPF function name to its program fd, `maps` each map name to its fd;
    `links` holds the tracepoint attachments ({(kind, tracepoint): fd}, closed to detach), which
    `detach`/`attach` toggle (bench/live_probe_cost.py measures the probes that way)."""

    def __init__(self, options: ProbeOptions | None = None):
        self.options = options or ProbeOptions()
        if os.geteuid() != 0:
            raise ProbeError("eBPF needs root (or CAP_BPF+CAP_PERFMON)")
        ensure_tracefs()
        cflags = [  # the BTF offsets are added by the compiler child (build_objects)
            f"-DRINGBUF_PAGES={self.options.ringbuf_pages}",
            f"-DSSL_MAX_CHUNKS={int(self.options.ssl_max_chunks)}",
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
        progs, self.maps = build_objects(cflags)
        self.programs = {name: fd for name, (fd, _kind) in progs.items()}
        self.links: dict[tuple[str, str], int] = {}
        self._uprobes: list[int] = []
        self._ring: RingReader | None = None
        self.go = None
        self.attached: list[str] = []
        try:
            key_size, self._sock_size = bpfsys.map_sizes(self.maps["socks"])
            if key_size != 8:
                raise ProbeError(f"the socks map has {key_size}-byte keys, not a u64")
            bpfsys.remove_stale_events()  # tracefs uprobes left by a collector that was killed
            self._attach_all(progs)
        except BaseException:
            self.close()
            raise

    def _attach_all(self, progs: dict[str, tuple[int, str]]) -> None:
        for name, (_fd, kind) in progs.items():
            if kind == "tracepoint":
                self.attach(("tracepoint", name[len("tracepoint__"):].replace("__", ":", 1)))
            elif kind == "raw_tracepoint":
                self.attach(("raw_tracepoint", name[len("raw_tracepoint__"):]))
        self.attached.append("tracepoints" if self.options.dns_send else "tracepoints (no DNS send-call probes)")
        if self.options.dns:
            libc = find_library("c")
            if libc:
                off = uprobe_targets(libc, ["getaddrinfo"]).get("getaddrinfo")
                if off is None:
                    self._log(f"{libc} does not define getaddrinfo: no getaddrinfo probes")
                elif self._attach_pair(libc, off, "getaddrinfo", "gai_enter", "gai_return"):
                    self.attached.append(f"getaddrinfo@{libc}")
        candidates: list[str] = []
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
        if self.options.ssl and self.options.go_tls:
            from collector.ebpf.go_tls import GoAttacher

            # Go binaries among running processes and --ssl-lib paths now; exec'd ones in drain()
            self.go = GoAttacher(self.attach_uprobe, self.options.log)
            for p in [*self.options.ssl_libraries, *candidates]:
                if self.go.add(p) == "attached":
                    self.attached.append(f"go-tls({self.go.attached[-1].probes})@{os.path.realpath(p)}")
        # read from the ring buffer's mapping directly (collector.ebpf.ringbuf)
        self._ring = RingReader(self.maps["events"], self.options.ringbuf_pages * mmap.PAGESIZE)

    # -- attachments ------------------------------------------------------------------------------
    def attach(self, key: tuple[str, str]) -> None:
        """Attach the tracepoint program for `key` = ("tracepoint", "cat:event") or ("raw_tracepoint", name)."""
        kind, tp = key
        if key in self.links:
            return
        try:
            if kind == "tracepoint":
                fd = bpfsys.attach_tracepoint(tp, self.programs["tracepoint__" + tp.replace(":", "__", 1)])
            else:
                fd = bpfsys.raw_tracepoint_open(tp, self.programs["raw_tracepoint__" + tp])
        except OSError as exc:
            raise ProbeError(f"attaching {kind} {tp} failed: {exc}") from None
        self.links[key] = fd

    def detach(self, key: tuple[str, str]) -> None:
        """Detach one tracepoint program (closing the last fd of an attachment ends it)."""
        fd = self.links.pop(key, None)
        if fd is not None:
            os.close(fd)

    def attach_uprobe(self, path: str, vaddr: int, fn: str, retprobe: bool = False) -> None:
        """Probe the function at virtual address `vaddr` of ELF file `path` with program `fn`
        (raises OSError/ProbeError when the kernel or the file refuses)."""
        self._attach_uprobe_at(path, file_offset(path, vaddr), fn, retprobe)

    def _attach_uprobe_at(self, path: str, offset: int, fn: str, retprobe: bool = False) -> None:
        try:
            fd = bpfsys.attach_uprobe(path, offset, self.programs[fn], retprobe=retprobe)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            # another tracer holds this instruction with a USDT semaphore offset: Debian's bcc
            # (python3-bpfcc 0.26) leaves BCC_STRAY_REF_CTR there (see _attach_pair); agreeing with it
            # writes nothing more (the kernel bumps the counter once, when the breakpoint goes in)
            fd = bpfsys.attach_uprobe(path, offset, self.programs[fn], retprobe=retprobe,
                                      ref_ctr_offset=BCC_STRAY_REF_CTR)
        self._uprobes.append(fd)

    def _attach_ssl(self, lib: str) -> int:
        """Entry and return probes on the SSL read/write functions of `lib`: on OpenSSL's internal
        read/write functions where they can be found (a tenth of the cost per call: see
        collector/ebpf/ssl_entry.py), else on the exported ones present in this build."""
        from collector.ebpf.ssl_entry import probe_points

        offs = uprobe_targets(lib, [sym for sym, _fn in SSL_FUNCS])
        n = 0
        for point in probe_points(lib, offs):
            if self._attach_pair(lib, point.offset, point.label, point.program, "ssl_return_probe"):
                n += 1
        return n

    def _attach_pair(self, path: str, offset: int, sym: str, enter: str, ret: str) -> bool:
        """An entry probe and its return probe on one function, both or neither; a refusal is logged
        and leaves that function unprobed rather than failing the rest. EINVAL means another tracer
        holds a uprobe on the same instruction with a different USDT semaphore offset (the kernel
        logs "ref_ctr_offset mismatch"): Debian's python3-bpfcc 0.26 calls libbcc's 7-argument
        bpf_attach_uprobe with 6, so its uprobes carry whatever was on the stack (0x6 on the
        development machine, every time); _attach_uprobe_at retries with that value."""
        try:
            self._attach_uprobe_at(path, offset, enter)
        except OSError as exc:
            self._log(f"uprobe {sym}@{path} refused: {exc}")
            return False
        try:
            self._attach_uprobe_at(path, offset, ret, retprobe=True)
        except OSError as exc:  # an entry probe without its return probe would only leak calls
            bpfsys.detach(self._uprobes.pop())
            self._log(f"uretprobe {sym}@{path} refused: {exc}")
            return False
        return True

    def _log(self, msg: str) -> None:
        if self.options.log is not None:
            self.options.log(msg)

    def program_stats(self) -> dict[str, tuple[int, int]]:
        """{program: (run_time_ns, run_cnt)} while the kernel's BPF statistics are on."""
        return {name: bpfsys.prog_run_stats(fd) for name, fd in self.programs.items()}

    # -- records ----------------------------------------------------------------------------------
    def drain(self, max_bytes: int | None = None) -> dict[int, list[bytes]]:
        """What the kernel submitted so far (about `max_bytes` of the ring at most), as raw records
        keyed by record type; `pending()` says whether more is waiting."""
        out: dict[int, list[bytes]] = {}
        assert self._ring is not None
        self._ring.consume(out, max_bytes)
        if self.go is not None and out.get(2):  # T_EXEC: a Go agent started after the collector
            self.go.execs(out[2])
        return out

    def pending(self) -> int:
        """Bytes in the ring not drained yet."""
        assert self._ring is not None
        return self._ring.pending()

    def socket(self, sk: int) -> bytes | None:
        """The `socks` entry of a socket still open (struct sock_state, events.SOCK_STATE), None when
        the probes do not track it (opened before they loaded, already destroyed, the table full)."""
        return bpfsys.map_lookup(self.maps["socks"], sk.to_bytes(8, "little"), self._sock_size)

    def sockets(self) -> list[int]:
        """The sockets (kernel `struct sock` addresses) the `socks` map holds now."""
        return [int.from_bytes(k, "little") for k in bpfsys.map_keys(self.maps["socks"], 8)]

    def attach_counters(self) -> dict[str, int]:
        """Userspace attach counters (Go binaries probed, uprobes, refusals)."""
        return dict(self.go.counts) if self.go is not None else {}

    def counters(self) -> dict[str, int]:
        """Kernel-side counters (summed over CPUs): events seen and events lost."""
        fd = self.maps["counters"]
        return {name: sum(bpfsys.percpu_array_u64(fd, idx)) for idx, name in COUNTERS.items()}

    def close(self) -> None:
        """Detach everything and release the programs and maps (the kernel frees them with the last fd)."""
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        for fd in self._uprobes:
            bpfsys.detach(fd)  # and a tracefs uprobe event made for it
        for fd in [*self.links.values(), *self.programs.values(), *self.maps.values()]:
            try:
                os.close(fd)
            except OSError:
                pass
        self._uprobes, self.links, self.programs, self.maps = [], {}, {}, {}
