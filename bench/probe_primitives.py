"""What the probes' building blocks cost per run: a hash-map entry per socket against socket storage,
and a bpf_probe_read_kernel of a socket field against a BTF-typed load of the same field.

The connect+reset storm pays for one entry per socket (inserted at connect/accept, deleted at
destroy). `BPF_MAP_TYPE_SK_STORAGE` (per-socket storage, no hash, freed with the socket) and plain
loads through BTF-typed pointers are open only to BTF-typed tracing programs (`tp_btf`:
BPF_PROG_TYPE_TRACING, expected attach type BPF_TRACE_RAW_TP, attach_btf_id = the kernel's
`btf_trace_<tracepoint>` typedef). bcc 0.26 cannot load those itself ("not found in vmlinux BTF"):
this script compiles with bcc and loads the tracing programs with its own BPF_PROG_LOAD, attached
with BPF_RAW_TRACEPOINT_OPEN without a name. All six programs are attached at once to the same
tracepoints (their order reversed with --reverse), the workload makes --connections loopback
connections closed by reset, and the kernel's BPF run-time statistics give ns per run:

    sudo .venv/bin/python bench/probe_primitives.py [--connections 20000] [--reverse]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import socket
import struct
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python bench/X.py`: the repo root

from bench.live import BpfStats  # noqa: E402
from collector.ebpf import bpfsys  # noqa: E402

SOURCE = r"""
struct st { u64 v[17]; };  // 136 bytes, as struct sock_state
BPF_HASH(h, u64, struct st, 262144);
BPF_SK_STORAGE(sks, struct st);

