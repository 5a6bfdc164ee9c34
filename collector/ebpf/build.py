"""Compile and load the probes in a short-lived child process; hand the kernel objects to the parent.

bcc compiles C with LLVM in-process, and what that leaves behind (libLLVM and libclang mapped and
relocated, the compiler's heap) stays resident for the life of the process: ~230 MB in a collector
that otherwise needs ~250 MB. bcc cannot load a precompiled object, so the compile runs here, in a
child: it compiles `probes.bpf.c`, loads every program (tracepoint programs by their bcc names,
everything else as a uprobe program) without attaching any, and sends the programs' and maps' file
descriptors to the parent over a Unix socket (SCM_RIGHTS). The parent (collector.ebpf.loader)
attaches them itself (collector.ebpf.bpfsys) and reads the maps through the same fds; the kernel
keeps the objects alive as long as it holds them. The child then exits and its memory goes with it.

The kernel's BTF is parsed here too (`btf_offsets`: the struct offsets the probes read become `-D`
constants), for the same reason: the parsed type table is ~40 MB of Python objects.

Protocol: the request arrives as JSON on stdin (`source`, `cflags`, `btf_offsets`, `maps`: the maps
the parent reads); the reply is one message on the socket whose fd is argv[1]: a JSON header (`programs`: name -> {index, kind}, `maps`: name ->
index, or `error`) with the fds attached in index order.

    python -m collector.ebpf.build FD < request.json
"""

from __future__ import annotations

import json
import socket
import sys

MAX_FDS = 250  # SCM_MAX_FD is 253 per message


def _kind(name: bytes) -> str:
    if name.startswith(b"tracepoint__"):
        return "tracepoint"
    if name.startswith(b"raw_tracepoint__"):
        return "raw_tracepoint"
    return "uprobe"


def compile_and_load(source: str, cflags: list[str], map_names: list[str]) -> tuple[dict, list[int], object]:
    """bcc's BPF() without its auto-attach: every function loaded by its kind, nothing attached."""
    from bcc import BPF, lib

    class Loader(BPF):
        def _trace_autoload(self) -> None:  # bcc attaches tracepoint__* here; the parent does that instead
            return None

    b = Loader(src_file=source.encode(), cflags=cflags)
    types = {"tracepoint": BPF.TRACEPOINT, "raw_tracepoint": BPF.RAW_TRACEPOINT, "uprobe": BPF.KPROBE}
    fds: list[int] = []
    programs: dict[str, dict] = {}
    for i in range(lib.bpf_num_functions(b.module)):
        name = lib.bpf_function_name(b.module, i)
        kind = _kind(name)
        fn = b.load_func(name, types[kind])  # a verifier rejection is a bug: it surfaces as the error
        programs[name.decode()] = {"index": len(fds), "kind": kind}
        fds.append(fn.fd)
    maps: dict[str, int] = {}
    for name in map_names:  # the maps the parent reads; the others live on through the programs using them
        fd = lib.bpf_table_fd(b.module, name.encode())
        if fd < 0:
            raise RuntimeError(f"the program defines no map {name!r}")
        maps[name] = len(fds)
        fds.append(fd)
    if len(fds) > MAX_FDS:
        raise RuntimeError(f"{len(fds)} programs and maps: more than one message carries ({MAX_FDS})")
    return {"programs": programs, "maps": maps}, fds, b


def main(argv: list[str]) -> int:
    sock = socket.socket(fileno=int(argv[1]))
    try:
        req = json.load(sys.stdin)
        cflags = req["cflags"]
        if req.get("btf_offsets"):  # parsed here: the kernel's whole BTF as objects is ~40 MB
            from collector.ebpf.btf import probe_offsets

            cflags = [*(f"-D{k}={v}" for k, v in probe_offsets().items()), *cflags]
        header, fds, _b = compile_and_load(req["source"], cflags, req["maps"])
    except Exception as exc:  # compile or verifier error: the parent raises it as ProbeError
        sock.sendall(json.dumps({"error": str(exc).strip() or type(exc).__name__}).encode())
        return 1
    socket.send_fds(sock, [json.dumps(header).encode()], fds)
    sock.close()
    return 0  # exiting closes this process's copies; the parent's keep the objects alive


if __name__ == "__main__":
    sys.exit(main(sys.argv))
