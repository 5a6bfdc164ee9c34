"""Content-Encoding removal (gzip, deflate, br, zstd) and bounded body accumulation.

Bodies are decoded incrementally as bytes arrive, hashed in full (sha256 of the decoded body) and
kept only up to a cap, so a body of hundreds of MB, or a compression bomb, costs a digest and
constant memory rather than its size. Decoding stops at `MAX_DECODED` bytes per body.
"""

from __future__ import annotations

import hashlib
import zlib

import brotli
import zstandard

from collector.protocols.messages import Chunk, HttpRequest, HttpResponse

DEFAULT_KEEP = 16 * 1024 * 1024  # decoded bytes kept for parsing (LLM JSON, SSE)
MAX_DECODED = 1024 * 1024 * 1024  # stop decoding (and hashing) a body past this many decoded bytes
PIECE = 1024 * 1024  # decoded piece size a decompressor hands on at once (brotli may reach ~2x): bounds memory on bombs


class _Stop(Exception):
    """The consumer has enough (MAX_DECODED): stop decompressing."""


def _zlib_header(head: bytes) -> bool:
    """Whether two bytes open a zlib stream (RFC 1950: deflate, window <= 32 KiB, no preset
    dictionary, header checksum): how `Content-Encoding: deflate` is told from raw deflate."""
    cmf, flg = head[0], head[1]
    return cmf & 0x0F == 8 and cmf >> 4 <= 7 and not flg & 0x20 and (cmf << 8 | flg) % 31 == 0


class _Zlib:
    def __init__(self, wbits: int, emit):
        self.wbits = wbits
        self.emit = emit
        self.d = zlib.decompressobj(wbits)
        # deflate: meant to be zlib-wrapped, but some servers send raw deflate; the first two bytes
        # decide (as browsers do), so the choice never depends on how the body was cut into reads
        self.head: bytes | None = b"" if wbits == zlib.MAX_WBITS else None

    def write(self, data: bytes) -> None:
        if self.head is not None:
            self.head += data
            if len(self.head) < 2:
                return
            data, head, self.head = self.head, self.head, None
            if not _zlib_header(head):
                self.d = zlib.decompressobj(-zlib.MAX_WBITS)
        self._drain(self.d.decompress(data, PIECE))

    def _drain(self, out: bytes) -> None:
        while True:
            if out:
                self.emit(out)
            if self.d.unconsumed_tail:
                out = self.d.decompress(self.d.unconsumed_tail, PIECE)
                continue
            if self.d.eof and self.d.unused_data and self.wbits != zlib.MAX_WBITS:
                rest = self.d.unused_data  # concatenated gzip members
                self.d = zlib.decompressobj(self.wbits)
                out = self.d.decompress(rest, PIECE)
                continue
            return

    def flush(self) -> None:
        if self.head:  # a single byte: too short for a zlib header, so raw deflate
            data, self.head = self.head, None
            self.d = zlib.decompressobj(-zlib.MAX_WBITS)
            self._drain(self.d.decompress(data, PIECE))
        out = self.d.flush()
        if out:
            self.emit(out)


class _Brotli:
    def __init__(self, emit):
        self.emit = emit
        self.d = brotli.Decompressor()

    def write(self, data: bytes) -> None:
        out = self.d.process(data, output_buffer_limit=PIECE)
        while True:
            if out:
                self.emit(out)
            if self.d.can_accept_more_data():
                return
            out = self.d.process(b"", output_buffer_limit=PIECE)

    def flush(self) -> None:
        while not self.d.is_finished():  # output still buffered in the decoder
            out = self.d.process(b"", output_buffer_limit=PIECE)
            if not out:
                return
            self.emit(out)


class _Emit:
    def __init__(self, emit):
        self.emit = emit

    def write(self, data: bytes) -> int:
        self.emit(data)
        return len(data)


class _Zstd:
    def __init__(self, emit):
        self.w = zstandard.ZstdDecompressor().stream_writer(_Emit(emit), write_size=PIECE)

    def write(self, data: bytes) -> None:
        self.w.write(data)

    def flush(self) -> None:
        self.w.flush()


def _stage(name: str, emit):
    name = name.strip().lower()
    if name in ("gzip", "x-gzip"):
        return _Zlib(16 + zlib.MAX_WBITS, emit)
    if name == "deflate":
        return _Zlib(zlib.MAX_WBITS, emit)
    if name == "br":
        return _Brotli(emit)
    if name == "zstd":
        return _Zstd(emit)
    if name in ("identity", ""):
        return None
    raise ValueError(f"unsupported content-encoding {name[:32]!r}")


