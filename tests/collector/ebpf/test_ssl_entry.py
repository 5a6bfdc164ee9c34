"""collector.ebpf.ssl_entry: the libssl uprobes go on OpenSSL's internal read/write functions when the
exported functions' machine code shows them safely, else on the exported functions."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from collector.ebpf.ssl_entry import probe_points

SUB_RSP_8 = bytes.fromhex("4883ec08")
PUSH_R14 = bytes.fromhex("4156")
SUB_RSP_18 = bytes.fromhex("4883ec18")


def _call(at: int, target: int) -> bytes:
    return b"\xe8" + struct.pack("<i", target - (at + 5))


def _library(tmp_path: Path, ex_prefix: bytes, internal_first: bytes, plain_calls: bool = True) -> tuple[str, dict]:
    """A file laid out like libssl's text: plain SSL_write at 0x100, SSL_write_ex at 0x180, the
    internal function at 0x200 (the read direction absent)."""
    img = bytearray(b"\xcc" * 0x300)
    plain, ex, internal = 0x100, 0x180, 0x200
    body = SUB_RSP_18 + b"\x85\xd2"  # sub rsp, 0x18; test edx, edx (the num < 0 check)
    img[plain:plain + len(body)] = body
    if plain_calls:
        img[plain + len(body):plain + len(body) + 5] = _call(plain + len(body), internal)
    img[ex:ex + len(ex_prefix)] = ex_prefix
    img[ex + len(ex_prefix):ex + len(ex_prefix) + 5] = _call(ex + len(ex_prefix), internal)
    img[internal:internal + len(internal_first)] = internal_first
    path = tmp_path / "libssl.so.test"
    path.write_bytes(bytes(img))
    return str(path), {"SSL_write": plain, "SSL_write_ex": ex}


def test_the_internal_function_when_both_exported_functions_call_it(tmp_path):
    path, offs = _library(tmp_path, SUB_RSP_8, PUSH_R14)
    (point,) = probe_points(path, offs)
    assert (point.offset, point.program) == (0x200, "ssl_write_ex_enter")  # the _ex form's arguments


@pytest.mark.parametrize("case", ["argument register written first", "internal starts unemulated",
                                  "plain does not call it"])
def test_the_exported_functions_otherwise(tmp_path, case):
    if case == "argument register written first":
        lib = _library(tmp_path, bytes.fromhex("4889c7"), PUSH_R14)  # mov rdi, rax: the call's arguments differ
    elif case == "internal starts unemulated":
        lib = _library(tmp_path, SUB_RSP_8, SUB_RSP_18)  # no cheaper than the exported entry
    else:
        lib = _library(tmp_path, SUB_RSP_8, PUSH_R14, plain_calls=False)  # probing it would miss SSL_write
    points = probe_points(*lib)
    assert [(p.label, p.offset, p.program) for p in points] == [
        ("SSL_write", 0x100, "ssl_write_enter"), ("SSL_write_ex", 0x180, "ssl_write_ex_enter")]


def test_the_systems_libssl():
    """Debian's OpenSSL 3: both directions go to the internal functions, which begin with a push."""
    from collector.ebpf.loader import SSL_FUNCS, uprobe_targets

    lib = "/usr/lib/x86_64-linux-gnu/libssl.so.3"
    if not Path(lib).exists():
        pytest.skip(f"{lib} is not on this machine (Debian's libssl3)")
    offs = uprobe_targets(lib, [sym for sym, _fn in SSL_FUNCS])
    points = probe_points(lib, offs)
    assert [p.program for p in points] == ["ssl_write_ex_enter", "ssl_read_ex_enter"]
    assert all(p.offset not in offs.values() for p in points)
