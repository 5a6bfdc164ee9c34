"""NSS key-log files (SSLKEYLOGFILE, node --tls-keylog): validation before decryption.

A wrong key-log path or a file of the wrong format makes tshark decrypt nothing and still exit 0,
so a key log is checked here first: it must exist, be readable and hold at least one well-formed
line. Errors name line numbers and labels, never the secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

LABELS = frozenset({
    "CLIENT_RANDOM", "RSA", "CLIENT_EARLY_TRAFFIC_SECRET", "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0",
    "EARLY_EXPORTER_SECRET", "EXPORTER_SECRET", "EARLY_EXPORTER_MASTER_SECRET", "EXPORTER_MASTER_SECRET",
})  # fmt: skip
_HEX = re.compile(r"[0-9a-fA-F]+")
MAX_BYTES = 512 * 1024 * 1024


class KeyLogError(Exception):
    """The key log cannot be used (missing, unreadable, empty or not in NSS key-log format)."""


@dataclass
class KeyLogInfo:
    path: Path
    lines: int = 0  # well-formed key lines
    invalid: int = 0  # non-comment lines that are not key lines
    labels: Counter = field(default_factory=Counter)
    client_randoms: set[str] = field(default_factory=set)  # lower-case hex; public values (sent in clear)
    world_readable: bool = False


def read_keylog(path: str | os.PathLike) -> KeyLogInfo:
    """Parse and validate a key log; raises KeyLogError when it holds no usable line."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise KeyLogError(f"key log {p}: no such file") from None
    except PermissionError:
        raise KeyLogError(f"key log {p}: permission denied") from None
    except OSError as e:
        raise KeyLogError(f"key log {p}: {e.strerror or 'cannot be read'}") from None
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device would be read once, or block: never opened
        what = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO (a pipe)" if stat.S_ISFIFO(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
        raise KeyLogError(f"key log {p} is {what}: give a regular key-log file (0600)")
    if not os.access(p, os.R_OK):
        raise KeyLogError(f"key log {p}: permission denied")
    if st.st_size > MAX_BYTES:
        raise KeyLogError(f"key log {p} is larger than {MAX_BYTES >> 20} MiB")
    info = KeyLogInfo(p, world_readable=bool(st.st_mode & 0o004))
    try:
        text = p.read_text("ascii", errors="replace")
    except PermissionError:
        raise KeyLogError(f"key log {p}: permission denied") from None
    except OSError as e:
        raise KeyLogError(f"key log {p}: {e.strerror or 'cannot be read'}") from None
    first_bad: int | None = None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if _well_formed(parts):
            info.lines += 1
            info.labels[parts[0]] += 1
            if parts[0] != "RSA":
                info.client_randoms.add(parts[1].lower())
        else:
            info.invalid += 1
            first_bad = first_bad or n
    if info.lines == 0:
        if info.invalid:
            raise KeyLogError(
                f"key log {p} is not an NSS key log: none of its {info.invalid} lines is "
                f"'<LABEL> <client_random hex> <secret hex>' (first bad line {first_bad})"
            )
        raise KeyLogError(f"key log {p} is empty")
    return info


def _well_formed(parts: list[str]) -> bool:
    """`<LABEL> <client random hex> <secret hex>` (RSA lines carry an encrypted pre-master instead)."""
    return (
        len(parts) == 3
        and parts[0] in LABELS
        and _HEX.fullmatch(parts[1]) is not None
        and _HEX.fullmatch(parts[2]) is not None
        and (parts[0] == "RSA" or len(parts[1]) == 64)
    )


def keylog_digest(path: str | os.PathLike, key: bytes) -> str:
    """A keyed digest of the secrets in a key log: HMAC-SHA256 with the store's key over its well-formed
    lines, normalised (lower-case hex, single spaces), de-duplicated and sorted, so comments, order and
    repeats do not change it. Ingest records it to tell whether a later run brings keys an earlier one
    did not have; keyed, so a stored digest cannot be tested against a guessed key log elsewhere."""
    lines = set()
    for line in Path(path).read_text("ascii", errors="replace").splitlines():
        parts = line.split()
        if _well_formed(parts):
            lines.add(f"{parts[0]} {parts[1].lower()} {parts[2].lower()}")
    body = "\n".join(sorted(lines)).encode()
    return hmac.new(key, b"routerwatch key log v1\n" + body, hashlib.sha256).hexdigest()[:32]


Secrets = dict[tuple[str, bytes], bytes]  # (label, client random) -> secret


def parse_secrets(text: bytes | str, into: Secrets) -> None:
    """Add the well-formed key lines of a key log (a file or a pcapng Decryption Secrets Block) to
    `into`; malformed lines are skipped (read_keylog reports them)."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or parts[0] not in LABELS or parts[0] == "RSA":
            if len(parts) == 3 and parts[0] == "RSA":
                into[("RSA", b"")] = b""  # RSA pre-master secrets: only tshark uses them
            continue
        try:
            into[(parts[0], bytes.fromhex(parts[1]))] = bytes.fromhex(parts[2])
        except ValueError:
            continue


def load_secrets(path: str | os.PathLike | None, embedded: list[bytes] = ()) -> Secrets:
    """Secrets of a key log (already validated by read_keylog) plus embedded key-log text."""
    out: Secrets = {}
    for text in embedded:
        parse_secrets(text, out)
    if path is not None:
        parse_secrets(Path(path).read_bytes(), out)
    return out
