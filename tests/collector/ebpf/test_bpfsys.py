"""collector.ebpf.bpfsys: the raw bpf(2)/perf_event_open(2) calls the collector attaches and reads the
probes with, on the real kernel (root), through programs and maps the compiler child handed over."""

from __future__ import annotations

import os
import subprocess

import pytest

from collector.ebpf import bpfsys
from collector.ebpf import events as ev
from tests.collector.live.conftest import needs_ebpf


@pytest.fixture(scope="module")
def probes():
    if os.geteuid() != 0:
        pytest.skip("eBPF needs root (CI runs as root)")
    from collector.ebpf.loader import ProbeOptions, Probes

    p = Probes(ProbeOptions(ssl=False, dns=False, go_tls=False, ringbuf_pages=256))
    yield p
    p.close()


@needs_ebpf
def test_map_sizes_and_lookups_match_the_c_structs(probes):
    assert bpfsys.map_sizes(probes.maps["socks"]) == (8, ev.SOCK_STATE.itemsize)
    assert bpfsys.map_sizes(probes.maps["counters"]) == (4, 8)
    per_cpu = bpfsys.percpu_array_u64(probes.maps["counters"], 0)
    assert len(per_cpu) == bpfsys.possible_cpus() >= os.cpu_count()
    assert bpfsys.map_lookup(probes.maps["socks"], (0).to_bytes(8, "little"), ev.SOCK_STATE.itemsize) is None
    with pytest.raises(bpfsys.BpfSysError, match="lookup of element"):
        bpfsys.percpu_array_u64(probes.maps["counters"], 10_000)  # past the array: E2BIG/ENOENT, not garbage


@needs_ebpf
def test_closing_a_tracepoint_link_detaches_it_and_attach_restores_it(probes):
    """exec_seen counts every exec on the host while sched_process_exec is attached, and none while
    it is not (other processes' execs included)."""
    key = ("tracepoint", "sched:sched_process_exec")
    assert key in probes.links
    probes.detach(key)
    try:
        before = probes.counters()["exec_seen"]
        for _ in range(3):
            subprocess.run(["/bin/true"], check=True)
        assert probes.counters()["exec_seen"] == before
    finally:
        probes.attach(key)
    before = probes.counters()["exec_seen"]
    for _ in range(3):
        subprocess.run(["/bin/true"], check=True)
    assert probes.counters()["exec_seen"] >= before + 3


@needs_ebpf
def test_refusals_name_what_was_attempted(probes, tmp_path):
    prog = probes.programs["gai_enter"]
    with pytest.raises(bpfsys.BpfSysError, match="tracepoint nosuch:event"):
        bpfsys.attach_tracepoint("nosuch:event", probes.programs["tracepoint__sched__sched_process_exec"])
    with pytest.raises(bpfsys.BpfSysError, match=f"uprobe {tmp_path}/absent\\+0x10"):
        bpfsys.attach_uprobe(str(tmp_path / "absent"), 0x10, prog)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(bpfsys.BpfSysError, match="uretprobe"):
        bpfsys.attach_uprobe(str(empty), 1 << 20, prog, retprobe=True)  # past the end of the file

