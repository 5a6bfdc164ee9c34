"""Running tshark: finding it, writing the small capture it dissects, and its field output.

tshark only ever sees the few packets that need a real dissector (DNS, handshakes); the small
capture is a pcapng with one interface per original link type, so any link type tshark reads works.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import threading
from collections.abc import Iterator

import numpy as np

from collector.capture.records import MappedFile, Records

WTAP_MAX = 262144  # the largest frame Wireshark reads for most link types (WTAP_MAX_PACKET_SIZE_STANDARD)
INSTALL_HINT = "tshark is not installed (or not on PATH): install it with `apt-get install tshark`"
# dissectors that cost time and add nothing to flows/DNS/TLS-handshake fields
DISABLED = ("x509af", "x509ce", "x509sat", "x509if", "pkcs-1", "pkix1explicit", "pkix1implicit", "ocsp",
            "http", "http2", "data-text-lines", "media", "json")


class TsharkMissing(Exception):
    """tshark could not be found; the message says how to install it."""


class TsharkError(Exception):
    """tshark failed; the message is its first error line."""


def tshark_path() -> str:
    path = shutil.which("tshark")
    if not path:
        raise TsharkMissing(INSTALL_HINT)
    return path


def base_args() -> list[str]:
    # sequence analysis and timestamps cost time and are not needed for reassembly
    args = [tshark_path(), "-n", "-Q", "-o", "tcp.analyze_sequence_numbers:FALSE", "-o", "tcp.calculate_timestamps:FALSE"]
    for p in DISABLED:
        args += ["--disable-protocol", p]
    return args


def fields_args(fields: list[str]) -> list[str]:
    args = ["-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,", "-E", "quote=n"]
    for f in fields:
        args += ["-e", f]
    return args


def small_pcapng(mapped: MappedFile, rec: Records, idx: np.ndarray) -> bytes:
    """A pcapng holding records `idx` (original frame bytes, nanosecond timestamps)."""
    return b"".join(pcapng_parts(mapped, rec, idx))


PARTS_CHUNK = 1 << 12  # frames read (MappedFile.slices) and yielded per step of pcapng_parts


def pcapng_parts(mapped: MappedFile, rec: Records, idx: np.ndarray, secrets: list[bytes] = ()) -> Iterator[bytes]:
    """The pieces of a clean pcapng of records `idx`: whatever damage the original file has, tshark reads
    this one, and its frame N is idx[N-1]. Frames beyond WTAP_MAX are cut to it (tshark refuses a
    whole capture over one such frame). `secrets`: key-log texts to carry as Decryption Secrets Blocks.
    Yielded PARTS_CHUNK frames at a time (MappedFile.slices: file order, pages released behind), so
    a caller writing them to a file holds one chunk, not a copy of the capture."""
    lts = sorted({rec.linktypes[i] for i in np.unique(rec.iface[idx]).tolist()}) if len(idx) else [1]
    lt_pos = {lt: k for k, lt in enumerate(lts)}
    iface_map = np.asarray([lt_pos.get(lt, 0) for lt in rec.linktypes] or [0], np.uint32)
    shb = struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)
    parts = [shb]
    for text in secrets:
        body = struct.pack("<II", 0x544C534B, len(text)) + text + b"\0" * (-len(text) % 4)
        parts.append(struct.pack("<II", 0x0A, len(body) + 12) + body + struct.pack("<I", len(body) + 12))
    for lt in lts:
        opts = struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0)  # if_tsresol = 10^-9
        blen = 20 + len(opts)
        parts.append(struct.pack("<IIHHI", 1, blen, lt, 0, 0) + opts + struct.pack("<I", blen))
    yield from parts
    if not len(idx):
        return
    cap = np.minimum(rec.caplen[idx], WTAP_MAX)
    pad = (-cap) % 4
    blen = 32 + cap + pad
    hdr = np.zeros(len(idx), dtype=[("t", "<u4"), ("l", "<u4"), ("if", "<u4"), ("th", "<u4"), ("tl", "<u4"), ("c", "<u4"), ("o", "<u4")])
    ts = rec.ts_ns[idx].astype(np.uint64)
    hdr["t"], hdr["l"], hdr["if"] = 6, blen, iface_map[rec.iface[idx]]
    hdr["th"], hdr["tl"] = ts >> np.uint64(32), ts & np.uint64(0xFFFFFFFF)
    hdr["c"], hdr["o"] = cap, rec.origlen[idx]
    hb = hdr.tobytes()
    trail = blen.astype("<u4").tobytes()
    pads = [b"", b"\0", b"\0\0", b"\0\0\0"]
    start = rec.data_off[idx]
    for i in range(0, len(idx), PARTS_CHUNK):
        j = min(i + PARTS_CHUNK, len(idx))
        frames = mapped.slices(start[i:j], start[i:j] + cap[i:j])
        for k, (frame, p) in enumerate(zip(frames, pad[i:j].tolist(), strict=True), start=i):
            yield hb[k * 28 : k * 28 + 28]
            yield frame
            yield pads[p] + trail[k * 4 : k * 4 + 4]
        del frames  # before the next chunk is read: one chunk in memory, not two


class TsharkJob:
    """A tshark process started early (its dissector registration then overlaps our own work) that
    reads a capture from stdin once `feed()` hands it one; output is collected in a thread."""

    def __init__(self, args: list[str] | None):
        """`args` None: a job that will be cancelled (nothing to dissect), no process."""
        self.args = args
        self.stdout = ""
        self.stderr = ""
        self.returncode: int | None = None
        self._thread: threading.Thread | None = None
        if args is None:
            self._proc = None
            return
        try:
            self._proc: subprocess.Popen | None = subprocess.Popen(
                args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as exc:
            self._proc, self.returncode, self.stderr = None, 127, str(exc)

    def feed(self, data: bytes) -> None:
        self._thread = threading.Thread(target=self._run, args=(data,), name="routerwatch-tshark", daemon=True)
        self._thread.start()

    def _run(self, data: bytes) -> None:
        if self._proc is None:
            return
        out, err = self._proc.communicate(data)
        self.returncode = self._proc.returncode
        self.stdout = out.decode("utf-8", "replace")
        self.stderr = err.decode("utf-8", "replace")

    def result(self) -> str:
        if self._thread is not None:
            self._thread.join()
        if self.returncode not in (0, None) and not self.stdout:
            first = next((ln for ln in self.stderr.splitlines() if ln.strip() and "Running as user" not in ln),
                         f"exit status {self.returncode}")
            raise TsharkError(f"tshark failed: {first}")
        return self.stdout

    def cancel(self) -> None:
        """Stop a process that will get no input (nothing needed dissecting)."""
        if self._proc is not None and self._thread is None:
            self._proc.kill()
            self._proc.communicate()
