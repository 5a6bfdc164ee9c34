"""Community ID v1 against the specification's published baseline vectors (not against itself).

tests/fixtures/community_id/baseline.json holds the vectors of corelight/community-id-spec
(baseline/README.md tables and baseline/*.json, default seed and seed=1). Every way the product
computes the id is checked against them: the scalar function, the vectorised one in the address form
the eBPF records give (IPv4 in the first 4 bytes) and in the form the header walk gives (two uint64
halves), and an ingested capture end to end.
"""

from __future__ import annotations

import ipaddress
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from collector.capture import community_id as cid
from collector.ingest import ingest
from collector.store import Store

FIXTURE = Path(__file__).parents[2] / "fixtures" / "community_id" / "baseline.json"
VECTORS = json.loads(FIXTURE.read_text())["vectors"]
PORTED = [v for v in VECTORS if v["proto"] in cid.PORT_PROTOCOLS]


def test_fixture_covers_the_families_protocols_and_seeds() -> None:
    kinds = {(v["proto"], ipaddress.ip_address(v["saddr"]).version, v["seed"]) for v in VECTORS}
    assert {(6, 4, 0), (6, 6, 0), (17, 4, 0), (132, 4, 0), (46, 4, 0), (46, 6, 0), (6, 4, 1), (6, 6, 1)} <= kinds
    assert len(VECTORS) == 40 and len(PORTED) == 28


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: f"{v['proto']}-{v['saddr']}-{v['sport']}-s{v['seed']}")
def test_scalar_matches_the_spec(v: dict) -> None:
    got = cid.community_id(v["proto"], v["saddr"], v["sport"], v["daddr"], v["dport"], seed=v["seed"])
    assert got == v["communityid"]


def test_protocol_names_are_the_numbers() -> None:
    assert cid.community_id("tcp", "1.2.3.4", 1122, "5.6.7.8", 3344) == "1:wCb3OG7yAFWelaUydu0D+125CLM="
    assert cid.community_id("udp", "5.6.7.8", 3344, "1.2.3.4", 1122) == "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg="
    assert cid.community_id("sctp", "1.2.3.4", 1122, "5.6.7.8", 3344) == "1:EKt4MsxuyaE6mL+hmrEkQ9csDD8="


def _columns(vectors: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The vectors as the probes' record columns: 16-byte address rows with IPv4 in the first 4 bytes."""
    def rows(key: str) -> np.ndarray:
        return np.array([list(ipaddress.ip_address(v[key]).packed.ljust(16, b"\0")) for v in vectors], np.uint8)

    proto = np.array([v["proto"] for v in vectors], np.uint8)
    sport = np.array([v["sport"] for v in vectors], np.uint16)
    dport = np.array([v["dport"] for v in vectors], np.uint16)
    v6 = np.array([ipaddress.ip_address(v["saddr"]).version == 6 for v in vectors])
    return proto, rows("saddr"), sport, rows("daddr"), dport, v6


@pytest.mark.parametrize("seed", [0, 1])
def test_vectorised_matches_the_spec(seed: int) -> None:
    vs = [v for v in PORTED if v["seed"] == seed]
    proto, src, sport, dst, dport, v6 = _columns(vs)
    assert cid.community_ids(proto, src, sport, dst, dport, v6, seed) == [v["communityid"] for v in vs]


def test_vectorised_from_uint64_halves_matches_the_spec() -> None:
    """The header walk's form: IPv4 as 0xffff00000000 | address in the low half (IPv4-mapped)."""
    vs = [v for v in PORTED if v["seed"] == 0]

    def halves(key: str) -> tuple[np.ndarray, np.ndarray]:
        hi, lo = [], []
        for v in vs:
            a = ipaddress.ip_address(v[key])
            x = int(a) if a.version == 6 else 0xFFFF00000000 | int(a)
            hi.append(x >> 64)
            lo.append(x & (2**64 - 1))
        return np.array(hi, np.uint64), np.array(lo, np.uint64)

    proto, _, sport, _, dport, v6 = _columns(vs)
    src, dst = cid.addresses_16(*halves("saddr"), v6), cid.addresses_16(*halves("daddr"), v6)
    assert cid.community_ids(proto, src, sport, dst, dport, v6) == [v["communityid"] for v in vs]


def test_vectorised_one_protocol_for_all_and_empty_input() -> None:
    vs = [v for v in PORTED if v["proto"] == 6 and v["seed"] == 0]
    _, src, sport, dst, dport, v6 = _columns(vs)
    assert cid.community_ids(6, src, sport, dst, dport, v6) == [v["communityid"] for v in vs]
    empty = np.zeros((0, 16), np.uint8)
    assert cid.community_ids(6, empty, np.zeros(0, np.uint16), empty, np.zeros(0, np.uint16), np.zeros(0, bool)) == []


def test_icmp_and_portless_batches_are_refused() -> None:
    with pytest.raises(ValueError, match="ICMP"):
        cid.community_id(1, "1.2.3.4", 8, "5.6.7.8", 0)
    with pytest.raises(ValueError, match="ICMP"):
        cid.community_id(58, "fe80::1", 128, "fe80::2", 0)
    with pytest.raises(ValueError, match="families"):
        cid.community_id("tcp", "1.2.3.4", 1, "::1", 2)
    _, src, sport, dst, dport, v6 = _columns(PORTED[:1])
    with pytest.raises(ValueError, match="protocol 1"):
        cid.community_ids(1, src, sport, dst, dport, v6)


def test_ingested_capture_carries_the_spec_ids(tmp_path: Path) -> None:
    """End to end: the spec's TCP, UDP and IPv6 TCP tuples in a pcap -> flows.community_id."""
    vs = [v for v in PORTED if v["seed"] == 0 and v["proto"] in (6, 17)]
    frames = []
    for v in vs:
        ip = IPv6 if ipaddress.ip_address(v["saddr"]).version == 6 else IP
        l4 = TCP(sport=v["sport"], dport=v["dport"], flags="S") if v["proto"] == 6 else UDP(sport=v["sport"], dport=v["dport"])
        frames.append(bytes(Ether() / ip(src=v["saddr"], dst=v["daddr"]) / l4))
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, f in enumerate(frames):
        out.append(struct.pack("<IIII", 1_700_000_000 + i, 0, len(f), len(f)) + f)
    path = tmp_path / "spec.pcap"
    path.write_bytes(b"".join(out))
    ingest(path, store=str(tmp_path / "store"), host_id="t")
    with Store.open(str(tmp_path / "store"), read_only=True) as st:
        got = {r[0] for r in st.sql("SELECT community_id FROM flows").fetchall()}
    assert got == {v["communityid"] for v in vs}
