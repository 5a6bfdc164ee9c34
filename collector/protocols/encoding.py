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

from collector.protocols.messages import Chunk

DEFAULT_KEEP = 16 * 1024 * 1024  # decoded bytes kept for parsing (LLM JSON, SSE)
MAX_DECODED = 1024 * 1024 * 1024  # stop decoding (and hashing) a body past this many decoded bytes
_STEP = 64 * 1024  # input slice fed to a decompressor at once (bounds each output burst)


class _Zlib:
    def __init__(self, wbits: int):
        self.d = zlib.decompressobj(wbits)
        self.first = wbits == zlib.MAX_WBITS  # deflate: some servers send raw deflate, retry once

    def feed(self, data: bytes) -> bytes:
        try:
            out = self.d.decompress(data)
        except zlib.error:
            if not self.first:
                raise
            self.d = zlib.decompressobj(-zlib.MAX_WBITS)
            self.first = False
            out = self.d.decompress(data)
        self.first = False
        # gzip members may follow each other (concatenated gzip)
        while self.d.eof and self.d.unused_data:
            rest = self.d.unused_data
            self.d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += self.d.decompress(rest)
        return out

    def flush(self) -> bytes:
        return self.d.flush()


class _Brotli:
    def __init__(self) -> None:
        self.d = brotli.Decompressor()

    def feed(self, data: bytes) -> bytes:
        return self.d.process(data)

    def flush(self) -> bytes:
        return b""


class _Zstd:
    def __init__(self) -> None:
        self.d = zstandard.ZstdDecompressor().decompressobj()

    def feed(self, data: bytes) -> bytes:
        out = self.d.decompress(data)
        while self.d.eof and self.d.unused_data:  # concatenated frames
            rest = self.d.unused_data
            self.d = zstandard.ZstdDecompressor().decompressobj()
            out += self.d.decompress(rest)
        return out

    def flush(self) -> bytes:
        return b""


def _decoder(name: str):
    name = name.strip().lower()
    if name in ("gzip", "x-gzip"):
        return _Zlib(16 + zlib.MAX_WBITS)
    if name == "deflate":
        return _Zlib(zlib.MAX_WBITS)
    if name == "br":
        return _Brotli()
    if name == "zstd":
        return _Zstd()
    if name in ("identity", ""):
        return None
    raise ValueError(f"unsupported content-encoding {name[:32]!r}")


class BodyDecoder:
    """Removes a Content-Encoding list (applied left to right by the sender, so undone right to left).
    After an error `error` is set and further input is dropped (the decoded prefix stays valid)."""

    def __init__(self, content_encoding: str | None):
        self.error: str | None = None
        self.chain = []
        if content_encoding:
            try:
                names = [n for n in content_encoding.split(",") if n.strip()]
                self.chain = [d for d in (_decoder(n) for n in reversed(names)) if d is not None]
            except ValueError as e:
                self.error = str(e)

    def feed(self, data: bytes) -> bytes:
        if self.error:
            return b""
        if not self.chain:
            return data
        out = []
        for i in range(0, len(data), _STEP):
            piece = data[i : i + _STEP]
            try:
                for d in self.chain:
                    piece = d.feed(piece)
            except Exception as e:  # zlib.error, brotli.error, zstd.ZstdError: all mean corrupt input
                self.error = f"content decoding failed: {type(e).__name__}"
                break
            out.append(piece)
        return b"".join(out)

    def flush(self) -> bytes:
        if self.error or not self.chain:
            return b""
        out = b""
        try:
            for d in self.chain:  # flush each decoder and push its tail through the next
                out = (d.feed(out) if out else b"") + d.flush()
        except Exception as e:
            self.error = f"content decoding failed: {type(e).__name__}"
        return out


class Body:
    """A message body as it arrives: decoded, hashed in full, kept up to `keep` bytes.

    `chunks` records (ts, decoded piece) when `keep_chunks` (SSE timing), within the same cap.
    """

    def __init__(self, content_encoding: str | None = None, *, keep: int = DEFAULT_KEEP, keep_chunks: bool = False):
        self.decoder = BodyDecoder(content_encoding)
        self.keep = keep
        self.keep_chunks = keep_chunks
        self.parts: list[bytes] = []
        self.chunks: list[Chunk] = []
        self.kept = 0
        self.size = 0  # decoded bytes seen
        self.wire_size = 0
        self.overflow = False  # more than `keep` bytes: the kept body is a prefix
        self._sha = hashlib.sha256()

    def feed(self, data: bytes, ts: float) -> None:
        self.wire_size += len(data)
        self._add(self.decoder.feed(data), ts)

    def _add(self, out: bytes, ts: float) -> None:
        if not out or self.size >= MAX_DECODED:
            return
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
        self._add(self.decoder.flush(), ts)
        return self.data

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
    """Decode a complete body at once (proxy path); returns (decoded, error)."""
    d = BodyDecoder(content_encoding)
    out = d.feed(data) + d.flush()
    return out, d.error
