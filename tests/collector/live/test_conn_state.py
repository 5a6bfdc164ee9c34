"""Zeek-style conn_state/history from the probes' per-socket reset bits (the kernel side is tested
with real sockets in tests/collector/ebpf/test_probe_records.py)."""

from __future__ import annotations

import numpy as np

from collector.live.ebpf_rows import conn_state


def test_states_from_both_ends_and_unestablished_sockets():
    rows = [  # outbound, established, rst bits, data orig, data resp -> state, history
        (True, False, 1, False, False, "REJ", "Sr"),       # refused connect: RST received
        (True, False, 0, False, False, "S0", "S"),         # no answer
        (True, False, 6, False, False, "RSTOS0", "SR"),    # we reset before any answer
        (True, True, 0, True, True, "SF", "ShDd"),
        (True, True, 1, True, True, "RSTR", "ShDdr"),
        (False, True, 6, True, False, "RSTR", "ShDr"),     # accepted socket that aborted: responder reset
        (False, True, 1, True, False, "RSTO", "ShDR"),     # accepted socket that got the originator's RST
        (True, True, 3, False, False, "RSTR", "Shr" + "R"),  # received first, then sent
        (True, True, 7, False, False, "RSTO", "ShRr"),     # sent first, then received
    ]
    cols = list(zip(*rows, strict=True))
    state, history = conn_state(np.array(cols[0]), np.array(cols[1]), np.array(cols[2], dtype=np.uint8),
                                np.array(cols[3]), np.array(cols[4]))
    assert state.tolist() == list(cols[5])
    assert history.tolist() == list(cols[6])
