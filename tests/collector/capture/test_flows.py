"""Which packets tshark is handed (flows.select_for_dissection): decided by each flow's protocol
rule, never by the chance value of a DNS transaction id."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.capture import flows, headers
from collector.capture.records import MappedFile, read_records
from tests.support.dns_capture import transactions


def _selection(cap: Path) -> tuple[list[int], list[int]]:
    """(select_for_dissection's records, dns_for_dissection's records) of the capture."""
    with MappedFile(cap) as mf:
        rec = read_records(cap, mf, None)
        hd = headers.walk_mapped(mf, rec)
        fa = flows.assign(hd)
        end = rec.data_off + rec.caplen
        return (flows.select_for_dissection(hd, fa, mf, end).records.tolist(),
                flows.dns_for_dissection(hd, fa, mf, end).tolist())


@pytest.mark.parametrize("base_id", [0x1200, 0x9200, 0xC200], ids=["id<0x8000", "id>=0x8000", "id>=0xC000"])
def test_dns_flows_are_selected_by_the_dns_rule_alone(tmp_path: Path, base_id: int) -> None:
    """Answered UDP queries stay out whatever their id: a DNS message starts with its transaction id,
    and one >= 0x8000 (>= 0xC000: with the fixed bit too) looks like a QUIC long header. The QUIC rule
    handed such queries to tshark, which stored a query row for them: rows that depended on chance.
    The QUIC rule still takes the first two client long-header packets of a flow off port 53."""
    selected, dns_part = _selection(transactions(tmp_path / "c.pcap", base_id))
    assert dns_part == [1, 4, 5, 6]  # the responses and the unanswered query (see transactions())
    assert selected == [1, 4, 5, 6, 7, 8]  # and the first two client packets of the QUIC flow
