"""Process rows (collector/processes.py): a command line is redacted the same way whether it comes from
an eBPF exec record or from /proc, and its secrets become `secrets_seen` rows (direction 'cmdline')."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from collector.processes import ProcessTable, read_proc
from collector.secrets import Fingerprinter

SECRET = "Zq3xV9pL2mN8bT4wR7yK1cH6jD5fG0sA3eU8iO2q"  # 40 random characters: no known credential shape
FP = Fingerprinter(b"p" * 32)


def _sleeper(*args: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", *args])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # until the exec is done and /proc shows the new argv
        info = read_proc(p.pid)
        if info is not None and info.argv and info.argv[-1] == args[-1]:
            return p
        time.sleep(0.01)
    p.kill()
    raise AssertionError("the child never showed its argv")


def test_proc_and_exec_record_give_the_same_redacted_row() -> None:
    args = ("--secret", SECRET, f"--token={SECRET}", "--password", "two words", f"API_TOKEN={SECRET}", "-p", "8080")
    p = _sleeper(*args)
    try:
        from_proc = ProcessTable("h", FP)
        info = from_proc.seen(p.pid)  # read from /proc/PID/cmdline
        from_exec = ProcessTable("h", FP)
        raw = b"\0".join(a.encode() for a in [sys.executable, "-c", "import time; time.sleep(30)", *args]) + b"\0"
        from_exec.seen(p.pid, ppid=info.ppid, start=info.start_time, argv=raw, is_exec=True)
    finally:
        p.kill()
        p.wait()
    rows_p, secrets_p = from_proc.take_rows()
    rows_e, secrets_e = from_exec.take_rows()
    mine_p = [r for r in rows_p if r["pid"] == p.pid]
    mine_e = [r for r in rows_e if r["pid"] == p.pid]
    assert len(mine_p) == len(mine_e) == 1
    f = FP.fingerprint(SECRET)[:12]
    pw = FP.fingerprint("two words")[:12]
    expected = (f"{sys.executable} -c import time; time.sleep(30) --secret [REDACTED:secret:{f}] "
                f"--token=[REDACTED:token:{f}] --password [REDACTED:password:{pw}] API_TOKEN=[REDACTED:token:{f}] "
                "-p 8080")
    assert mine_p[0]["cmdline"] == mine_e[0]["cmdline"] == expected
    for secrets in (secrets_p, secrets_e):
        assert [(s["kind"], s["last4"], s["direction"], s["location"], s["pid"]) for s in secrets] == [
            ("secret", SECRET[-4:], "cmdline", "cmdline", p.pid), ("token", SECRET[-4:], "cmdline", "cmdline", p.pid),
            ("password", None, "cmdline", "cmdline", p.pid), ("token", SECRET[-4:], "cmdline", "cmdline", p.pid)]
        assert {s["fingerprint"] for s in secrets} == {FP.fingerprint(SECRET), FP.fingerprint("two words")}
    everything = json.dumps([rows_p, secrets_p, rows_e, secrets_e], default=str)
    assert SECRET not in everything and "two words" not in everything
    # the raw argument list is not kept in the cache once redacted
    assert from_proc.get(p.pid).argv is None and from_exec.get(p.pid).argv is None


def test_ancestors_read_from_proc_are_redacted_too() -> None:
    """A child's parent chain is read from /proc when first seen: the parent's secrets are redacted there."""
    code = "import subprocess, sys, time; c = subprocess.Popen(['sleep', '30']); print(c.pid, flush=True); time.sleep(30)"
    parent = subprocess.Popen([sys.executable, "-c", code, "--api-key", SECRET], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        t = ProcessTable("h", FP)
        t.seen(child)
        rows, secrets = t.take_rows()
    finally:
        parent.kill()
        parent.wait()
    up = [r for r in rows if r["pid"] == parent.pid]
    assert len(up) == 1 and up[0]["cmdline"].endswith(f"--api-key [REDACTED:api_key:{FP.fingerprint(SECRET)[:12]}]")
    assert [s["pid"] for s in secrets] == [parent.pid] and SECRET not in json.dumps(rows, default=str)
