"""The few bpf(2) and perf_event_open(2) calls the collector makes itself, through ctypes.

bcc compiles the probes in a short-lived child process (collector.ebpf.build) and hands over the
loaded programs and maps as file descriptors; the long-running collector never loads bcc or LLVM
(~230 MB of resident memory after a compile). What it still needs from the kernel is small and
stable ABI (include/uapi/linux/bpf.h, perf_event.h): attach a program to a tracepoint, a raw
tracepoint or a uprobe (each attachment lives as long as its fd), and read a per-CPU array map.
The calls are the ones bcc itself makes (`bpf_attach_tracepoint`, `bpf_attach_raw_tracepoint`,
`bpf_attach_uprobe` through the `uprobe` PMU), so the kernel objects are the same.

Also as bcc does, a uprobe the `uprobe` PMU refuses (EACCES/EPERM) is made a second way: a tracefs
uprobe event (`uprobe_events`), opened as a tracepoint. The PMU wants more than CAP_PERFMON on some
kernels: on 6.18 here every uprobe failed with EACCES under the collector unit's capabilities (no
CAP_SYS_ADMIN), which cost the systemd collector its libssl, getaddrinfo and Go probes, while a
tracepoint needs only CAP_PERFMON and the uid 0 the unit runs as may write tracefs. Such an event
is named `routerwatch/rw_<pid>_<n>` and removed when its fd is closed through `detach()`; events
of a collector that died without removing them are removed by the next one (`remove_stale_events`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
import platform
import re
import struct
from functools import lru_cache
from pathlib import Path

_NR = {"x86_64": {"bpf": 321, "perf_event_open": 298}, "aarch64": {"bpf": 280, "perf_event_open": 241}}
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_GET_NEXT_KEY = 4
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_RAW_TRACEPOINT_OPEN = 17
PERF_TYPE_TRACEPOINT = 2
PERF_FLAG_FD_CLOEXEC = 1 << 3
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_SET_BPF = 0x40042408
_PERF_ATTR = struct.Struct("<IIQQQQQIIQQ")  # perf_event_attr up to config2 (PERF_ATTR_SIZE_VER1: 72 bytes)
TRACEFS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
PMU = Path("/sys/bus/event_source/devices")


class BpfSysError(OSError):
    """A bpf(2)/perf_event_open(2) call failed (errno and what was attempted)."""


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong)
    return libc


def _nr(name: str) -> int:
    try:
        return _NR[platform.machine()][name]
    except KeyError:
        raise BpfSysError(0, f"{name}(2): unsupported architecture {platform.machine()}") from None


def _fail(what: str) -> BpfSysError:
    err = ctypes.get_errno()
    return BpfSysError(err, f"{what}: {os.strerror(err)}")


def bpf(cmd: int, attr: ctypes.Array, what: str) -> int:
    r = _libc().syscall(_nr("bpf"), ctypes.c_int(cmd), attr, ctypes.c_uint(len(attr)))
    if r < 0:
        raise _fail(what)
    return r


def raw_tracepoint_open(name: str, prog_fd: int) -> int:
    """Attach a BPF_PROG_TYPE_RAW_TRACEPOINT program; returns the link fd (close it to detach)."""
    cname = ctypes.create_string_buffer(name.encode())
    attr = ctypes.create_string_buffer(struct.pack("<QI4x", ctypes.addressof(cname), prog_fd))
    return bpf(BPF_RAW_TRACEPOINT_OPEN, attr, f"raw tracepoint {name}")


def _perf_event_open(ptype: int, config: int, config1: int, config2: int, what: str) -> int:
    attr = ctypes.create_string_buffer(_PERF_ATTR.pack(ptype, _PERF_ATTR.size, config, 1, 0, 0, 0, 1, 0,
                                                       config1, config2))
    # pid -1, cpu 0: a probe event fires on every CPU (the program hangs off the trace event itself)
    fd = _libc().syscall(_nr("perf_event_open"), attr, ctypes.c_int(-1), ctypes.c_int(0), ctypes.c_int(-1),
                         ctypes.c_ulong(PERF_FLAG_FD_CLOEXEC))
    if fd < 0:
        raise _fail(what)
    return fd


def _set_bpf(fd: int, prog_fd: int, what: str) -> int:
    libc = _libc()
    if libc.ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog_fd) != 0 or libc.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0) != 0:
        err = _fail(what)
        detach(fd)
        raise err
    return fd


def detach(fd: int) -> None:
    """Close an attachment's fd (which detaches its program); a tracefs uprobe event made for it is
    removed as well."""
    with contextlib.suppress(OSError):
        os.close(fd)
    made = _tracefs_events.pop(fd, None)
    if made is not None:
        _remove_event(*made)


def tracepoint_id(category: str, event: str) -> int:
    for root in TRACEFS:
        p = root / "events" / category / event / "id"
        if p.exists():
            return int(p.read_text())
    raise BpfSysError(2, f"tracepoint {category}:{event}: not in tracefs")


def attach_tracepoint(name: str, prog_fd: int) -> int:
    """Attach a BPF_PROG_TYPE_TRACEPOINT program to `category:event`; returns the perf event fd."""
    category, event = name.split(":", 1)
    fd = _perf_event_open(PERF_TYPE_TRACEPOINT, tracepoint_id(category, event), 0, 0, f"tracepoint {name}")
    return _set_bpf(fd, prog_fd, f"tracepoint {name}")


@lru_cache(maxsize=1)
def _uprobe_pmu() -> tuple[int, int, int]:
    """(perf type of the `uprobe` PMU, the config bit that makes it a return probe, the config
    shift of the USDT semaphore offset)."""
    try:
        ptype = int((PMU / "uprobe/type").read_text())
        fmt = (PMU / "uprobe/format/retprobe").read_text().strip()  # "config:0"
        ref = PMU / "uprobe/format/ref_ctr_offset"  # "config:32-63" (kernels since 4.20)
        shift = int(ref.read_text().strip().split(":", 1)[1].split("-")[0]) if ref.exists() else 32
    except OSError as exc:
        raise BpfSysError(exc.errno or 2, f"no uprobe PMU ({exc})") from None
    return ptype, int(fmt.split(":", 1)[1]), shift


def attach_uprobe(path: str, offset: int, prog_fd: int, retprobe: bool = False, ref_ctr_offset: int = 0) -> int:
    """Attach a kprobe-type program to the instruction at file `offset` of `path` (every process
    mapping that file, now or later); returns the perf event fd (close it with `detach()`).
    `ref_ctr_offset` is a USDT semaphore's file offset, which every probe on one instruction must
    agree on (EINVAL otherwise). Through the `uprobe` PMU, else a tracefs event (module docstring)."""
    what = f"{'uretprobe' if retprobe else 'uprobe'} {path}+{offset:#x}"
    try:
        ptype, bit, shift = _uprobe_pmu()
    except BpfSysError:  # a kernel without the PMU: tracefs is the only way
        return _set_bpf(_tracefs_uprobe(path, offset, retprobe, ref_ctr_offset, what), prog_fd, what)
    cpath = ctypes.create_string_buffer(os.fsencode(path))
    config = ((1 << bit) if retprobe else 0) | (ref_ctr_offset << shift)
    try:
        fd = _perf_event_open(ptype, config, ctypes.addressof(cpath), offset, what)
    except BpfSysError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM):
            raise
        fd = _tracefs_uprobe(path, offset, retprobe, ref_ctr_offset, what)
    return _set_bpf(fd, prog_fd, what)


EVENT_GROUP = "routerwatch"
_tracefs_events: dict[int, tuple[Path, str]] = {}  # perf fd -> (tracefs root, "group/name") made for it
_event_seq = itertools.count()
_EVENT_LINE = re.compile(rf"^[pr]:{EVENT_GROUP}/(rw_(\d+)_\d+) ")


def _uprobe_events() -> Path | None:
    return next((r for r in TRACEFS if (r / "uprobe_events").exists()), None)


def _tracefs_uprobe(path: str, offset: int, retprobe: bool, ref_ctr_offset: int, what: str) -> int:
    """A uprobe made as a tracefs event and opened as a tracepoint (perf event fd)."""
    root = _uprobe_events()
    if root is None:
        raise BpfSysError(errno.EACCES, f"{what}: the uprobe PMU refused it and tracefs has no uprobe_events")
    if any(c.isspace() for c in path):  # uprobe_events is a space-separated command line
        raise BpfSysError(errno.EINVAL, f"{what}: the uprobe PMU refused it and tracefs cannot name this path")
    name = f"rw_{os.getpid()}_{next(_event_seq)}"
    ref = f"({ref_ctr_offset:#x})" if ref_ctr_offset else ""
    try:
        _write_events(root, f"{'r' if retprobe else 'p'}:{EVENT_GROUP}/{name} {path}:{offset:#x}{ref}\n")
    except OSError as exc:
        raise BpfSysError(exc.errno or errno.EACCES, f"{what}: the uprobe PMU refused it, and tracefs "
                          f"uprobe_events too: {exc.strerror}") from None
    event = f"{EVENT_GROUP}/{name}"
    try:
        tid = int((root / "events" / EVENT_GROUP / name / "id").read_text())
        fd = _perf_event_open(PERF_TYPE_TRACEPOINT, tid, 0, 0, what)
    except (OSError, ValueError):
        _remove_event(root, event)
        raise
    _tracefs_events[fd] = (root, event)
    return fd


def _write_events(root: Path, line: str) -> None:
    """One command to uprobe_events, appended (O_APPEND, one write: Python's "a" mode seeks to the
    end first, which tracefs refuses with EINVAL; opening it for writing without O_APPEND would
    remove every uprobe event of every tracer)."""
    fd = os.open(root / "uprobe_events", os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _remove_event(root: Path, event: str) -> None:
    with contextlib.suppress(OSError):
        _write_events(root, f"-:{event}\n")


def remove_stale_events() -> int:
    """Remove the tracefs uprobe events of routerwatch processes that no longer run (a collector
    killed with -9 leaves its events registered, though unused); returns how many."""
    root = _uprobe_events()
    if root is None:
        return 0
    try:
        lines = (root / "uprobe_events").read_text().splitlines()
    except OSError:
        return 0
    n = 0
    for line in lines:
        m = _EVENT_LINE.match(line)
        if m and int(m.group(2)) != os.getpid() and not Path(f"/proc/{m.group(2)}").exists():
            _remove_event(root, f"{EVENT_GROUP}/{m.group(1)}")
            n += 1
    return n


@lru_cache(maxsize=1)
def possible_cpus() -> int:
    """How many CPUs a per-CPU map holds values for (the kernel's `cpu_possible_mask`)."""
    n = 0
    for part in Path("/sys/devices/system/cpu/possible").read_text().strip().split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


def percpu_array_u64(map_fd: int, index: int) -> list[int]:
    """One element of a BPF_MAP_TYPE_PERCPU_ARRAY of u64: its value on every possible CPU."""
    n = possible_cpus()
    key = ctypes.c_uint32(index)
    value = (ctypes.c_uint64 * n)()
    attr = ctypes.create_string_buffer(struct.pack("<I4xQQQ", map_fd, ctypes.addressof(key), ctypes.addressof(value), 0))
    bpf(BPF_MAP_LOOKUP_ELEM, attr, f"lookup of element {index}")
    return list(value)


def map_sizes(map_fd: int) -> tuple[int, int]:
    """(key_size, value_size) of a map, from the kernel (struct bpf_map_info): a lookup's buffer must
    be exactly what the kernel writes into."""
    info = ctypes.create_string_buffer(80)  # bpf_map_info: type, id, key_size, value_size, ...
    attr = ctypes.create_string_buffer(struct.pack("<IIQ", map_fd, len(info), ctypes.addressof(info)))
    bpf(BPF_OBJ_GET_INFO_BY_FD, attr, f"info of map fd {map_fd}")
    _type, _id, key_size, value_size = struct.unpack_from("<IIII", info.raw)
    return key_size, value_size


def map_lookup(map_fd: int, key: bytes, value_size: int) -> bytes | None:
    """The value stored under `key` in a (non-per-CPU) map whose values are `value_size` bytes
    (map_sizes), None when there is none."""
    ckey = ctypes.create_string_buffer(key, len(key))
    value = ctypes.create_string_buffer(value_size)
    attr = ctypes.create_string_buffer(struct.pack("<I4xQQQ", map_fd, ctypes.addressof(ckey),
                                                   ctypes.addressof(value), 0))
    r = _libc().syscall(_nr("bpf"), ctypes.c_int(BPF_MAP_LOOKUP_ELEM), attr, ctypes.c_uint(len(attr)))
    if r < 0:
        if ctypes.get_errno() == 2:  # ENOENT
            return None
        raise _fail("map lookup")
    return value.raw


def map_keys(map_fd: int, key_size: int, limit: int = 1 << 20) -> list[bytes]:
    """The keys of a hash map, in the kernel's order (entries changing meanwhile may be missed or
    seen twice, as with any BPF map walk); at most `limit`."""
    out: list[bytes] = []
    nxt = ctypes.create_string_buffer(key_size)
    cur = None
    while len(out) < limit:
        attr = ctypes.create_string_buffer(struct.pack("<I4xQQ", map_fd, ctypes.addressof(cur) if cur is not None else 0,
                                                       ctypes.addressof(nxt)))
        r = _libc().syscall(_nr("bpf"), ctypes.c_int(BPF_MAP_GET_NEXT_KEY), attr, ctypes.c_uint(len(attr)))
        if r < 0:
            if ctypes.get_errno() == 2:  # ENOENT: past the last key
                break
            raise _fail("map walk")
        out.append(nxt.raw)
        cur = ctypes.create_string_buffer(nxt.raw, key_size)
    return out


def prog_run_stats(prog_fd: int) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of a loaded program, as /proc/PID/fdinfo reports them (counted while
    the kernel's BPF statistics are on: BPF_ENABLE_STATS or kernel.bpf_stats_enabled)."""
    info = Path(f"/proc/self/fdinfo/{prog_fd}").read_text()
    vals = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    return int(vals.get("run_time_ns", "0")), int(vals.get("run_cnt", "0"))
