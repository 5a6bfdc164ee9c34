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


@dataclass
class SseEvent:
    event: str  # 'message' when absent
    data: str
    id: str | None
    ts: float | None  # arrival of the event's last byte
    complete: bool = True


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

    def ts_at(offset: int) -> float | None:
        if not ends:
            return None
        i = bisect.bisect_left(ends, offset)
        return times[min(i, len(times) - 1)]

    events: list[SseEvent] = []
    data_lines: list[bytes] = []
    state = {"event": b"", "id": None, "fields": False}

    def field(line: bytes) -> None:
        if line[:1] == b":":
            return  # comment / keep-alive
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        state["fields"] = True
        if name == b"data":
            data_lines.append(value)
        elif name == b"event":
            state["event"] = value
        elif name == b"id":
            state["id"] = value

    def dispatch(at: int, complete: bool) -> None:
        if state["fields"]:
            ev_id = state["id"]
            events.append(
                SseEvent(
                    (state["event"] or b"message").decode("utf-8", "replace"),
                    b"\n".join(data_lines).decode("utf-8", "replace"),
                    ev_id.decode("utf-8", "replace") if ev_id is not None else None,
                    ts_at(at),
                    complete,
                )
            )
        data_lines.clear()
        state["event"] = b""
        state["fields"] = False

    pos = 0
    n = len(body)
    while pos < n:
        m = _LINE.search(body, pos)
        if m is None:  # last line without its terminator: the stream was cut
            field(body[pos:])
            break
        line = body[pos : m.start()]
        pos = m.end()
        if line:
            field(line)
        else:
            dispatch(m.start(), True)
    dispatch(n, False)
    return events
