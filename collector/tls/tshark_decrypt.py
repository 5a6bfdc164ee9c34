"""tshark as a decryptor only: TLS records in, decrypted bytes (hex) per TCP segment out.

HTTP and HTTP/2 dissectors are disabled, so decrypted application data lands in `data.data`
byte-exact (tshark's own HTTP body fields lose bytes: U+FFFD for non-ASCII, duplicated HTTP/2
bodies). Output is streamed line by line, so Python parses while tshark decrypts (two cores).
Embedded pcapng Decryption Secrets Blocks are honoured by tshark without any option.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from collector.capture.tshark import TsharkError, base_args, fields_args

FIELDS = [
    "frame.time_epoch", "tcp.stream", "ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport",
    "tcp.seq", "tcp.nxtseq", "tcp.flags.syn", "tcp.flags.ack", "tcp.flags.fin", "tcp.flags.reset",
    "tls.record.content_type", "tls.handshake.type", "tls.handshake.random",
    "tls.handshake.extensions_server_name", "tls.handshake.extensions_alpn_str", "data.data",
]  # fmt: skip
DISPLAY_FILTER = "tcp && (tls || data || tcp.flags.syn == 1 || tcp.flags.fin == 1 || tcp.flags.reset == 1)"


@dataclass(slots=True)
class Segment:
    """One tshark output row: a TCP segment and whatever TLS/decrypted payload completed in it."""

    ts: float
    stream: int
    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    nxtseq: int
    syn: bool
    ack: bool
    fin: bool
    rst: bool
    record_types: str  # comma-separated TLS record content types ('' when none)
    handshake_types: str
    client_random: str | None  # of a ClientHello in this segment
    sni: str | None
    alpn: str | None
    data: bytes  # decrypted (or cleartext) payload completed in this segment
    # the native decryptor reassembles TCP itself (seq/nxtseq 0) and reports a connection's counts
    # on its first segment
    retrans: int = 0
    gaps: int = 0


def tshark_args(capture: Path, keylog: Path | None) -> list[str]:
    args = base_args()
    if keylog is not None:
        args += ["-o", f"tls.keylog_file:{keylog}"]
    args += ["-r", str(capture), "-Y", DISPLAY_FILTER]
    return args + fields_args(FIELDS)


def _last(v: str) -> str:
    """Innermost value of a repeated field (tunnels): the last occurrence."""
    i = v.rfind(",")
    return v[i + 1 :] if i >= 0 else v


def _int(v: str) -> int:
    try:
        return int(_last(v)) if v else 0
    except ValueError:
        return 0


def parse_line(line: str) -> Segment | None:
    f = line.rstrip("\n").split("\t")
    if len(f) < len(FIELDS) or not f[1]:
        return None
    try:
        ts = float(f[0])
        stream = int(f[1])
    except ValueError:
        return None
    hs = f[15]
    rnd = None
    if f[16] and hs and hs.split(",")[0] == "1":
        rnd = f[16].split(",")[0].lower()
    hexdata = f[19]
    try:
        data = bytes.fromhex(hexdata.replace(",", "")) if hexdata else b""
    except ValueError:
        data = b""
    return Segment(
        ts, stream, _last(f[2] or f[3]), _int(f[4]), _last(f[5] or f[6]), _int(f[7]), _int(f[8]), _int(f[9]),
        f[10] in ("1", "True"), f[11] in ("1", "True"), f[12] in ("1", "True"), f[13] in ("1", "True"),
        f[14], hs, rnd, f[17].split(",")[0] or None, f[18] or None, data,
    )


class TsharkDecrypt:
    """Run tshark over a capture and iterate its segments as they are produced."""

    def __init__(self, capture: Path, keylog: Path | None):
        self.args = tshark_args(capture, keylog)
        self.returncode: int | None = None
        self.rows = 0
        self._stderr = tempfile.TemporaryFile()

    def __iter__(self) -> Iterator[Segment]:
        proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
                                encoding="utf-8", errors="replace", bufsize=1 << 20)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                seg = parse_line(line)
                if seg is not None:
                    self.rows += 1
                    yield seg
        finally:
            if proc.poll() is None and proc.stdout is not None:
                proc.stdout.close()
            self.returncode = proc.wait()
        if self.returncode not in (0, None) and self.rows == 0:
            self._stderr.seek(0)
            err = self._stderr.read().decode("utf-8", "replace")
            first = next((ln for ln in err.splitlines() if ln.strip() and "Running as user" not in ln),
                         f"exit status {self.returncode}")
            raise TsharkError(f"tshark failed: {first[:300]}")

    def stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")
