"""Header fields from tshark for link types the numpy walk does not know (NFLOG, IEEE 802.11, ...).

One `tshark -T fields` pass over the whole file; slower than the numpy walk, so only used when a
capture has an interface of another link type. Produces the same `Headers` as headers.walk().
"""

from __future__ import annotations

import ipaddress
import subprocess
import tempfile

import numpy as np

from collector.capture import tshark
from collector.capture.headers import TCP, UDP, Headers
from collector.capture.records import MappedFile, Records

FIELDS = ["frame.number", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "ip.proto", "ipv6.nxt",
          "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport", "tcp.flags", "tcp.seq_raw", "tcp.len",
          "udp.length", "ip.len", "ipv6.plen", "ip.id", "ip.flags.mf", "ip.frag_offset"]


def _addr(text: str) -> tuple[int, int, int]:
    a = ipaddress.ip_address(text)
    if a.version == 4:
        return 4, 0, 0xFFFF00000000 | int(a)
    v = int(a)
    return 6, v >> 64, v & 0xFFFFFFFFFFFFFFFF


def tshark_headers(mapped: MappedFile, rec: Records) -> Headers:
    """Header fields of every record. tshark reads a clean pcapng of exactly our records (written to a
    private temporary file), not the original: frame N is then record N-1 even where the original is
    damaged, and damage tshark would refuse the whole file over is already left out. TsharkError when
    tshark cannot read it (a link type it does not know either)."""
    n = len(rec)
    with tempfile.NamedTemporaryFile(prefix="routerwatch-headers-", suffix=".pcapng") as tmp:
        for part in tshark.pcapng_parts(mapped, rec, np.arange(n)):
            tmp.write(part)
        tmp.flush()
        args = tshark.base_args() + ["-r", tmp.name]
        args += ["-T", "fields", "-E", "separator=\t", "-E", "occurrence=f", "-E", "quote=n"]
        for f in FIELDS:
            args += ["-e", f]
        p = subprocess.run(args, capture_output=True, text=True, errors="replace")
    if p.returncode != 0 and not p.stdout:
        first = next((ln for ln in p.stderr.splitlines() if ln.strip() and "Running as user" not in ln),
                     f"exit status {p.returncode}")
        raise tshark.TsharkError(f"tshark cannot read its packets: {first[:300]}")
    cols = {k: np.zeros(n, np.int64) for k in ("ver", "proto", "sport", "dport", "flags", "seq", "plen", "iplen", "ipid", "fo", "mf")}
    src_hi, src_lo = np.zeros(n, np.uint64), np.zeros(n, np.uint64)
    dst_hi, dst_lo = np.zeros(n, np.uint64), np.zeros(n, np.uint64)
    ok = np.zeros(n, bool)
    cache: dict[str, tuple[int, int, int]] = {}

    def num(s: str, base: int = 10) -> int:
        try:
            return int(s, base) if s else 0
        except ValueError:
            return 0

    for line in p.stdout.splitlines():
        c = line.split("\t") + [""] * len(FIELDS)
        i = num(c[0]) - 1
        if i < 0 or i >= n:
            continue
        s, d = (c[1], c[2]) if c[1] else (c[3], c[4])
        if not s or not d:
            continue
        sv = cache.get(s) or cache.setdefault(s, _addr(s))
        dv = cache.get(d) or cache.setdefault(d, _addr(d))
        proto = num(c[5]) if c[1] else num(c[6])
        cols["ver"][i] = sv[0]
        src_hi[i], src_lo[i], dst_hi[i], dst_lo[i] = sv[1], sv[2], dv[1], dv[2]
        cols["proto"][i] = proto
        cols["iplen"][i] = num(c[15]) if c[1] else num(c[16]) + 40
        cols["ipid"][i] = num(c[17], 16) if c[17].startswith("0x") else num(c[17])
        cols["mf"][i] = c[18] in ("1", "True")
        cols["fo"][i] = num(c[19])
        if c[7]:
            cols["sport"][i], cols["dport"][i] = num(c[7]), num(c[8])
            cols["flags"][i] = num(c[11], 16) if c[11].startswith("0x") else num(c[11])
            cols["seq"][i] = num(c[12])
            cols["plen"][i] = num(c[13])
            ok[i] = proto == TCP
        elif c[9]:
            cols["sport"][i], cols["dport"][i] = num(c[9]), num(c[10])
            cols["plen"][i] = max(num(c[14]) - 8, 0)
            ok[i] = proto == UDP
    frag_later = (cols["fo"] > 0) & ~ok
    return Headers(
        ok=ok | frag_later,
        ver=cols["ver"].astype(np.uint8),
        proto=cols["proto"].astype(np.uint8),
        src_hi=src_hi, src_lo=src_lo, dst_hi=dst_hi, dst_lo=dst_lo,
        sport=cols["sport"].astype(np.int32),
        dport=cols["dport"].astype(np.int32),
        flags=cols["flags"].astype(np.uint8),
        seq=cols["seq"].astype(np.uint32),
        plen=cols["plen"],
        iplen=cols["iplen"],
        payload_off=np.full(n, -1, np.int64),  # unknown: QUIC candidates are selected without a peek
        frag_later=frag_later,
        frag_first=(cols["fo"] == 0) & (cols["mf"] != 0),
        ipid=cols["ipid"],
    )
