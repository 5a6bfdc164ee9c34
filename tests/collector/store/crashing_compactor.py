"""A compaction child for tests/collector/store/test_maintenance.py: it aborts (SIGABRT, as glibc does
on a double free) while the counter in $RW_TEST_CRASHES is above zero, after it has received its
request and opened the store, then behaves like the real one."""

from __future__ import annotations

import os
from pathlib import Path

from collector.store import maintenance
from collector.store.connection import Store


def main() -> None:
    counter = Path(os.environ["RW_TEST_CRASHES"])
    left = int(counter.read_text())
    if left > 0:
        counter.write_text(str(left - 1))
        real = maintenance.compact

        def crash(store: Store, **_kw: object) -> None:
            store.sql("SELECT count(*) FROM flows").fetchall()
            os.abort()

        maintenance.compact = crash  # type: ignore[assignment]
        try:
            maintenance._serve()
        finally:
            maintenance.compact = real
    else:
        maintenance._serve()


if __name__ == "__main__":
    main()
