"""DNS-over-UDP messages read with numpy: the common shape of thousands of messages at once.

The common shape: opcode QUERY, one question of class IN with an uncompressed name of plain labels
(letters, digits, '-', '_'), nothing in Authority or Additional, and answers that are A or AAAA
records of class IN owned by a pointer to the question's name, the message ending where the last
one ends (a resolver's answer to an A or AAAA query, or a query). Every other message goes to
collector.protocols.dns.parse_like_tshark, one at a time: it stays the reference (tests check the
two agree) and reads what this walk declines. ~1 us a message here against ~12 us there.
"""

from __future__ import annotations

import socket

import numpy as np

from collector.protocols.dns import QTYPES, RCODES, TSHARK_MAX_NAME, DnsMessage, parse_like_tshark

MAX_ANSWERS = 8  # more answers than this: the per-message reader
_SAFE = np.zeros(256, bool)
for _c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_":
    _SAFE[_c] = True
_LOWER = np.arange(256, dtype=np.uint8)
_LOWER[ord("A"):ord("Z") + 1] += 32


def messages(payloads: list[bytes]) -> list[DnsMessage | None]:
    """parse_like_tshark(p) for each payload (None: tshark reads it), the common shape with numpy."""
    n = len(payloads)
    out: list[DnsMessage | None] = [None] * n
    if not n:
        return out
    ln = np.fromiter(map(len, payloads), np.int64, n)
    off = np.zeros(n + 1, np.int64)
    np.cumsum(ln, out=off[1:])
    off = off[:-1]
    buf = np.frombuffer(b"".join(payloads) + bytes(64), np.uint8)  # (zeros: reads past a payload's end stay inside)
    w = _Walk(buf, off, off + ln)
    w.ok &= ln >= 17  # header, a one-label name and its type and class
    flags, an = w.u16(off + 2), w.u16(off + 6)
    w.ok &= (((flags & 0x7800) == 0) & (w.u16(off + 4) == 1) & (an <= MAX_ANSWERS) & (w.u16(off + 8) == 0)
             & (w.u16(off + 10) == 0))
    qend, starts = w.question()
    qtype = w.u16(np.minimum(qend, len(buf) - 2))
    answers = w.answers(qend + 4, an)
    _build(out, w, flags, qtype, qend, starts, answers)
    for i in np.nonzero(~w.ok)[0].tolist():
        out[i] = parse_like_tshark(payloads[i])
    return out


