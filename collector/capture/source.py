"""What a CAPTURE argument names, turned into a regular file the readers can map and tshark can open.

A regular file is used where it is. stdin (`-`, `/dev/stdin`) and FIFOs are read once, so they are
streamed into a private temporary file (mkstemp: 0600, under $TMPDIR) that is deleted when the ingest
ends; their first bytes are checked before the rest is copied, so `cat notes.txt | routerwatch ingest -`
is refused at once. A pipe that says nothing for `wait_s` seconds is refused (a FIFO no process
writes would otherwise hang the ingest). Directories, devices and sockets are refused at once.
"""

from __future__ import annotations

import errno
import os
import select
import stat
import sys
import tempfile
from pathlib import Path

from collector.capture.records import NotACapture, kind_of

DEFAULT_WAIT_S = 5.0
CHUNK = 1 << 20
STDIN_NAMES = ("-", "/dev/stdin")


class CaptureUnavailable(Exception):
    """The CAPTURE argument names nothing readable as a file (one line, for the user)."""


class CaptureSource:
    """A CAPTURE argument: `check()` looks (stat only, nothing read), `open()` gives a regular file's
    path (spooling a pipe first) and its kind; `close()` deletes a spooled copy."""

    def __init__(self, arg: str | os.PathLike, wait_s: float = DEFAULT_WAIT_S):
        self.arg = str(arg)
        self.wait_s = wait_s
        self.stdin = self.arg == "-"
        self.name = "<stdin>" if self.stdin else self.arg  # what messages and ingest_runs.file call it
        self.path: Path | None = None  # the regular file read (the spooled copy for a pipe)
        self.kind: str | None = None  # 'pcap' | 'pcapng'
        self.size = 0
        self.spooled = False
        self._mode = 0

    def check(self) -> None:
        """Refuse what can never be a capture file, without reading (or waiting on) anything."""
        try:
            st = os.fstat(sys.stdin.fileno()) if self.stdin else os.stat(self.arg)
        except FileNotFoundError:
            raise CaptureUnavailable(f"{self.name}: no such file") from None
        except PermissionError:
            raise CaptureUnavailable(f"{self.name}: permission denied") from None
        except (OSError, ValueError) as exc:  # ValueError: no stdin at all (closed)
            raise CaptureUnavailable(f"{self.name}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
        self._mode = m = st.st_mode
        if stat.S_ISDIR(m):
            raise CaptureUnavailable(f"{self.name} is a directory, not a capture file")
        if stat.S_ISREG(m) or stat.S_ISFIFO(m) or (stat.S_ISSOCK(m) and self._via_fd()):
            return
        if stat.S_ISCHR(m) and self._via_fd() and os.isatty(sys.stdin.fileno()) and self.arg in STDIN_NAMES:
            raise CaptureUnavailable(f"{self.name} is a terminal: pipe a capture in (`... | routerwatch ingest -`)")
        what = ("a character device" if stat.S_ISCHR(m) else "a block device" if stat.S_ISBLK(m)
                else "a socket" if stat.S_ISSOCK(m) else "not a regular file")
        raise CaptureUnavailable(f"{self.name} is {what}, not a capture file")

    def open(self) -> Path:
        """The regular file to read; NotACapture when its first bytes are no capture's."""
        if stat.S_ISREG(self._mode) and not self._via_fd():
            self.path = Path(self.arg)
            try:
                with open(self.path, "rb") as f:
                    head = f.read(64)
                    self.size = os.fstat(f.fileno()).st_size
            except PermissionError:
                raise CaptureUnavailable(f"{self.name}: permission denied") from None
            except OSError as exc:
                raise CaptureUnavailable(f"{self.name}: cannot read ({exc.strerror})") from None
            self.kind = kind_of(head[:4], self.name)
        else:
            self._spool()
            with open(self.path, "rb") as f:
                head = f.read(64)
        check_header(head, self.size, self.kind, self.name)
        return self.path

    def _via_fd(self) -> bool:
        """stdin or a path to one of this process's descriptors (`<(...)`): only this process can open
        it, not tshark, and a pipe behind it reads once: always spooled."""
        return self.arg in STDIN_NAMES or self.arg.startswith(("/dev/fd/", "/proc/self/fd/"))

    def _spool(self) -> None:
        if self.stdin:
            fd, own = sys.stdin.fileno(), False
        else:
            try:  # O_NONBLOCK: opening a FIFO with no writer would block forever
                fd, own = os.open(self.arg, os.O_RDONLY | os.O_NONBLOCK), True
            except OSError as exc:
                raise CaptureUnavailable(f"{self.name}: cannot open ({exc.strerror})") from None
        try:
            head = self._first_bytes(fd)
            self.kind = kind_of(head, self.name)
            if own:
                os.set_blocking(fd, True)
            out, tmp = tempfile.mkstemp(prefix="routerwatch-ingest-", suffix="." + self.kind)
            self.path, self.spooled = Path(tmp), True
            try:
                self.size = _copy(fd, out, head, self.name)
            finally:
                os.close(out)
        finally:
            if own:
                os.close(fd)

    def _first_bytes(self, fd: int) -> bytes:
        """Up to 4 bytes, waiting at most wait_s for the first; b'' when the writer closed without any."""
        poll = select.poll()
        poll.register(fd, select.POLLIN)
        if not poll.poll(max(0.0, self.wait_s) * 1000):
            raise CaptureUnavailable(f"{self.name}: nothing arrived in {self.wait_s:g} s (a pipe or FIFO "
                                     "with no writer?)")
        head = b""
        while len(head) < 4:
            try:
                chunk = os.read(fd, 4 - len(head))
            except BlockingIOError:
                if not poll.poll(max(0.0, self.wait_s) * 1000):
                    break
                continue
            if not chunk:
                break
            head += chunk
        return head

    def close(self) -> None:
        if self.spooled and self.path is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            self.spooled = False

    def __enter__(self) -> CaptureSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_header(head: bytes, size: int, kind: str, name: str) -> None:
    """The file header of a capture (the first bytes, `head`) is whole and valid, else NotACapture:
    a capture whose header is cut or corrupt is refused, not ingested as an empty `partial` run."""
    if kind == "pcap":
        from collector.capture.pcap import check_header as check
    else:
        from collector.capture.pcapng import check_header as check
    check(head, size, name)


def _copy(src: int, dst: int, head: bytes, name: str) -> int:
    """Everything left in `src` after `head` into `dst`; the byte count."""
    total = 0
    try:
        os.write(dst, head)
        total = len(head)
        while chunk := os.read(src, CHUNK):
            view = memoryview(chunk)
            while view:
                view = view[os.write(dst, view):]
            total += len(chunk)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CaptureUnavailable(f"{name}: no space left in {tempfile.gettempdir()} for the capture read from "
                                     "it (set TMPDIR to a larger file system)") from None
        raise CaptureUnavailable(f"{name}: read failed ({exc.strerror})") from None
    return total


__all__ = ["CaptureSource", "CaptureUnavailable", "DEFAULT_WAIT_S", "NotACapture"]
