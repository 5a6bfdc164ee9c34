"""Server-sent events (text/event-stream) parsing, byte-exact, with arrival times.

Follows the WHATWG event-stream rules: lines end in CRLF, LF or CR; `data:` lines join with LF;
one optional space after the colon is dropped; a blank line dispatches the event; a trailing
event without its blank line is reported with `complete=False` (a stream cut short).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from collector.protocols.messages import Chunk

_LINE = re.compile(rb"\r\n|\r|\n")


@dataclass(slots=True)
class SseEvent:
    event: str  # 'message' when absent
    data: str
    id: str | None
    ts: float | None  # arrival of the event's last byte
    complete: bool = True


def _lines(body: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """(offset, line) of every terminated line, and the unterminated rest. Without CR (what servers
    send) one bytes.split; else the CRLF | CR | LF regex."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    if b"\r" not in body:
        parts = body.split(b"\n")
        rest = parts.pop()
        for line in parts:
            out.append((pos, line))
            pos += len(line) + 1
        return out, rest
    n = len(body)
    while pos < n:
        m = _LINE.search(body, pos)
        if m is None:
            return out, body[pos:]
        out.append((pos, body[pos : m.start()]))
        pos = m.end()
    return out, b""


def parse_sse(body: bytes, chunks: list[Chunk] | None = None) -> list[SseEvent]:
    """Events of an event-stream body. `chunks` (body pieces with arrival times) give each event a ts."""
    ends: list[int] = []
    times: list[float] = []
    if chunks:
        off = 0
        for c in chunks:
            off += len(c.data)
            ends.append(off)
            times.append(c.ts)
    last = len(times) - 1
    events: list[SseEvent] = []
    data_lines: list[bytes] = []
    event = b""
    ev_id: bytes | None = None
    fields = False
    lines, rest = _lines(body)
    if rest:
        lines.append((-1, rest))  # a last line without its terminator: the stream was cut
    for at, line in lines:
        if line:
            if line[:1] == b":":
                continue  # comment / keep-alive
            name, sep, value = line.partition(b":")
            if sep and value[:1] == b" ":
                value = value[1:]
            fields = True
            if name == b"data":
                data_lines.append(value)
            elif name == b"event":
                event = value
            elif name == b"id":
                ev_id = value
            continue
        if fields:  # a blank line dispatches the event
            data = data_lines[0] if len(data_lines) == 1 else b"\n".join(data_lines)
            events.append(SseEvent(
                event.decode("utf-8", "replace") if event else "message", data.decode("utf-8", "replace"),
                ev_id.decode("utf-8", "replace") if ev_id is not None else None,
                (times[min(bisect.bisect_left(ends, at), last)] if ends else None)))
            data_lines.clear()
            event = b""
            fields = False
        else:
            data_lines.clear()
            event = b""
    if fields:
        data = data_lines[0] if len(data_lines) == 1 else b"\n".join(data_lines)
        events.append(SseEvent(
            event.decode("utf-8", "replace") if event else "message", data.decode("utf-8", "replace"),
            ev_id.decode("utf-8", "replace") if ev_id is not None else None,
            (times[min(bisect.bisect_left(ends, len(body)), last)] if ends else None), False))
    return events
