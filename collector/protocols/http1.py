"""HTTP/1.x message parsing from one direction's byte stream (sans-IO, incremental).

Bytes go in as they arrive (`feed(data, ts)`); complete `HttpRequest`/`HttpResponse` objects come
out. Bodies are framed by Content-Length, chunked transfer coding, or the end of the connection,
decoded (Content-Encoding) and kept up to a cap with a digest of the whole (see encoding.Body).
Broken input (oversized or garbled headers, bad chunk sizes) ends parsing of that direction with
`error` set on the message in progress; it never raises.
"""

from __future__ import annotations

from collector.protocols.encoding import DEFAULT_KEEP, Body
from collector.protocols.messages import HttpRequest, HttpResponse

MAX_HEAD = 256 * 1024  # start line + headers
MAX_CHUNK_LINE = 4096
_METHODS = {
    b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE", b"PRI",
}

_HEAD, _FIXED, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _UNTIL_CLOSE, _DEAD = range(8)


def looks_like_http1_request(data: bytes) -> bool:
    """True when `data` starts like an HTTP/1.x request line (used to sniff plaintext streams)."""
    sp = data.find(b" ", 0, 10)
    return sp > 0 and data[:sp] in _METHODS and data[:sp] != b"PRI"


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


class Http1Parser:
    """One direction of an HTTP/1.x connection. `role` is 'request' (client bytes) or 'response'.

    For responses, `request_methods` (a list the caller appends to as requests are parsed) tells
    which responses have no body (HEAD) and when a CONNECT turned the connection into a tunnel.
    """

    def __init__(self, role: str, *, keep: int = DEFAULT_KEEP, request_methods: list[str] | None = None):
        self.role = role
        self.keep = keep
        self.request_methods = request_methods if request_methods is not None else []
        self.final_responses = 0
        self.buf = bytearray()
        self.state = _HEAD
        self.remaining = 0
        self.msg: HttpRequest | HttpResponse | None = None
        self.body: Body | None = None
        self.out: list[HttpRequest | HttpResponse] = []
        self.error: str | None = None
        self.last_ts = 0.0
        # after a 101 Switching Protocols (or a CONNECT tunnel): the bytes that followed the response
        # head, for whatever protocol comes next (None: no switch)
        self.switched: bytes | None = None

    # -- input -------------------------------------------------------------------------------
    def feed(self, data: bytes, ts: float) -> list[HttpRequest | HttpResponse]:
        self.last_ts = ts
        if self.state == _DEAD or not data:
            return self._take()
        if self.state in (_FIXED, _CHUNK_DATA, _UNTIL_CLOSE) and not self.buf:
            self._body_fast(memoryview(data), ts)
        else:
            self.buf += data
            self._run(ts)
        return self._take()

    def close(self, ts: float | None = None, truncated: bool = False) -> list[HttpRequest | HttpResponse]:
        """The direction ended (FIN, or the capture ended when `truncated`)."""
        ts = self.last_ts if ts is None else ts
        if self.msg is not None:
            if self.state == _UNTIL_CLOSE and not truncated:
                self._finish(ts)
            else:
                self.msg.truncated = True
                self._finish(ts)
        elif self.state == _HEAD and self.buf.strip():
            self.error = self.error or "connection ended inside message headers"
        self.state = _DEAD
        self.buf.clear()
        return self._take()

    def _take(self) -> list[HttpRequest | HttpResponse]:
        out, self.out = self.out, []
        return out

    # -- state machine -----------------------------------------------------------------------
    def _body_fast(self, mv: memoryview, ts: float) -> None:
        """Body bytes straight from the input without copying into the buffer."""
        assert self.body is not None
        if self.state == _UNTIL_CLOSE:
            self.body.feed(bytes(mv), ts)
            return
        n = min(self.remaining, len(mv))
        self.body.feed(bytes(mv[:n]), ts)
        self.remaining -= n
        rest = mv[n:]
        if self.remaining == 0:
            if self.state == _FIXED:
                self._finish(ts)
            else:
                self.state = _CHUNK_CRLF
        if len(rest):
            self.buf += rest
            self._run(ts)

    def _run(self, ts: float) -> None:
        """Consume the buffer through the parser's states (head, fixed body, chunk size/data/trailer,
        until close) as far as its bytes go.

        Long because it is one loop rather than a method per state: it runs for every chunk fed on the
        decode hot path, and the states hand each other `buf` and `pos` as locals, not attributes."""
        buf = self.buf
        pos = 0
        while self.state != _DEAD:
            st = self.state
            if st == _HEAD:
                # tolerate stray CRLFs between messages
                while pos < len(buf) and buf[pos] in (13, 10):
                    pos += 1
                # the head ends at its first blank line, whichever line endings it uses (CRLF, LF or
                # both): the earliest LF followed by LF or CRLF, so it ends at the same place
                # however the bytes were cut into feeds
                limit = pos + MAX_HEAD + 4
                lf = buf.find(b"\n\r\n", pos, limit)
                after = lf + 3
                lf2 = buf.find(b"\n\n", pos, lf + 1 if lf >= 0 else limit)  # only an earlier one matters
                if lf2 >= 0:
                    lf, after = lf2, lf2 + 2
                elif lf < 0:
                    if len(buf) - pos > MAX_HEAD:
                        self._die("message headers exceed the size limit")
                    break
                end = lf - 1 if lf > pos and buf[lf - 1] == 13 else lf
                if end - pos > MAX_HEAD:
                    self._die("message headers exceed the size limit")
                    break
                head = bytes(buf[pos:end])
                pos = after
                self._start(head, ts)
            elif st in (_FIXED, _CHUNK_DATA):
                n = min(self.remaining, len(buf) - pos)
                if n <= 0:
                    break
                self.body.feed(bytes(buf[pos : pos + n]), ts)
                pos += n
                self.remaining -= n
                if self.remaining == 0:
                    if st == _FIXED:
                        self._finish(ts)
                    else:
                        self.state = _CHUNK_CRLF
            elif st == _CHUNK_SIZE:
                end = buf.find(b"\n", pos)
                if end < 0:
                    if len(buf) - pos > MAX_CHUNK_LINE:
                        self._die("chunk size line too long")
                    break
                line = bytes(buf[pos:end]).strip()
                pos = end + 1
                size_txt = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_txt, 16)
                    if size < 0 or not size_txt or any(c not in b"0123456789abcdefABCDEF" for c in size_txt):
                        raise ValueError
                except ValueError:
                    self._die("invalid chunk size")
                    break
                if size == 0:
                    self.state = _TRAILERS
                else:
                    self.remaining = size
                    self.state = _CHUNK_DATA
            elif st == _CHUNK_CRLF:
                if len(buf) - pos < 1:
                    break
                if buf[pos] == 13:
                    if len(buf) - pos < 2:
                        break
                    pos += 2 if buf[pos + 1] == 10 else 1
                elif buf[pos] == 10:
                    pos += 1
                else:
                    self._die("missing CRLF after chunk data")
                    break
                self.state = _CHUNK_SIZE
            elif st == _TRAILERS:
                end = buf.find(b"\n", pos)
                if end < 0:
                    if len(buf) - pos > MAX_HEAD:
                        self._die("trailers exceed the size limit")
                    break
                line = bytes(buf[pos:end]).strip()
                pos = end + 1
                if not line:
                    self._finish(ts)
            elif st == _UNTIL_CLOSE:
                if pos < len(buf):
                    self.body.feed(bytes(buf[pos:]), ts)
                    pos = len(buf)
                break
        if self.state == _DEAD:
            if self.switched is not None:
                self.switched += bytes(buf[pos:])
            buf.clear()
        elif pos:
            del buf[:pos]

    def _die(self, why: str) -> None:
        self.error = why
        if self.msg is not None:
            self.msg.error = why
            self.msg.truncated = True
            self._finish(self.last_ts)
        self.state = _DEAD

    def _start(self, head: bytes, ts: float) -> None:
        lines = head.replace(b"\r\n", b"\n").split(b"\n")
        start = lines[0].decode("latin-1")
        headers: list[tuple[str, str]] = []
        for raw in lines[1:]:
            if not raw:
                continue
            if raw[:1] in (b" ", b"\t") and headers:  # obsolete line folding
                k, v = headers[-1]
                headers[-1] = (k, v + " " + raw.strip().decode("latin-1"))
                continue
            k, sep, v = raw.partition(b":")
            if not sep:
                continue
            headers.append((k.strip().decode("latin-1"), v.strip().decode("latin-1")))
        parts = start.split(" ", 2)
        if self.role == "request":
            if len(parts) < 2 or parts[0].encode() not in _METHODS:
                self._die("not an HTTP/1.x request")
                return
            method, target = parts[0], parts[1]
            version = parts[2] if len(parts) > 2 else "HTTP/1.0"
            host = _header(headers, "host") or ""
            path = target
            if target.startswith(("http://", "https://")):  # absolute form (proxies)
                rest = target.split("://", 1)[1]
                host_part, slash, tail = rest.partition("/")
                host = host or host_part
                path = slash + tail or "/"
            self.msg = HttpRequest(method, host, path, headers, b"", ts, http_version=version.strip())
            self.request_methods.append(method)
            self._body_framing(headers, is_request=True, method=method, status=0, ts=ts)
        else:
            code = parts[1][:3] if len(parts) > 1 else ""
            if not parts[0].startswith("HTTP/") or len(code) != 3 or not (code.isascii() and code.isdigit()):
                self._die("not an HTTP/1.x response")
                return
            status = int(code)
            self.msg = HttpResponse(status, headers, b"", ts, http_version=parts[0])
            if 100 <= status < 200 and status != 101:
                self.msg = None  # interim response: the final one follows
                return
            idx = self.final_responses
            self.final_responses += 1
            method = self.request_methods[idx] if idx < len(self.request_methods) else "GET"
            self._body_framing(headers, is_request=False, method=method, status=status, ts=ts)
            if status == 101 or (method == "CONNECT" and 200 <= status < 300):
                self.state = _DEAD  # protocol switch / tunnel: what follows is not HTTP/1
                self.switched = b""

    def _body_framing(self, headers, *, is_request: bool, method: str, status: int, ts: float) -> None:
        te = (_header(headers, "transfer-encoding") or "").lower()
        cl = _header(headers, "content-length")
        ctype = (_header(headers, "content-type") or "").lower()
        self.body = Body(
            _header(headers, "content-encoding"), keep=self.keep, keep_chunks="text/event-stream" in ctype
        )
        if not is_request and (method == "HEAD" or status in (204, 304) or 100 <= status < 200):
            self._finish(ts)
        elif "chunked" in te:
            self.state = _CHUNK_SIZE
        elif cl is not None:
            txt = cl.split(",")[0].strip()
            if not (txt.isascii() and txt.isdigit()):
                self._die("invalid Content-Length")
                return
            n = int(txt)
            if n == 0:
                self._finish(ts)
            else:
                self.remaining = n
                self.state = _FIXED
        elif is_request:
            self._finish(ts)
        else:
            self.state = _UNTIL_CLOSE

    def _finish(self, ts: float) -> None:
        msg, body = self.msg, self.body
        if msg is None:
            return
        if body is not None:
            body.finish_into(msg, ts)
        msg.ts_end = ts
        self.out.append(msg)
        self.msg = None
        self.body = None
        if self.state != _DEAD:
            self.state = _HEAD
