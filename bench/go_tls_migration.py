"""How often a Go `(*tls.Conn).Read` returns on another OS thread than it entered (why the Go TLS
probes key calls by goroutine, not by thread).

Builds the test Go agent, attaches a tiny probe pair of its own to `Read`'s entry and RETs (the
goroutine from R14, the thread id at each end), runs streamed requests with paced SSE events
(the client's reads park in the netpoller between events) against a loopback zoo router over
HTTP/1.1 and HTTP/2, and prints the counts.

    sudo .venv/bin/python bench/go_tls_migration.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python bench/X.py`: the repo root

from analyzer.demo.pki import ensure_pki  # noqa: E402
from analyzer.demo.zoo import start_router  # noqa: E402
from collector.ebpf.go_tls import inspect  # noqa: E402
from tests.support.goclient import build_goclient, goclient_cmd, goclient_env  # noqa: E402

PROG = r"""
#include <uapi/linux/ptrace.h>
struct key { u64 g; u32 tgid; u32 pad; };
BPF_HASH(entry_tid, struct key, u32, 65536);
BPF_ARRAY(stats, u64, 3);   // 0: calls returned, 1: returned on another thread, 2: entries
int on_entry(struct pt_regs *ctx) {
    u64 id = bpf_get_current_pid_tgid();
    struct key k = {ctx->r14, id >> 32};
    u32 tid = (u32)id;
    entry_tid.update(&k, &tid);
    stats.increment(2);
    return 0;
}
int on_ret(struct pt_regs *ctx) {
    u64 id = bpf_get_current_pid_tgid();
    struct key k = {ctx->r14, id >> 32};
    u32 *t = entry_tid.lookup(&k);
    if (!t) return 0;
    stats.increment(0);
    if (*t != (u32)id) stats.increment(1);
    entry_tid.delete(&k);
    return 0;
}
"""


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()  # --help; no options
    from bcc import BPF

    with tempfile.TemporaryDirectory() as d:
        binary = build_goclient(Path(d))
        t = inspect(binary)
        assert t is not None
        b = BPF(text=PROG)
        b.attach_uprobe(name=str(binary).encode(), addr=t.read.entry, fn_name=b"on_entry")
        for r in t.read.rets:
            b.attach_uprobe(name=str(binary).encode(), addr=r, fn_name=b"on_ret")
        ensure_pki(Path(d) / "pki")
        router = start_router("honest", alpn=("h2", "http/1.1"), certdir=Path(d) / "pki", stream_delay=0.02)
        try:
            last = (0, 0, 0)
            for proto in ("h1", "h2"):
                for _ in range(3):
                    subprocess.run(goclient_cmd(binary, router.url, proto=proto, stream=True, calls=3),
                                   env=goclient_env(router.ca_path), capture_output=True, check=True)
                s = b[b"stats"]
                now = (s[2].value, s[0].value, s[1].value)
                print(f"{proto}: {now[0] - last[0]} Read calls, {now[1] - last[1]} returned, "
                      f"{now[2] - last[2]} of them on another OS thread than they entered")
                last = now
        finally:
            router.stop()
            b.cleanup()


if __name__ == "__main__":
    main()