class BodyDecoder:
    """Removes a Content-Encoding list (applied left to right by the sender, so undone right to left).

    Push-based: decoded pieces (at most PIECE bytes each) go to `sink`; `feed()` without a sink returns
    them joined. After an error `error` is set and further input is dropped (the decoded prefix stays)."""

    def __init__(self, content_encoding: str | None, sink=None):
        self.error: str | None = None
        self._out: list[bytes] = []
        self.sink = sink or self._out.append
        self.first = None
        self.stages: list = []
        if content_encoding:
            try:
                names = [n for n in content_encoding.split(",") if n.strip()]
                emit = self._deliver
                stages = []
                for n in names:  # the last-applied coding is undone first: build from the sink outwards
                    st = _stage(n, emit)
                    if st is not None:
                        stages.append(st)
                        emit = st.write
                self.stages = list(reversed(stages))  # first stage sees wire bytes
                self.first = self.stages[0] if self.stages else None
            except ValueError as e:
                self.error = str(e)

    def _deliver(self, data: bytes) -> None:
        self.sink(data)

    def feed(self, data: bytes) -> bytes:
        if not self.error and data:
            try:
                if self.first is None:
                    self.sink(data)
                else:
                    self.first.write(data)
            except _Stop:
                self.error = "decoded body exceeds the size limit"
            except Exception as e:  # zlib.error, brotli.error, zstd.ZstdError: all mean corrupt input
                self.error = f"content decoding failed: {type(e).__name__}"
        return self._take()

    def flush(self) -> bytes:
        if not self.error and self.first is not None:
            try:
                for st in self.stages:  # outermost first, its tail pushed through the rest
                    st.flush()
            except _Stop:
                self.error = "decoded body exceeds the size limit"
            except Exception as e:
                self.error = f"content decoding failed: {type(e).__name__}"
        return self._take()

    def _take(self) -> bytes:
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out.clear()
        return out


class Body:
    """A message body as it arrives: decoded, hashed in full, kept up to `keep` bytes.

    `chunks` records (ts, decoded piece) when `keep_chunks` (SSE timing), within the same cap.
    """

    def __init__(self, content_encoding: str | None = None, *, keep: int = DEFAULT_KEEP, keep_chunks: bool = False):
        self.decoder = BodyDecoder(content_encoding, sink=self._piece)
        self._ts = 0.0
        self.keep = keep
        self.keep_chunks = keep_chunks
        self.parts: list[bytes] = []
        self.chunks: list[Chunk] = []
        self.kept = 0
        self.size = 0  # decoded bytes seen
        self.overflow = False  # more than `keep` bytes: the kept body is a prefix
        self._sha = hashlib.sha256()

    def feed(self, data: bytes, ts: float) -> None:
        self._ts = ts
        self.decoder.feed(data)

    def _piece(self, out: bytes) -> None:
        self._add(out, self._ts)

    def _add(self, out: bytes, ts: float) -> None:
        if not out:
            return
        if self.size >= MAX_DECODED:
            raise _Stop
        self.size += len(out)
        self._sha.update(out)
        room = self.keep - self.kept
        if room <= 0:
            self.overflow = True
            return
        if len(out) > room:
            out = out[:room]
            self.overflow = True
        self.parts.append(out)
        self.kept += len(out)
        if self.keep_chunks:
            self.chunks.append(Chunk(ts, out))

    def finish(self, ts: float) -> bytes:
        self._ts = ts
        self.decoder.flush()
        return self.data

    def finish_into(self, msg: HttpRequest | HttpResponse, ts: float) -> None:
        """End the body and record it on the message it belongs to (HTTP/1.1 and HTTP/2 alike): the
        kept bytes, decoded size, SHA-256, whether it was capped, a decoding error unless the message
        already has one, and a response's timed chunks."""
        msg.body = self.finish(ts)
        msg.body_size, msg.body_sha256, msg.body_capped = self.size, self.sha256, self.overflow
        if self.error and not msg.error:
            msg.error = self.error
        if isinstance(msg, HttpResponse):
            msg.chunks = self.chunks

    @property
    def data(self) -> bytes:
        if len(self.parts) > 1:
            self.parts = [b"".join(self.parts)]
        return self.parts[0] if self.parts else b""

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    @property
    def error(self) -> str | None:
        return self.decoder.error



def decode_all(data: bytes, content_encoding: str | None) -> tuple[bytes, str | None]:
    """Decode a complete body at once; returns (decoded, error). The policy gate's tests check what the
    gate re-encoded with it."""
    d = BodyDecoder(content_encoding)
    out = d.feed(data) + d.flush()
    return out, d.error
