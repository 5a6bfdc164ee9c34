"""Struct member offsets from the running kernel's BTF (/sys/kernel/btf/vmlinux).

bcc compiles against whatever headers exist, and on hosts whose headers do not match the running
kernel (Debian's 6.1 headers on a 6.18 kernel here) every struct offset they give is wrong. The few
kernel fields the probes read are therefore located through BTF, which always describes the running
kernel, and handed to the BPF program as -D constants. A small parser, no bpftool or pahole needed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

VMLINUX = Path("/sys/kernel/btf/vmlinux")
_MAGIC = 0xEB9F
# kind -> size of the data that follows the 12-byte btf_type (fixed part, per-vlen part)
_EXTRA = {1: (4, 0), 2: (0, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8), 7: (0, 0), 8: (0, 0),
          9: (0, 0), 10: (0, 0), 11: (0, 0), 12: (0, 0), 13: (0, 8), 14: (4, 0), 15: (0, 12), 16: (0, 0),
          17: (4, 0), 18: (0, 0), 19: (0, 12)}
_STRUCT, _UNION, _TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG = 4, 5, 8, 9, 10, 11, 18


class BTFError(Exception):
    """The kernel's BTF is missing or lacks a field the probes need."""


@dataclass
class _Type:
    name: str
    kind: int
    size_or_type: int
    members: list[tuple[str, int, int]]  # (name, type id, bit offset)


class BTF:
    """Parsed type section of a raw BTF blob (only what offset lookups need)."""

    def __init__(self, data: bytes):
        magic, _ver, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != _MAGIC:
            raise BTFError("not a BTF blob")
        type_off, type_len, str_off, _str_len = struct.unpack_from("<IIII", data, 8)
        strings = data[hdr_len + str_off :]
        self.types: list[_Type | None] = [None]  # type id 0 is void
        self.by_name: dict[str, list[int]] = {}

        def name_at(off: int) -> str:
            end = strings.index(b"\0", off)
            return strings[off:end].decode()

        pos, end = hdr_len + type_off, hdr_len + type_off + type_len
        while pos < end:
            name_off, info, size_or_type = struct.unpack_from("<III", data, pos)
            pos += 12
            kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
            fixed, per = _EXTRA.get(kind, (0, 0))
            members: list[tuple[str, int, int]] = []
            if kind in (_STRUCT, _UNION):
                for i in range(vlen):
                    m_name, m_type, m_off = struct.unpack_from("<III", data, pos + 12 * i)
                    members.append((name_at(m_name), m_type, m_off & 0xFFFFFF if kflag else m_off))
            pos += fixed + per * vlen
            t = _Type(name_at(name_off), kind, size_or_type, members)
            if t.name and kind in (_STRUCT, _UNION):
                self.by_name.setdefault(t.name, []).append(len(self.types))
            self.types.append(t)

    def _resolve(self, tid: int) -> _Type | None:
        t = self.types[tid]
        while t is not None and t.kind in (_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG):
            t = self.types[t.size_or_type]
        return t

    def _find(self, t: _Type, field: str) -> int | None:
        """Byte offset of `field` in `t`, looking through anonymous struct/union members."""
        for m_name, m_type, bit_off in t.members:
            if m_name == field:
                return bit_off // 8
            if not m_name:
                inner = self._resolve(m_type)
                if inner is not None and inner.kind in (_STRUCT, _UNION):
                    sub = self._find(inner, field)
                    if sub is not None:
                        return bit_off // 8 + sub
        return None

    def offset(self, struct_name: str, path: str) -> int:
        """Byte offset of `path` ('a' or 'a.b') inside struct `struct_name`."""
        ids = self.by_name.get(struct_name)
        if not ids:
            raise BTFError(f"struct {struct_name} not in BTF")
        t = next((self.types[i] for i in ids if self.types[i].members), self.types[ids[0]])
        total = 0
        for part in path.split("."):
            off = self._find(t, part)
            if off is None:
                raise BTFError(f"{struct_name}.{path}: no member {part!r}")
            total += off
            member_tid = next(
                (mt for n, mt, _ in t.members if n == part), None
            )
            if member_tid is not None:
                nxt = self._resolve(member_tid)
                if nxt is not None:
                    t = nxt
        return total


@lru_cache(maxsize=1)
def kernel_btf(path: str = str(VMLINUX)) -> BTF:
    try:
        return BTF(Path(path).read_bytes())
    except OSError as exc:
        raise BTFError(f"cannot read kernel BTF {path}: {exc.strerror}") from None


# The kernel fields the probes read, as (macro, struct, member path).
FIELDS = [
    ("OFF_TASK_REAL_PARENT", "task_struct", "real_parent"),
    ("OFF_TASK_TGID", "task_struct", "tgid"),
    ("OFF_TASK_START_TIME", "task_struct", "start_boottime"),  # what /proc/PID/stat reports
    ("OFF_TASK_GROUP_LEADER", "task_struct", "group_leader"),
    ("OFF_TASK_MM", "task_struct", "mm"),
    ("OFF_MM_ARG_START", "mm_struct", "arg_start"),
    ("OFF_MM_ARG_END", "mm_struct", "arg_end"),
    ("OFF_TCP_BYTES_RECEIVED", "tcp_sock", "bytes_received"),
    ("OFF_TCP_BYTES_SENT", "tcp_sock", "bytes_sent"),
    ("OFF_TCP_BYTES_RETRANS", "tcp_sock", "bytes_retrans"),
    ("OFF_TCP_SEGS_IN", "tcp_sock", "segs_in"),
    ("OFF_TCP_SEGS_OUT", "tcp_sock", "segs_out"),
    # the socket's tuple and protocol, for the raw inet_sock_set_state tracepoint
    ("OFF_SK_DADDR", "sock", "__sk_common.skc_daddr"),
    ("OFF_SK_RCV_SADDR", "sock", "__sk_common.skc_rcv_saddr"),
    ("OFF_SK_DPORT", "sock", "__sk_common.skc_dport"),
    ("OFF_INET_SPORT", "inet_sock", "inet_sport"),
    ("OFF_SK_FAMILY", "sock", "__sk_common.skc_family"),
    ("OFF_SK_V6_DADDR", "sock", "__sk_common.skc_v6_daddr"),
    ("OFF_SK_V6_RCV_SADDR", "sock", "__sk_common.skc_v6_rcv_saddr"),
    ("OFF_SK_PROTOCOL", "sock", "sk_protocol"),
    # tcp_destroy_sock as a raw tracepoint: the address the classic tracepoint reports, and the cookie
    ("OFF_INET_SADDR", "inet_sock", "inet_saddr"),
    ("OFF_SK_COOKIE", "sock", "__sk_common.skc_cookie"),
    # scope (collect --netns): a socket's network namespace and a task's, as the nsfs inode number
    ("OFF_SK_NET", "sock", "__sk_common.skc_net"),
    ("OFF_TASK_NSPROXY", "task_struct", "nsproxy"),
    ("OFF_NSPROXY_NET_NS", "nsproxy", "net_ns"),
    ("OFF_NET_NS_INUM", "net", "ns.inum"),
]


def probe_offsets(btf: BTF | None = None) -> dict[str, int]:
    """Every offset the BPF programs need, keyed by the -D macro name."""
    btf = btf or kernel_btf()
    return {macro: btf.offset(s, f) for macro, s, f in FIELDS}