class _Walk:
    """The payloads side by side in `buf` (message i at off[i]..end[i]); `ok`: still the common shape."""

    def __init__(self, buf: np.ndarray, off: np.ndarray, end: np.ndarray):
        self.buf, self.off, self.end = buf, off, end
        self.ok = np.ones(len(off), bool)

    def u16(self, at: np.ndarray) -> np.ndarray:
        return (self.buf[at].astype(np.int64) << 8) | self.buf[at + 1]

    def question(self) -> tuple[np.ndarray, np.ndarray]:
        """The question's name, one label a step for every message still walking, then its class:
        (position after the name, positions of every length byte walked)."""
        buf, off, end, ok = self.buf, self.off, self.end, self.ok
        pos = off + 12
        label_at: list[np.ndarray] = []
        walking = ok & (buf[np.minimum(pos, len(buf) - 1)] != 0)  # (the root name: the per-message reader)
        ok &= walking
        while walking.any():
            w = np.nonzero(walking)[0]
            p = pos[w]
            size = buf[p].astype(np.int64)
            bad = (size & 0xC0) != 0
            ok[w[bad]] = False
            label_at.append(p[~bad])
            pos[w] = p + 1 + size
            nxt = np.minimum(pos[w], len(buf) - 1)
            far = (pos[w] >= end[w]) | (pos[w] - off[w] > 12 + 255)  # (a name's 255 bytes: at most 128 steps)
            walking[w] = ~bad & ~far & (buf[nxt] != 0)
            ok[w[far]] = False
        qend = pos + 1  # after the root label
        ok &= (qend + 4 <= end) & (qend - off - 14 <= TSHARK_MAX_NAME)
        # plain labels: every byte of the name that is not a length byte is a letter, digit, '-' or '_'
        starts = np.concatenate(label_at) if label_at else np.zeros(0, np.int64)
        is_len = np.zeros(len(buf), bool)
        is_len[starts] = True
        inside = np.zeros(len(buf) + 1, np.int64)
        q = np.nonzero(ok)[0]
        np.add.at(inside, off[q] + 12, 1)
        np.add.at(inside, qend[q] - 1, -1)
        inside = np.cumsum(inside[:-1]) > 0
        bad_at = np.nonzero(inside & ~is_len & ~_SAFE[buf])[0]
        if len(bad_at):
            ok[np.searchsorted(off, bad_at, side="right") - 1] = False
        ok &= self.u16(np.minimum(qend + 2, len(buf) - 2)) == 1
        return qend, starts

    def answers(self, pos: np.ndarray, an: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Answer j of every message that has one, a step per index: a pointer to the question
        (0xC00C), type A or AAAA, class IN, the address's length; (messages, rdata position, type)
        per index. The message must end where its last answer ends."""
        buf, end, ok = self.buf, self.end, self.ok
        out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for j in range(int(an[ok].max()) if ok.any() else 0):
            w = np.nonzero(ok & (an > j))[0]
            p = np.minimum(pos[w], len(buf) - 64)  # (past the payloads: declined below, read in the padding)
            rtype, rdlen = self.u16(p + 2), self.u16(p + 10)
            good = ((pos[w] + 12 <= end[w]) & (buf[p] == 0xC0) & (buf[p + 1] == 12) & (self.u16(p + 4) == 1)
                    & (((rtype == 1) & (rdlen == 4)) | ((rtype == 28) & (rdlen == 16))))
            v6 = np.nonzero(good & (rtype == 28))[0]
            if len(v6):  # not ::/80 (tshark prints those with an IPv4 tail)
                head = buf[(p[v6] + 12)[:, None] + np.arange(10)]
                good[v6] &= head.any(axis=1)
            ok[w[~good]] = False
            pos[w] = p + 12 + rdlen
            out.append((w[good], p[good] + 12, rtype[good]))
        ok &= pos == end
        return out


def _build(out: list[DnsMessage | None], w: _Walk, flags: np.ndarray, qtype: np.ndarray, qend: np.ndarray,
           starts: np.ndarray, answers: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """The DnsMessage of every message still `ok`: the name with its length bytes as dots, lower-cased
    (dissect: the query is), answers grouped by type as dissect._dns_simple does (A, then AAAA)."""
    text = _LOWER[w.buf]
    text[starts] = ord(".")
    blob = text.tobytes()
    qo, qe = (w.off + 13).tolist(), (qend - 1).tolist()
    tids, fl, qt = w.u16(w.off).tolist(), flags.tolist(), qtype.tolist()
    raw = w.buf.tobytes()
    values: list[list[str]] = [[] for _ in range(len(out))]
    for want in (1, 28):
        for m, at, t in answers:
            sel = w.ok[m] & (t == want)
            for i, a in zip(m[sel].tolist(), at[sel].tolist(), strict=True):
                values[i].append(socket.inet_ntoa(raw[a:a + 4]) if want == 1
                                 else socket.inet_ntop(socket.AF_INET6, raw[a:a + 16]))
    names = {t: QTYPES.get(t, str(t)) for t in set(qt)}
    rcodes = {f: RCODES.get(f & 0xF, str(f & 0xF)) if f & 0x8000 else None for f in set(fl)}
    for i in np.nonzero(w.ok)[0].tolist():
        f = fl[i]
        out[i] = DnsMessage(tids[i], f >= 0x8000, rcodes[f], blob[qo[i]:qe[i]].decode("ascii"), names[qt[i]], values[i])
