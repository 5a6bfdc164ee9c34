"""Server-sent events cut into blocks as bytes arrive, each with its byte span in the body.

The gate forwards an event stream block by block: a block is everything up to and including the
blank line that ends an event (or a comment), so every body byte belongs to exactly one block and
"the first N bytes" of the body always ends on a block boundary. Field parsing follows the WHATWG
rules (as collector.protocols.sse, which parses finished bodies for the store).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TERM = re.compile(rb"\r\n|\r|\n")


@dataclass(slots=True)
class Block:
    start: int  # offset of the block's first byte in the (decoded) body
    end: int  # offset after its blank line
    event: str  # 'message' when the block names none
    data: str | None  # the joined data lines; None for a block without data (comment, keep-alive)
    raw: bytes


def parse_block(raw: bytes) -> tuple[str, str | None]:
    event, data, has_data = "message", [], False
    for line in _TERM.split(raw):
        if not line or line[:1] == b":":
            continue
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
            has_data = True
        elif name == b"event":
            event = value.decode("utf-8", "replace") or "message"
    return event, (b"\n".join(data).decode("utf-8", "replace") if has_data else None)


class SseSplitter:
    """feed(bytes) -> complete blocks; `rest()` is an unterminated tail at the end of the body."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.base = 0  # body offset of buf[0]

    def feed(self, data: bytes, final: bool = False) -> list[Block]:
        """Complete blocks so far; `final`: the body ended, so a CR at its very end is a line end."""
        self.buf += data
        out: list[Block] = []
        buf = self.buf
        pos = 0
        while True:
            end = self._block_end(buf, pos, final)
            if end is None:
                break
            raw = bytes(buf[pos:end])
            event, text = parse_block(raw)
            out.append(Block(self.base + pos, self.base + end, event, text, raw))
            pos = end
        if pos:
            del buf[:pos]
            self.base += pos
        return out

    @staticmethod
    def _block_end(buf: bytearray, pos: int, final: bool = False) -> int | None:
        if b"\r" not in buf:
            i = buf.find(b"\n\n", pos)
            if i >= 0:
                return i + 2
            # a block that is only a blank line (stray newline between events)
            return pos + 1 if buf[pos : pos + 1] == b"\n" else None
        prev_end = pos  # start of the current line
        for m in _TERM.finditer(buf, pos):
            if m.group() == b"\r" and m.end() == len(buf) and not final:
                return None  # a CR at the end may be the first half of CRLF
            if m.start() == prev_end:  # an empty line: the block ends here
                return m.end()
            prev_end = m.end()
        return None

    def finish(self) -> tuple[list[Block], Block | None]:
        """The body ended: its last complete blocks, and a last block without its blank line (a stream
        cut short), if any."""
        return self.feed(b"", final=True), self.rest()

    def rest(self) -> Block | None:
        """What is left that is not a complete block (after `feed(..., final=True)`), if anything."""
        if not self.buf:
            return None
        raw = bytes(self.buf)
        event, text = parse_block(raw)
        blk = Block(self.base, self.base + len(raw), event, text, raw)
        self.base += len(raw)
        self.buf.clear()
        return blk
