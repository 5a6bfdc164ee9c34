"""Mutation fuzzing of ingest over real (shared corpus) and generated pcap/pcapng captures
(tests/support/ingest_fuzz.py): every mutated input is ingested or refused with one line (IngestError, what
the CLI prints), nothing else is ever raised, and the store stays readable after each.

CI runs a short pass (ROUTERWATCH_INGEST_FUZZ_INPUTS inputs, default 120, stopping early after
ROUTERWATCH_INGEST_FUZZ_SECONDS, default 100); the full run is
`.venv/bin/python bench/fuzz_ingest.py --inputs 10000`.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.ingest_fuzz import run

N = int(os.environ.get("ROUTERWATCH_INGEST_FUZZ_INPUTS", "120"))
SECONDS = float(os.environ.get("ROUTERWATCH_INGEST_FUZZ_SECONDS", "100" if N <= 120 else "0")) or None
SEED = int(os.environ.get("ROUTERWATCH_INGEST_FUZZ_SEED", "13"))


def test_mutated_captures_are_ingested_or_refused_in_one_line(tmp_path: Path, corpus: Path) -> None:
    report = run(N, SEED, tmp_path, corpus=corpus, time_budget_s=SECONDS, check_every=40)
    print(report.summary())
    assert not report.failures, "\n\n".join(report.failures[:3])
    assert report.inputs >= min(N, 25), report.summary()
    # both ways out were taken, and the read-only checks ran
    assert report.outcomes["refused"] > 0 and report.outcomes["ok"] + report.outcomes["partial"] > 0, report.outcomes
    assert report.store_checks >= 1
