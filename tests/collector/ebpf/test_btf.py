"""BTF offsets: the parser on a hand-built blob (anonymous members, typedef chains) and on the
running kernel's BTF."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from collector.ebpf.btf import BTF, FIELDS, BTFError, probe_offsets


def blob() -> bytes:
    """struct outer { int a; union { long b; int c; }; struct inner in; } with typedef'd inner."""
    strings = b"\0int\0long\0outer\0a\0b\0c\0inner\0x\0in\0inner_t\0"

    def off(name: bytes) -> int:
        return strings.index(b"\0" + name + b"\0") + 1

    types = b""
    types += struct.pack("<III", off(b"int"), 1 << 24, 4) + struct.pack("<I", 32)  # 1: int
    types += struct.pack("<III", off(b"long"), 1 << 24, 8) + struct.pack("<I", 64)  # 2: long
    # 3: anonymous union { long b; int c; }
    types += struct.pack("<III", 0, (5 << 24) | 2, 8)
    types += struct.pack("<III", off(b"b"), 2, 0) + struct.pack("<III", off(b"c"), 1, 0)
    # 4: struct inner { int x; }
    types += struct.pack("<III", off(b"inner"), (4 << 24) | 1, 4) + struct.pack("<III", off(b"x"), 1, 0)
    # 5: typedef inner_t -> 4
    types += struct.pack("<III", off(b"inner_t"), 8 << 24, 4)
    # 6: struct outer { int a @0; <anon union> @64 bits; inner_t in @128 bits }
    types += struct.pack("<III", off(b"outer"), (4 << 24) | 3, 20)
    types += struct.pack("<III", off(b"a"), 1, 0) + struct.pack("<III", 0, 3, 64) + struct.pack("<III", off(b"in"), 5, 128)
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return hdr + types + strings


def test_offsets_through_anonymous_members_and_typedefs():
    b = BTF(blob())
    assert b.offset("outer", "a") == 0
    assert b.offset("outer", "b") == 8 and b.offset("outer", "c") == 8
    assert b.offset("outer", "in.x") == 16
    with pytest.raises(BTFError):
        b.offset("outer", "missing")
    with pytest.raises(BTFError):
        b.offset("nosuch", "a")
    with pytest.raises(BTFError):
        BTF(b"\0" * 32)


@pytest.mark.skipif(not Path("/sys/kernel/btf/vmlinux").exists(), reason="this kernel exposes no BTF")
def test_running_kernel_has_every_field_the_probes_read():
    offs = probe_offsets()
    assert set(offs) == {m for m, _s, _f in FIELDS}
    assert all(v > 0 for m, v in offs.items() if m != "OFF_SK_DADDR")
    assert offs["OFF_SK_DADDR"] == 0  # struct sock opens with sock_common, whose first field is the peer address
    assert offs["OFF_TASK_TGID"] != offs["OFF_TASK_REAL_PARENT"]
    assert offs["OFF_MM_ARG_END"] == offs["OFF_MM_ARG_START"] + 8  # adjacent unsigned longs
