"""Community ID v1 (https://github.com/corelight/community-id-spec): the standard 5-tuple hash.

Used to join the same connection across sources (capture, eBPF, proxy), always within a time bound
because ports are reused.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import struct

PROTO_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17, "icmp6": 58, "sctp": 132}


def community_id(proto: str | int, src_ip: str, src_port: int, dst_ip: str, dst_port: int, seed: int = 0) -> str:
    """'1:<base64 sha1>' for one flow; direction-independent."""
    pnum = PROTO_NUMBERS[proto] if isinstance(proto, str) else int(proto)
    a = ipaddress.ip_address(src_ip).packed
    b = ipaddress.ip_address(dst_ip).packed
    sp, dp = int(src_port or 0), int(dst_port or 0)
    if (a, sp) > (b, dp):
        a, b, sp, dp = b, a, dp, sp
    data = struct.pack("!H", seed) + a + b + struct.pack("!BB", pnum, 0) + struct.pack("!HH", sp, dp)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode()
