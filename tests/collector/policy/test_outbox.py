"""The hook's outbox: decisions written redacted beside the store and imported by one importer at a time."""

from __future__ import annotations

import os
from pathlib import Path

from collector.store import Store


def test_outbox_importers_take_turns(tmp_path: Path) -> None:
    """An importer that finds another at work leaves at once; the one at work imports what arrives."""
    import fcntl

    from collector.policy import outbox
    from collector.store.connection import StoreLocation

    store = str(tmp_path / "store")
    loc = StoreLocation.parse(store)
    row = {"ts": __import__("datetime").datetime(2026, 12, 1), "host_id": "h1", "source": "hook", "action": "allow"}
    outbox.put(loc, {"gate_decisions": [row]})
    d = outbox.outbox_dir(loc)
    fd = os.open(d / ".importer.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert outbox.import_outbox(store) == 0  # busy: left to the holder
    finally:
        os.close(fd)
    outbox.put(loc, {"gate_decisions": [row]})
    assert outbox.import_outbox(store) == 2 and not list(d.glob("*" + outbox.SUFFIX))
    with Store.open(store, read_only=True) as st:
        assert st.sql("SELECT count(*) FROM gate_decisions").fetchone()[0] == 2
