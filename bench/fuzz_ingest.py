"""Mutation fuzzing of `routerwatch ingest` (tests/support/ingest_fuzz.py): N mutated pcap/pcapng
inputs, each ingested or refused in one line, the store readable after each; prints the outcome counts
and the time, exits 1 on any failure (its input is kept in the work directory's failures/).

    .venv/bin/python bench/fuzz_ingest.py --inputs 10000 [--seed 1] [--seconds S] [--workdir DIR] [--corpus DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python bench/X.py`: the repo root

from tests.support.ingest_fuzz import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
