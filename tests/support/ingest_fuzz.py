"""Mutation fuzzing of `collector.ingest.ingest` over real and generated pcap/pcapng captures.

Seeds: the shared corpus's captures (large ones cut at a block boundary) and generated ones: a
synthetic TLS + DNS pcap (bench.gen_capture), a big-endian nanosecond pcap, and pcapng files built
here: little- and big-endian sections, several interfaces with if_tsresol / if_tsoffset, Simple Packet
Blocks, a section restart in the other byte order, and Decryption Secrets Blocks holding a real key
log (so mutations reach the native decryptor and the HTTP parsers). Each input is a seed with 1-3
structure-aware mutations: bit flips, truncation at every structural boundary, block length fields
set to 0 / small / odd / huge / lies, option lengths and codes, link types, timestamps and time
resolutions, snaplen / caplen / original length inconsistencies, interface ids, DSB type and length,
SHB byte order and version, section restarts, duplicated / deleted / swapped blocks, inserted DSBs and
SPBs, and flips inside the frames (IP, TCP, UDP, TLS, DNS headers). Some inputs come with a key log
(the right one, or a mutated one); some are ingested twice, the second time with a key log (the
'rekeyed' path).

Every input must be ingested (ok / partial / duplicate / rekeyed) or refused with IngestError whose
message is one line; anything else (another exception, a run over the time limit) is a failure, saved
with its traceback for replay. The store must stay readable: its tables are counted after every input
through the ingest's own connection, and a separate read-only open reads every table in full every
`check_every` inputs and at the end.

    .venv/bin/python bench/fuzz_ingest.py --inputs 10000 [--seed 1] [--seconds S] [--workdir DIR] [--corpus DIR]

(`run(count, seed, workdir, corpus=...) -> FuzzReport` here; tests/collector/test_ingest_fuzz.py is the
short CI pass). The full run's count and time are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import random
import signal
import struct
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

MAX_SEED_BYTES = 256 * 1024
SHB, IDB, PB_OLD, SPB, EPB, DSB = 0x0A0D0D0A, 1, 2, 3, 6, 0x0A
BOM = 0x1A2B3C4D
TLS_KEYLOG = 0x544C534B
LINKTYPES = (0, 1, 9, 101, 105, 108, 113, 127, 147, 228, 229, 276, 0xFFFF, 0x0FFF_FFFF)
TSRESOL = (0, 3, 6, 9, 12, 18, 19, 0x7F, 0x80, 0x80 | 20, 0x80 | 62, 0x80 | 63, 0xFF)
TSOFFSET = (0, -1, 1 << 31, 4_000_000_000, 4_000_000_001, 1 << 62, -(1 << 62), (1 << 63) - 1, -(1 << 63))
U32 = (0, 1, 3, 4, 12, 16, 20, 28, 31, 32, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 1 << 20, (1 << 20) + 1,
       (1 << 20) + 64, (1 << 20) + 68)


# -- building captures ------------------------------------------------------------------------------
def _pad(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def block(btype: int, body: bytes, e: str = "<") -> bytes:
    body = _pad(body)
    n = len(body) + 12
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def shb(e: str = "<") -> bytes:
    opts = struct.pack(e + "HH", 4, 9) + _pad(b"routerwat") + struct.pack(e + "HH", 0, 0)  # shb_userappl
    return block(SHB, struct.pack(e + "IHHq", BOM, 1, 0, -1) + opts, e)


def idb(linktype: int, e: str = "<", tsresol: int | None = None, tsoffset: int = 0, snaplen: int = 0) -> bytes:
    opts = b""
    if tsresol is not None:
        opts += struct.pack(e + "HHB3x", 9, 1, tsresol)
    if tsoffset:
        opts += struct.pack(e + "HHq", 14, 8, tsoffset)
    if opts:
        opts += struct.pack(e + "HH", 0, 0)
    return block(IDB, struct.pack(e + "HHI", linktype, 0, snaplen) + opts, e)


def epb(iface: int, ticks: int, frame: bytes, e: str = "<", flags: int | None = None) -> bytes:
    opts = b""
    if flags is not None:  # epb_flags: an option after the packet data
        opts = struct.pack(e + "HHI", 2, 4, flags) + struct.pack(e + "HH", 0, 0)
    body = struct.pack(e + "IIIII", iface, ticks >> 32, ticks & 0xFFFF_FFFF, len(frame), len(frame)) + _pad(frame) + opts
    return block(EPB, body, e)


def spb(frame: bytes, e: str = "<") -> bytes:
    return block(SPB, struct.pack(e + "I", len(frame)) + frame, e)


def dsb(text: bytes, e: str = "<", stype: int = TLS_KEYLOG) -> bytes:
    return block(DSB, struct.pack(e + "II", stype, len(text)) + text, e)


def pcap_records(data: bytes) -> tuple[str, bool, int, list[tuple[int, int, bytes]]]:
    """(endian, nano, linktype, [(sec, frac, frame)]) of a classic pcap."""
    from collector.capture.records import PCAP_MAGICS

    e, nano = PCAP_MAGICS[data[:4]]
    (lt,) = struct.unpack_from(e + "I", data, 20)
    out, off = [], 24
    while off + 16 <= len(data):
        sec, frac, cap, _orig = struct.unpack_from(e + "IIII", data, off)
        if off + 16 + cap > len(data):
            break
        out.append((sec, frac, data[off + 16 : off + 16 + cap]))
        off += 16 + cap
    return e, nano, lt & 0x0FFF_FFFF, out


def write_pcap(records: list[tuple[int, int, bytes]], linktype: int, e: str = "<", nano: bool = False) -> bytes:
    out = [struct.pack(e + "IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype)]
    for sec, frac, f in records:
        out.append(struct.pack(e + "IIII", sec, frac, len(f), len(f)) + f)
    return b"".join(out)


def pcap_to_pcapng(data: bytes, keys: bytes | None, e: str = "<", ns: bool = False) -> bytes:
    """A pcap as pcapng (one section, optionally nanosecond timestamps), its key log as a DSB."""
    _e, nano, lt, recs = pcap_records(data)
    out = [shb(e), idb(lt, e, tsresol=9 if ns else None)]
    if keys:
        out.append(dsb(keys, e))
    for i, (sec, frac, f) in enumerate(recs):
        us = frac // 1000 if nano else frac
        ticks = sec * 1_000_000_000 + us * 1000 if ns else sec * 1_000_000 + us
        out.append(epb(0, ticks, f, e, flags=1 if i % 3 == 0 else None))
    return b"".join(out)


@dataclass
class Seed:
    name: str
    data: bytes
    keylog: bytes | None = None  # the right key log for it, when there is one


def seeds(workdir: Path, corpus: Path | None) -> list[Seed]:
    """Real captures from the shared corpus (cut to MAX_SEED_BYTES at a record boundary) and generated ones."""
    out: list[Seed] = []
    if corpus is not None and corpus.is_dir():
        for p in sorted(corpus.glob("*.pcap*")):
            keys = p.with_suffix(".keys")
            out.append(Seed(p.name, _cut(p.read_bytes()), keys.read_bytes() if keys.exists() else None))
    from tests.support.gen_capture import generate

    gen = workdir / "gen.pcap"
    generate(str(gen), packets=400, data=4, seed=7)
    g = gen.read_bytes()
    gen.unlink()
    out.append(Seed("generated-tls-dns.pcap", g))
    _e, _nano, lt, recs = pcap_records(g)
    out.append(Seed("generated-be-nano.pcap", write_pcap([(s, f * 1000, x) for s, f, x in recs[:120]], lt, ">", True)))
    tls = next((s for s in out if s.name == "tls12-tls13-http10-scapy-nss.pcap"), None)
    if tls is not None:
        out.append(Seed("generated-dsb-le.pcapng", pcap_to_pcapng(tls.data, tls.keylog, "<", ns=True)))
        out.append(Seed("generated-dsb-be.pcapng", pcap_to_pcapng(tls.data, tls.keylog, ">")))
    # several interfaces (resolutions, an offset), SPBs, and a section restart in the other byte order
    frames = [x for _s, _f, x in recs[:60]]
    t0 = recs[0][0] if recs else 1_700_000_000
    parts = [shb("<"), idb(1, "<"), idb(1, "<", tsresol=9), idb(1, "<", tsresol=0x80 | 20, tsoffset=10, snaplen=96)]
    for i, f in enumerate(frames[:30]):
        k = i % 3
        ticks = [t0 * 10**6 + i, t0 * 10**9 + i * 1000, ((t0 - 10) << 20) + i][k]
        parts.append(epb(k, ticks, f) if i % 7 else spb(f))
    parts += [shb(">"), idb(1, ">", tsresol=6)]
    parts += [epb(0, t0 * 10**6 + 100 + i, f, ">") for i, f in enumerate(frames[30:])]
    out.append(Seed("generated-sections.pcapng", b"".join(parts)))
    return out


def _cut(data: bytes) -> bytes:
    """A capture cut at the last record/block boundary before MAX_SEED_BYTES."""
    if len(data) <= MAX_SEED_BYTES:
        return data
    lay = layout(data)
    end = max((b for b in lay.bounds if b <= MAX_SEED_BYTES), default=MAX_SEED_BYTES)
    return data[:end]


# -- structure ------------------------------------------------------------------------------------
@dataclass
class Field:
    off: int
    size: int  # 1, 2, 4 or 8
    kind: str
    e: str = "<"


@dataclass
class Layout:
    fmt: str
    bounds: list[int] = field(default_factory=list)  # offsets where a record/block starts (+ the end)
    units: list[tuple[int, int, int]] = field(default_factory=list)  # (offset, length, block type) of records/blocks
    fields: list[Field] = field(default_factory=list)
    frames: list[tuple[int, int]] = field(default_factory=list)  # (offset, length) of packet bytes
    endians: list[str] = field(default_factory=list)  # byte order of each unit


def layout(data: bytes) -> Layout:
    """Where the structural fields of a (possibly already damaged) capture are, as far as it parses."""
    if data[:4] == struct.pack("<I", SHB):
        return _layout_pcapng(data)
    lay = Layout("pcap")
    from collector.capture.records import PCAP_MAGICS

    if data[:4] not in PCAP_MAGICS or len(data) < 24:
        return lay
    e, _ = PCAP_MAGICS[data[:4]]
    lay.fields += [Field(0, 4, "magic", e), Field(4, 2, "version", e), Field(16, 4, "snaplen", e),
                   Field(20, 4, "linktype", e)]
    lay.bounds.append(24)
    off = 24
    while off + 16 <= len(data):
        (cap,) = struct.unpack_from(e + "I", data, off + 8)
        lay.fields += [Field(off, 4, "ts_hi", e), Field(off + 4, 4, "ts_lo", e), Field(off + 8, 4, "caplen", e),
                       Field(off + 12, 4, "origlen", e)]
        end = off + 16 + cap
        if end > len(data) or cap > 1 << 20:
            break
        lay.units.append((off, 16 + cap, 0))
        lay.endians.append(e)
        lay.frames.append((off + 16, cap))
        off = end
        lay.bounds.append(off)
    return lay


def _layout_pcapng(data: bytes) -> Layout:
    lay = Layout("pcapng")
    off, e = 0, "<"
    while off + 12 <= len(data):
        if struct.unpack_from("<I", data, off)[0] == SHB and off + 12 <= len(data):
            bom = data[off + 8 : off + 12]
            e = ">" if bom == struct.pack(">I", BOM) else "<"
        btype, blen = struct.unpack_from(e + "II", data, off)
        lay.bounds.append(off)
        lay.fields += [Field(off, 4, "btype", e), Field(off + 4, 4, "blen", e)]
        if blen < 12 or blen % 4 or off + blen > len(data):
            break
        lay.fields.append(Field(off + blen - 4, 4, "blen_trailer", e))
        lay.units.append((off, blen, btype))
        lay.endians.append(e)
        if btype == SHB and blen >= 28:
            lay.fields += [Field(off + 8, 4, "bom", e), Field(off + 12, 2, "version", e)]
            _options(lay, data, off + 24, off + blen - 4, e)
        elif btype == IDB and blen >= 20:
            lay.fields += [Field(off + 8, 2, "linktype", e), Field(off + 12, 4, "snaplen", e)]
            _options(lay, data, off + 16, off + blen - 4, e)
        elif btype in (EPB, PB_OLD) and blen >= 32:
            (cap,) = struct.unpack_from(e + "I", data, off + 20)
            lay.fields += [Field(off + 8, 4, "iface", e), Field(off + 12, 4, "ts_hi", e),
                           Field(off + 16, 4, "ts_lo", e), Field(off + 20, 4, "caplen", e),
                           Field(off + 24, 4, "origlen", e)]
            if 28 + cap + 4 <= blen:
                lay.frames.append((off + 28, cap))
                _options(lay, data, off + 28 + cap + (-cap % 4), off + blen - 4, e)
        elif btype == SPB and blen >= 16:
            lay.fields.append(Field(off + 8, 4, "origlen", e))
            lay.frames.append((off + 12, blen - 16))
        elif btype == DSB and blen >= 20:
            lay.fields += [Field(off + 8, 4, "dsb_type", e), Field(off + 12, 4, "dsb_len", e)]
        off += blen
    lay.bounds.append(min(off, len(data)))
    return lay


def _options(lay: Layout, data: bytes, off: int, end: int, e: str) -> None:
    while off + 4 <= end:
        code, length = struct.unpack_from(e + "HH", data, off)
        lay.fields += [Field(off, 2, "optcode", e), Field(off + 2, 2, "optlen", e)]
        if code == 9 and length >= 1:
            lay.fields.append(Field(off + 4, 1, "tsresol", e))
        elif code == 14 and length >= 8:
            lay.fields.append(Field(off + 4, 8, "tsoffset", e))
        if code == 0:
            break
        off += 4 + ((length + 3) & ~3)


# -- mutations ------------------------------------------------------------------------------------
def _value(rng: random.Random, f: Field, data: bytes | bytearray) -> int:
    fmt = {1: "B", 2: "H", 4: "I", 8: "q"}[f.size]
    (cur,) = struct.unpack_from(f.e + fmt, data, f.off)
    size_max = (1 << (8 * f.size)) - 1
    common = [0, 1, cur + 1, cur - 1, cur + 4, cur - 4, cur | 1, cur ^ (1 << rng.randrange(8 * f.size)),
              rng.randrange(size_max + 1), size_max]
    special = {
        "blen": [12, 16, 20, 24, 28, 31, 32, (1 << 20) + 64, (1 << 20) + 68, len(data), len(data) + 4],
        "blen_trailer": [0, 12],
        "caplen": list(U32),
        "origlen": list(U32),
        "snaplen": [0, 1, 64, 65535, 0xFFFF_FFFF],
        "iface": [0, 1, 2, 3, 4, 0xFFFF, 0x1_0000, 0xFFFF_FFFF],
        "ts_hi": [0, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF],
        "ts_lo": [0, 0xFFFF_FFFF],
        "linktype": list(LINKTYPES),
        "tsresol": list(TSRESOL),
        "tsoffset": list(TSOFFSET),
        "optlen": [0, 1, 3, 7, 8, 9, 0xFFFF],
        "optcode": [0, 1, 2, 9, 14, 0x8000, 0xFFFF],
        "dsb_type": [TLS_KEYLOG, 0x5747_4B4C, 0x5353_4854, 0],
        "dsb_len": [0, 1, 0xFFFF_FFFF, 1 << 20],
        "bom": [BOM, 0x4D3C_2B1A, 0],
        "version": [0, 1, 2, 3, 0xFFFF],
        "btype": [SHB, IDB, PB_OLD, SPB, EPB, DSB, 4, 5, 0x8000_0001, 0],
        "magic": [0xA1B2C3D4, 0xD4C3B2A1, 0xA1B23C4D, 0x4D3CB2A1],
    }.get(f.kind, [])
    v = rng.choice(special + common) if special and rng.random() < 0.7 else rng.choice(common)
    if f.size == 8:
        return max(-(1 << 63), min((1 << 63) - 1, v))
    return v & size_max


def _set(data: bytearray, f: Field, v: int) -> None:
    fmt = {1: "B", 2: "H", 4: "I", 8: "q"}[f.size]
    struct.pack_into(f.e + fmt, data, f.off, v)


def mutate(rng: random.Random, data: bytes) -> tuple[bytes, list[str]]:
    """1-3 mutations of `data` (re-reading its structure after each); returns the input and their names."""
    ops: list[str] = []
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
        lay = layout(data)
        op = rng.choices(list(_OPS), weights=[w for w, _ in _OPS.values()])[0]
        new = _OPS[op][1](rng, bytearray(data), lay)
        if new is None:
            new = _OPS["flip"][1](rng, bytearray(data), lay)
            op = "flip"
        data = bytes(new)
        ops.append(op)
    return data, ops


def _flip(rng, d, lay):
    if not d:
        return d
    n = rng.choice((1, 1, 2, 4, 8))
    for _ in range(n):
        if lay.fields and rng.random() < 0.6:
            f = rng.choice(lay.fields)
            pos = f.off + rng.randrange(f.size)
        else:
            pos = rng.randrange(len(d))
        if pos < len(d):
            d[pos] ^= 1 << rng.randrange(8)
    return d


def _truncate(rng, d, lay):
    if not lay.bounds:
        return d[: rng.randrange(len(d) + 1)]
    b = rng.choice(lay.bounds + [4, 8, 12, 16, 24, 28])
    return d[: max(0, b + rng.choice((0, 0, -1, 1, 2, 4, 8, 12, 13, 16, 27, -4)))]


def _field(rng, d, lay):
    cands = [f for f in lay.fields if f.off + f.size <= len(d)]
    if not cands:
        return None
    kinds = sorted({f.kind for f in cands})
    kind = rng.choice(kinds)  # every kind of field equally often, not every field
    f = rng.choice([f for f in cands if f.kind == kind])
    _set(d, f, _value(rng, f, d))
    return d


def _splice(rng, d, lay):
    units = [u for u in lay.units if u[0] > 0]
    if not units:
        return None
    off, n, _t = rng.choice(units)
    how = rng.randrange(5)
    if how == 0:  # duplicate
        return d[: off + n] + d[off : off + n] + d[off + n :]
    if how == 1:  # delete
        return d[:off] + d[off + n :]
    if how == 2:  # swap with the next one
        nxt = [u for u in units if u[0] == off + n]
        if not nxt:
            return None
        o2, n2, _ = nxt[0]
        return d[:off] + d[o2 : o2 + n2] + d[off : off + n] + d[o2 + n2 :]
    if how == 3:  # random bytes at a boundary
        return d[:off] + bytes(rng.randrange(256) for _ in range(rng.choice((1, 3, 4, 12, 64)))) + d[off:]
    # a unit copied somewhere else (an IDB after packets, a DSB in the middle, ...)
    to = rng.choice(lay.bounds)
    return d[:to] + d[off : off + n] + d[to:]


def _payload(rng, d, lay):
    if not lay.frames:
        return None
    off, n = rng.choice(lay.frames)
    if n == 0:
        return None
    for _ in range(rng.choice((1, 2, 4))):
        pos = off + min(n - 1, int(rng.expovariate(1 / 40)))  # mostly the headers near the frame's start
        if rng.random() < 0.5:
            d[pos] ^= 1 << rng.randrange(8)
        else:
            d[pos] = rng.choice((0, 0xFF, 0x7F, 0x80, 0x16, 0x17, 0x01, rng.randrange(256)))
    return d


def _insert_block(rng, d, lay):
    """pcapng: a DSB (real-looking, garbage, or with a lying length), an SPB, an IDB or a whole section."""
    if lay.fmt != "pcapng" or len(lay.bounds) < 2:
        return None
    e = lay.endians[0] if lay.endians else "<"
    to = rng.choice(lay.bounds[1:])
    line = b"CLIENT_RANDOM " + bytes(rng.randrange(256) for _ in range(32)).hex().encode() + b" " + b"ab" * 48
    kind = rng.randrange(6)
    if kind == 0:
        b = dsb(line + b"\n" + line[:40], e)
    elif kind == 1:
        b = bytearray(dsb(line, e))
        struct.pack_into(e + "I", b, 12, rng.choice((len(line) + 1, len(line) + 100, 0xFFFF_FFFF, 8)))
        b = bytes(b)
    elif kind == 2:
        b = dsb(bytes(rng.randrange(256) for _ in range(rng.randrange(64))), e, stype=rng.choice((TLS_KEYLOG, 1)))
    elif kind == 3:
        fr = d[lay.frames[0][0] : lay.frames[0][0] + lay.frames[0][1]] if lay.frames else b"\0" * 20
        b = spb(bytes(fr), e)
    elif kind == 4:
        b = idb(rng.choice(LINKTYPES) & 0xFFFF, e, tsresol=rng.choice(TSRESOL), tsoffset=rng.choice((0, 1, 1 << 40)))
    else:  # a section restart in the other byte order, with packets of its own
        o = ">" if e == "<" else "<"
        fr = bytes(d[lay.frames[0][0] : lay.frames[0][0] + lay.frames[0][1]]) if lay.frames else b"\0" * 20
        b = shb(o) + idb(1, o) + epb(rng.choice((0, 0, 1)), 1_700_000_000 * 10**6, fr, o)
    return d[:to] + b + d[to:]


_OPS = {  # name: (weight, function(rng, bytearray, layout) -> bytes | None when not applicable)
    "flip": (20, _flip),
    "truncate": (15, _truncate),
    "field": (35, _field),
    "splice": (10, _splice),
    "payload": (12, _payload),
    "insert-block": (8, _insert_block),
}


# -- the run --------------------------------------------------------------------------------------
@dataclass
class FuzzReport:
    inputs: int = 0
    outcomes: Counter = field(default_factory=Counter)  # ok / partial / duplicate / rekeyed / refused
    ops: Counter = field(default_factory=Counter)
    refusals: Counter = field(default_factory=Counter)  # first words of refusal messages
    failures: list[str] = field(default_factory=list)  # tracebacks (or messages) of inputs that broke a rule
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    store_checks: int = 0

    def summary(self) -> str:
        per = self.seconds / max(1, self.inputs)
        return (f"{self.inputs} mutated inputs in {self.seconds:.0f} s ({per * 1000:.0f} ms each, {self.cpu_seconds:.0f} s "
                f"CPU in this process): {dict(self.outcomes)}; {len(self.failures)} failures; "
                f"{self.store_checks} full read-only store checks")


class _Timeout(Exception):
    pass


def _alarm(signum, frame):  # noqa: ANN001
    raise _Timeout()


def _keylog_variant(rng: random.Random, keys: bytes) -> bytes:
    lines = keys.splitlines()
    how = rng.randrange(4)
    if how == 0:
        return keys
    if how == 1:  # some lines gone
        return b"\n".join(x for x in lines if rng.random() < 0.5) + b"\n"
    if how == 2:  # a flipped hex digit in some lines
        out = []
        for x in lines:
            if x and rng.random() < 0.3:
                i = rng.randrange(len(x))
                x = x[:i] + rng.choice(b"0f9az ").to_bytes(1, "big") + x[i + 1 :]
            out.append(x)
        return b"\n".join(out) + b"\n"
    return keys + b"\n" + b"CLIENT_RANDOM " + b"00" * 32 + b" " + b"11" * 48 + b"\n"


def run(count: int, seed: int, workdir: Path, *, corpus: Path | None = None, per_input_s: float = 120.0,
        check_every: int = 100, time_budget_s: float | None = None, progress=None) -> FuzzReport:
    """Ingest `count` mutated inputs (or as many as fit in `time_budget_s`) into one store in `workdir`."""
    from collector.ingest import IngestError, ingest
    from collector.store import Store

    workdir.mkdir(parents=True, exist_ok=True)
    failures_dir = workdir / "failures"
    rng = random.Random(seed)
    pool = seeds(workdir, corpus)
    store_spec = str(workdir / "store")
    report = FuzzReport()
    t0, c0 = time.monotonic(), time.process_time()
    st = Store.open(store_spec)
    old = signal.signal(signal.SIGALRM, _alarm)
    inp = workdir / "input"
    keyfile = workdir / "input.keys"
    try:
        for i in range(count):
            if time_budget_s is not None and time.monotonic() - t0 > time_budget_s:
                break
            s = rng.choice(pool)
            data, ops = mutate(rng, s.data)
            report.ops.update(ops)
            inp.write_bytes(data)
            keylog = None
            if s.keylog is not None and rng.random() < 0.3:
                keyfile.write_bytes(_keylog_variant(rng, s.keylog))
                keylog = keyfile
            twice = s.keylog is not None and rng.random() < 0.05
            host = f"fuzz-{i % 7}"
            runs = [(None, host), (keyfile, host)] if twice else [(keylog, host)]
            if twice:
                keyfile.write_bytes(s.keylog)
            for kl, h in runs:
                outcome = _one(ingest, IngestError, inp, st, kl, h, per_input_s)
                if outcome.startswith("FAIL"):
                    report.failures.append(f"input {i} (seed {s.name}, ops {ops}, keylog {kl is not None}): {outcome}")
                    failures_dir.mkdir(exist_ok=True)
                    (failures_dir / f"{i:06d}-{s.name}").write_bytes(data)
                    (failures_dir / f"{i:06d}-{s.name}.txt").write_text(report.failures[-1] + "\n")
                    st = _reopen(st, store_spec)
                    break
                report.outcomes[outcome.split(":", 1)[0]] += 1
                if outcome.startswith("refused"):
                    msg = outcome.split(":", 1)[1].replace(str(inp), "FILE").replace(str(keyfile), "KEYS")
                    report.refusals[" ".join(msg.split()[:5])] += 1
            report.inputs += 1
            _counts(st)  # the store answers through the ingest's own connection after every input
            if check_every and (i + 1) % check_every == 0:
                _full_check(store_spec)
                report.store_checks += 1
            if progress is not None:
                progress(report, i)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        st.close()
    _full_check(store_spec)
    report.store_checks += 1
    report.seconds = time.monotonic() - t0
    report.cpu_seconds = time.process_time() - c0
    return report


def _one(ingest, IngestError, inp: Path, st, keylog: Path | None, host: str, limit: float) -> str:  # noqa: N803
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        res = ingest(inp, store=st, keylog=keylog, host_id=host, batch_rows=5000)
    except IngestError as exc:
        msg = str(exc)
        if not msg or "\n" in msg or len(msg) > 500:
            return f"FAIL: refusal is not one line: {msg!r}"
        return f"refused: {msg}"
    except _Timeout:
        return f"FAIL: over {limit:g} s"
    except BaseException:  # noqa: BLE001 - any other exception is the finding
        return "FAIL: " + traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if res.status not in ("ok", "partial", "duplicate", "rekeyed"):
        return f"FAIL: status {res.status!r}"
    if res.truncated and (not res.errors or any("\n" in e for e in res.errors)):
        return f"FAIL: damage without a one-line reason: {res.errors!r}"
    return res.status


def _counts(st) -> None:
    st.sql("SELECT (SELECT count(*) FROM flows), (SELECT count(*) FROM ingest_runs), (SELECT count(*) FROM http)"
           ).fetchall()


def _full_check(spec: str) -> None:
    """A separate read-only open reads every table in full (what `routerwatch sql` would see)."""
    from collector.store import Store

    with Store.open(spec, read_only=True) as ro:
        ro.sql("SET enable_progress_bar = false")
        for t in ro.tables():
            ro.sql(f'SELECT * FROM "{t}"').to_arrow_table()


def _reopen(st, spec: str):
    """After a failure the connection may be in a broken transaction: a fresh one."""
    try:
        st.close()
    except Exception:  # noqa: BLE001
        pass
    from collector.store import Store

    return Store.open(spec)


def default_corpus() -> Path:
    from tests.conftest import CORPUS

    return CORPUS


def main(argv: list[str] | None = None) -> int:
    import tempfile

    ap = argparse.ArgumentParser(description="mutation fuzzing of routerwatch ingest (see the module docstring)")
    ap.add_argument("--inputs", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", type=Path, help="store, inputs and failures (default: a new temporary directory)")
    ap.add_argument("--corpus", type=Path, default=default_corpus())
    ap.add_argument("--seconds", type=float, help="stop after this many seconds even if fewer inputs ran")
    ap.add_argument("--progress-every", type=int, default=100, help="a progress line every N inputs")
    args = ap.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="routerwatch-fuzz-"))
    print(f"fuzzing ingest: {args.inputs} inputs, seed {args.seed}, corpus {args.corpus}, work dir {workdir}", flush=True)

    def progress(r: FuzzReport, i: int) -> None:
        if (i + 1) % max(1, args.progress_every) == 0:
            print(f"  {i + 1}: {dict(r.outcomes)}, {len(r.failures)} failures, {time.monotonic() - t0:.0f} s", flush=True)

    t0 = time.monotonic()
    r = run(args.inputs, args.seed, workdir, corpus=args.corpus, progress=progress, time_budget_s=args.seconds)
    print(r.summary())
    print("mutations:", dict(r.ops))
    print("refusals:", dict(r.refusals.most_common(25)))
    for f in r.failures:
        print("FAILURE", f[-4000:])
    return 1 if r.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
