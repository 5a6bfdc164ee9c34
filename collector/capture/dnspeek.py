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
    end = off + ln
    ok = ln >= 17  # header, a one-label name and its type and class

    def u16(at: np.ndarray) -> np.ndarray:
        return (buf[at].astype(np.int64) << 8) | buf[at + 1]

    flags = u16(off + 2)
    qd, an, ns, ar = u16(off + 4), u16(off + 6), u16(off + 8), u16(off + 10)
    ok &= ((flags & 0x7800) == 0) & (qd == 1) & (an <= MAX_ANSWERS) & (ns == 0) & (ar == 0)
    # the question's name, one label a step for every message still walking
    pos = off + 12
    label_at: list[np.ndarray] = []  # (positions of length bytes, for the text)
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
    qtype = u16(np.minimum(qend, len(buf) - 2))
    ok &= u16(np.minimum(qend + 2, len(buf) - 2)) == 1
    # answers: a pointer to the question (0xC00C), type A or AAAA, class IN, the address's length
    pos = qend + 4
    answers: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (messages, rdata position, type) per index
    for j in range(int(an[ok].max()) if ok.any() else 0):
        w = np.nonzero(ok & (an > j))[0]
        p = np.minimum(pos[w], len(buf) - 64)  # (past the payloads: declined below, read in the padding)
        rtype, rdlen = u16(p + 2), u16(p + 10)
        good = ((pos[w] + 12 <= end[w]) & (buf[p] == 0xC0) & (buf[p + 1] == 12) & (u16(p + 4) == 1)
                & (((rtype == 1) & (rdlen == 4)) | ((rtype == 28) & (rdlen == 16))))
        v6 = np.nonzero(good & (rtype == 28))[0]
        if len(v6):  # not ::/80 (tshark prints those with an IPv4 tail)
            head = buf[(p[v6] + 12)[:, None] + np.arange(10)]
            good[v6] &= head.any(axis=1)
        ok[w[~good]] = False
        pos[w] = p + 12 + rdlen
        answers.append((w[good], p[good] + 12, rtype[good]))
    ok &= pos == end
    # the texts: the name with its length bytes as dots, lower-cased (dissect: the query is)
    text = _LOWER[buf]
    text[starts] = ord(".")
    blob = text.tobytes()
    rows = np.nonzero(ok)[0].tolist()
    qo, qe = (off + 13).tolist(), (qend - 1).tolist()
    tids, fl = u16(off).tolist(), flags.tolist()
    qt = qtype.tolist()
    raw = buf.tobytes()
    values: list[list[str]] = [[] for _ in range(n)]
    for want in (1, 28):  # grouped by type as dissect._dns_simple does: A first, then AAAA
        for w, at, t in answers:
            sel = ok[w] & (t == want)
            for i, a in zip(w[sel].tolist(), at[sel].tolist(), strict=True):
                values[i].append(socket.inet_ntoa(raw[a:a + 4]) if want == 1
                                 else socket.inet_ntop(socket.AF_INET6, raw[a:a + 16]))
    names = {t: QTYPES.get(t, str(t)) for t in set(qt)}
    rcodes = {f: RCODES.get(f & 0xF, str(f & 0xF)) if f & 0x8000 else None for f in set(fl)}
    for i in rows:
        f = fl[i]
        out[i] = DnsMessage(tids[i], f >= 0x8000, rcodes[f], blob[qo[i]:qe[i]].decode("ascii"), names[qt[i]], values[i])
    for i in np.nonzero(~ok)[0].tolist():
        out[i] = parse_like_tshark(payloads[i])
    return out