// entries made where the collector makes them: at connect (SYN_SENT) and for an accepted socket
// (SYN_RECV -> ESTABLISHED), dropped at destroy
RAW_TRACEPOINT_PROBE(inet_sock_set_state) {
    int ns = (int)ctx->args[2], os = (int)ctx->args[1];
    u64 sk = ctx->args[0];
    u16 proto = 0;
    bpf_probe_read_kernel(&proto, 2, (void *)sk + OFF_SK_PROTOCOL);
    if (proto != 6 || !(ns == 2 || (ns == 1 && os == 3))) return 0;
    struct st z = {};
    z.v[0] = ns;
    h.update(&sk, &z);
    return 0;
}
RAW_TRACEPOINT_PROBE(tcp_destroy_sock) {
    u64 sk = ctx->args[0];
    if (h.lookup(&sk)) h.delete(&sk);
    return 0;
}
int btf_set_state(u64 *ctx) {
    struct sock *sk = (struct sock *)ctx[0];
    int ns = (int)ctx[2], os = (int)ctx[1];
    u16 proto = 0;
    bpf_probe_read_kernel(&proto, 2, (void *)sk + OFF_SK_PROTOCOL);
    if (proto != 6 || !(ns == 2 || (ns == 1 && os == 3))) return 0;
    struct st *s = sks.sk_storage_get(sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
    if (s) s->v[0] = ns;
    return 0;
}
int btf_destroy(u64 *ctx) {
    struct sock *sk = (struct sock *)ctx[0];
    if (sks.sk_storage_get(sk, 0, 0)) sks.sk_storage_delete(sk);
    return 0;
}
int btf_load_field(u64 *ctx) {  // sk_protocol as a plain load through the BTF-typed socket pointer
    struct sock *sk = (struct sock *)ctx[0];
    return *(volatile u16 *)((char *)sk + OFF_SK_PROTOCOL) == 6;
}
int raw_read_field(struct bpf_raw_tracepoint_args *ctx) {  // the same field with a probe read
    u16 proto = 0;
    bpf_probe_read_kernel(&proto, 2, (void *)ctx->args[0] + OFF_SK_PROTOCOL);
    return proto == 6;
}
"""

# label -> (bcc function, tracepoint, tp_btf?)
PROGRAMS = {
    "hash entry: insert (inet_sock_set_state)": ("raw_tracepoint__inet_sock_set_state", "inet_sock_set_state", False),
    "hash entry: lookup + delete (tcp_destroy_sock)": ("raw_tracepoint__tcp_destroy_sock", "tcp_destroy_sock", False),
    "sk_storage: create (inet_sock_set_state)": ("btf_set_state", "inet_sock_set_state", True),
    "sk_storage: get + delete (tcp_destroy_sock)": ("btf_destroy", "tcp_destroy_sock", True),
    "one field, BTF load (tcp_destroy_sock)": ("btf_load_field", "tcp_destroy_sock", True),
    "one field, probe read (tcp_destroy_sock)": ("raw_read_field", "tcp_destroy_sock", False),
}
PROG_TYPE_TRACING, TRACE_RAW_TP, BPF_PROG_LOAD = 26, 23, 5


def btf_trace_id(name: str) -> int:
    """The kernel BTF id of typedef `btf_trace_<name>`: what a tp_btf program attaches by."""
    from collector.ebpf.btf import kernel_btf

    want = f"btf_trace_{name}"
    for i, t in enumerate(kernel_btf().types):
        if t is not None and t.name == want:
            return i
    raise SystemExit(f"the kernel's BTF has no {want}")


def load_tp_btf(insns: bytes, name: str, btf_id: int) -> int:
    """BPF_PROG_LOAD of a BPF_PROG_TYPE_TRACING program for BPF_TRACE_RAW_TP (bcc's own loader
    cannot: it does not find the btf_trace_ typedef)."""
    lic = ctypes.create_string_buffer(b"GPL")
    code = ctypes.create_string_buffer(insns, len(insns))
    log = ctypes.create_string_buffer(1 << 20)
    # prog_type, insn_cnt, insns, license, log_level, log_size, log_buf, kern_version, prog_flags,
    # prog_name, prog_ifindex, expected_attach_type, prog_btf_fd, func_info (rec size, ptr, cnt),
    # line_info (rec size, ptr, cnt), attach_btf_id
    attr = struct.pack("<IIQQIIQII16sIIIIQIIQII", PROG_TYPE_TRACING, len(insns) // 8, ctypes.addressof(code),
                       ctypes.addressof(lic), 1, len(log), ctypes.addressof(log), 0, 0, name.encode()[:15], 0,
                       TRACE_RAW_TP, 0, 0, 0, 0, 0, 0, 0, btf_id)
    try:
        return bpfsys.bpf(BPF_PROG_LOAD, ctypes.create_string_buffer(attr + bytes(32)), f"tp_btf {name}")
    except OSError:
        print(log.value.decode(errors="replace")[-3000:], file=sys.stderr)
        raise


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=20_000)
    ap.add_argument("--reverse", action="store_true", help="attach the programs in the reverse order")
    opts = ap.parse_args()
    from bcc import BPF, lib

    from collector.ebpf.btf import probe_offsets

    class Loader(BPF):
        def _trace_autoload(self) -> None:
            return None

    with tempfile.NamedTemporaryFile("w", suffix=".c") as src:
        src.write(SOURCE)
        src.flush()
        b = Loader(src_file=src.name.encode(), cflags=["-Wno-unused-value",
                                                      *(f"-D{k}={v}" for k, v in probe_offsets().items())])
    fds: dict[str, int] = {}
    for label, (fn, tp, btf) in PROGRAMS.items():
        if btf:
            start, size = lib.bpf_function_start(b.module, fn.encode()), lib.bpf_function_size(b.module, fn.encode())
            fds[label] = load_tp_btf(ctypes.string_at(start, size), fn, btf_trace_id(tp))
        else:
            fds[label] = b.load_func(fn.encode(), BPF.RAW_TRACEPOINT).fd
    links = []
    for label in (reversed(PROGRAMS) if opts.reverse else PROGRAMS):
        _fn, tp, btf = PROGRAMS[label]
        if btf:  # a tracing program attaches by its attach_btf_id: no name
            links.append(bpfsys.bpf(bpfsys.BPF_RAW_TRACEPOINT_OPEN,
                                    ctypes.create_string_buffer(struct.pack("<QI4x", 0, fds[label])), label))
        else:
            links.append(bpfsys.raw_tracepoint_open(tp, fds[label]))
    srv = socket.create_server(("127.0.0.1", 0), backlog=512)
    linger = struct.pack("ii", 1, 0)
    n = opts.connections
    with BpfStats():
        before = {k: bpfsys.prog_run_stats(fd) for k, fd in fds.items()}
        for _ in range(n):
            c = socket.create_connection(srv.getsockname())
            a, _ = srv.accept()
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)  # close by reset
            c.close()
            a.close()
        after = {k: bpfsys.prog_run_stats(fd) for k, fd in fds.items()}
    out = {}
    for label in PROGRAMS:
        t, runs = after[label][0] - before[label][0], after[label][1] - before[label][1]
        out[label] = {"runs_per_connection": round(runs / n, 2), "ns_per_run": round(t / max(runs, 1)),
                      "ns_per_connection": round(t / n)}
    for fd in [*links, *(fds[k] for k, (_f, _t, btf) in PROGRAMS.items() if btf)]:
        os.close(fd)  # the raw tracepoint programs are bcc's: it closes them at exit
    print(json.dumps({"connections": n, "reverse": opts.reverse, "programs": out,
                      "loadavg": os.getloadavg()[0]}, indent=1))


if __name__ == "__main__":
    main()
