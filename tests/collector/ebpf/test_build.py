"""collector.ebpf.build through loader.build_objects: the compile runs in a child process that hands
every program and the maps the collector reads back as file descriptors, the collect process holding
no compiler is tests/collector/live/test_lean.py. Real bcc, real kernel (root)."""

from __future__ import annotations

import os
import re
import time

import pytest

from tests.collector.live.conftest import needs_ebpf


def _declared_programs() -> dict[str, str]:
    """The BPF functions probes.bpf.c declares, by the kind the child loads them as."""
    from collector.ebpf.loader import SOURCE

    src = SOURCE.read_text()
    out = {f"tracepoint__{c}__{e}": "tracepoint" for c, e in re.findall(r"^TRACEPOINT_PROBE\((\w+), (\w+)\)", src, re.M)}
    out.update({f"raw_tracepoint__{t}": "raw_tracepoint" for t in re.findall(r"^RAW_TRACEPOINT_PROBE\((\w+)\)", src, re.M)})
    out.update({f: "uprobe" for f in re.findall(r"^int (\w+)\(struct pt_regs \*ctx\)", src, re.M)})
    return out


@pytest.fixture(scope="module")
def built():
    if os.geteuid() != 0:
        pytest.skip("eBPF needs root (CI runs as root)")
    from collector.ebpf.loader import build_objects

    cflags = ["-DRINGBUF_PAGES=16", "-DSSL_MAX_CHUNKS=16", "-Wno-unused-value", "-Wno-pointer-sign",
              "-Wno-compare-distinct-pointer-types"]
    progs, maps = build_objects(cflags)  # the BTF offsets added by the child
    yield progs, maps
    for fd in [*(fd for fd, _k in progs.values()), *maps.values()]:
        os.close(fd)


def _fdinfo(fd: int) -> dict[str, str]:
    text = open(f"/proc/self/fdinfo/{fd}").read()
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in text.splitlines() if ":" in line)}


@needs_ebpf
def test_every_program_and_the_read_maps_arrive_as_fds(built):
    progs, maps = built
    declared = _declared_programs()
    assert {name: kind for name, (_fd, kind) in progs.items()} == declared
    assert len(declared) >= 18  # the regexes found the program, not nothing
    for fd, _kind in progs.values():
        assert "prog_type" in _fdinfo(fd)  # a BPF program, owned by this process now
    assert set(maps) == {"events", "counters", "socks"}
    types = {name: int(_fdinfo(fd)["map_type"]) for name, fd in maps.items()}
    assert types == {"events": 27, "counters": 6, "socks": 1}  # RINGBUF, PERCPU_ARRAY, HASH


@needs_ebpf
def test_a_compile_error_is_a_probe_error_with_the_compilers_words():
    from collector.ebpf.loader import ProbeError, build_objects

    with pytest.raises(ProbeError, match="failed to load") as e:
        build_objects(["-DRINGBUF_PAGES=16", "-DSSL_MAX_CHUNKS=)"], btf_offsets=False)
    assert "error" in str(e.value).lower()


@needs_ebpf
def test_a_compile_that_takes_too_long_is_killed():
    from collector.ebpf.loader import ProbeError, build_objects

    t0 = time.monotonic()
    with pytest.raises(ProbeError, match="took more than"):
        build_objects(["-DRINGBUF_PAGES=16"], timeout=0.05, btf_offsets=False)
    assert time.monotonic() - t0 < 30
    assert _children_running("collector.ebpf.build") == []  # killed and reaped, not left compiling


def _children_running(module: str) -> list[int]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            ppid = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if ppid == str(os.getpid()) and module.encode() in cmd:
            out.append(int(pid))
    return out
