"""Decode the probes' raw ring-buffer records in bulk (numpy views over joined bytes).

Layouts mirror the structs in probes.bpf.c; `tests/collector/ebpf/test_events.py` checks them
against the compiled program through real events.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from dataclasses import dataclass

import numpy as np

from collector.processes import boot_time

T_CONN, T_EXEC, T_EXIT, T_DNS, T_SSL, T_DNSQ = 1, 2, 3, 4, 5, 6

_TASK = [
    ("tgid", "<u4"), ("ppid", "<u4"), ("uid", "<u4"), ("_tpad", "<u4"),
    ("start_ns", "<u8"), ("cgroup_id", "<u8"), ("comm", "S16"),
]
CONN = np.dtype([
    ("type", "<u4"), ("family", "u1"), ("outbound", "u1"), ("established", "u1"), ("owned", "u1"),
    *_TASK,
    ("sk", "<u8"), ("cookie", "<u8"), ("ts_first", "<u8"), ("ts_established", "<u8"), ("ts_end", "<u8"),
    ("k_sent", "<u8"), ("k_recv", "<u8"), ("app_sent", "<u8"), ("app_recv", "<u8"), ("segs_out", "<u4"), ("segs_in", "<u4"),
    ("sport", "<u2"), ("dport", "<u2"), ("last_state", "u1"), ("rst", "u1"), ("_pad", "V2"),
    ("saddr", "V16"), ("daddr", "V16"),
])
EXEC = np.dtype([
    ("type", "<u4"), ("args_len", "<u4"), *_TASK, ("ts", "<u8"), ("filename", "S192"), ("args", "V384"),
])
EXIT = np.dtype([("type", "<u4"), ("tgid", "<u4"), ("start_ns", "<u8"), ("ts", "<u8")])
DNS_ADDR = np.dtype([("family", "<u2"), ("addr", "V16")])
DNS = np.dtype([
    ("type", "<u4"), ("ret", "<i4"), *_TASK, ("ts", "<u8"), ("naddrs", "<u4"), ("_pad", "<u4"),
    ("name", "S128"), ("addrs", DNS_ADDR, (12,)),
])
SSL_HEADER = np.dtype([
    ("type", "<u4"), ("len", "<u4"), ("ssl", "<u8"), ("sk", "<u8"), ("ts", "<u8"), ("tgid", "<u4"),
    ("total", "<u4"), ("offset", "<u4"), ("dir", "u1"), ("truncated", "u1"), ("_pad", "V2"),
])
# probes.bpf.c struct sock_state: the `socks` entry of a live socket (Probes.socket)
SOCK_STATE = np.dtype([
    *_TASK, ("ts_first", "<u8"), ("ts_established", "<u8"), ("outbound", "u1"), ("established", "u1"),
    ("owned", "u1"), ("last_state", "u1"), ("_pad", "V4"), ("app_sent", "<u8"), ("app_recv", "<u8"),
    ("sport", "<u2"), ("dport", "<u2"), ("family", "<u2"), ("rst", "u1"), ("in_scope", "u1"),
    ("saddr", "V16"), ("daddr", "V16"), ("cookie", "<u8"),
])
DNSQ_LEN = 512  # probes.bpf.c DNSQ_LEN
DNSQ = np.dtype([
    ("type", "<u4"), ("len", "<u4"), *_TASK, ("ts", "<u8"), ("family", "<u2"), ("dport", "<u2"), ("_pad", "<u4"),
    ("daddr", "V16"), ("data", "V512"),
])
DNSQ_ID = np.dtype({"names": ["id"], "formats": [">u2"], "offsets": [DNSQ.fields["data"][1]],
                    "itemsize": DNSQ.itemsize})  # the DNS transaction id at the start of the payload
assert CONN.itemsize == 176 and EXEC.itemsize == 640 and DNS.itemsize == 416 and SSL_HEADER.itemsize == 48
assert DNSQ.itemsize == 600 and SOCK_STATE.itemsize == 136


def stack(records: list[bytes], dtype: np.dtype) -> np.ndarray:
    """Records -> one structured array (a single copy). Records the probes cut short (T_DNSQ carries
    only the query's bytes) are zero-padded to the full layout."""
    if not records:
        return np.zeros(0, dtype=dtype)
    size = dtype.itemsize
    joined = b"".join(records)
    if len(joined) != size * len(records):
        joined = b"".join(r if len(r) == size else r.ljust(size, b"\0") for r in records)
    return np.frombuffer(joined, dtype=dtype)


@dataclass
class Clock:
    """Kernel monotonic ns (bpf_ktime_get_ns) and boot-relative ns -> seconds since the epoch."""

    mono_offset_ns: int
    boot_epoch: float  # /proc/stat btime

    @classmethod
    def now(cls) -> Clock:
        return cls(time.time_ns() - time.monotonic_ns(), boot_time())

    def epoch_us(self, mono_ns: np.ndarray) -> np.ndarray:
        """Monotonic ns -> epoch microseconds (Arrow timestamp[us]); 0 stays 0 (unknown)."""
        v = mono_ns.astype(np.int64)
        return np.where(v > 0, (v + self.mono_offset_ns) // 1000, 0)

    def process_start(self, start_boottime_ns: np.ndarray | int) -> np.ndarray | float:
        """A process's start as /proc reports it: btime + clock ticks (USER_HZ=100) since boot."""
        ticks = np.asarray(start_boottime_ns, dtype=np.int64) // 10_000_000
        return np.round(self.boot_epoch + ticks / 100.0, 2)


def format_addrs(raw: np.ndarray, family: np.ndarray) -> np.ndarray:
    """16-byte address fields -> text, formatting each distinct address once per family."""
    out = np.empty(len(raw), dtype=object)
    as_bytes = raw.view("S16")
    for fam, cls, width in ((4, ipaddress.IPv4Address, 4), (6, ipaddress.IPv6Address, 16)):
        sel = np.flatnonzero(family == fam)
        if len(sel) == 0:
            continue
        uniq, inverse = np.unique(as_bytes[sel], return_inverse=True)
        text = np.array([str(cls(u.ljust(16, b"\0")[:width])) for u in uniq.tolist()], dtype=object)
        out[sel] = text[inverse.reshape(-1)]
    return out


def addr_rows(raw: np.ndarray) -> np.ndarray:
    """16-byte address fields as (n, 16) uint8 rows (an IPv4 address in the first 4 bytes), the form
    `collector.capture.community_id.community_ids` takes."""
    return np.frombuffer(raw.tobytes(), np.uint8).reshape(len(raw), 16)


def flow_uids(host_id: str, boot_epoch: float, cookies: np.ndarray) -> list[str]:
    """Stable per-connection ids: the kernel's socket cookie is unique per boot, the prefix per host+boot."""
    prefix = "E" + hashlib.blake2b(f"{host_id}|{boot_epoch:.0f}".encode(), digest_size=5).hexdigest()
    return [f"{prefix}{c:012x}" for c in cookies.tolist()]


def comm_text(comm: np.ndarray) -> list[str]:
    return [c.split(b"\0", 1)[0].decode("utf-8", "replace") for c in comm]
