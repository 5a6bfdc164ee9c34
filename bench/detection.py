"""Detection quality on the benign and attack corpora, beside the paper's anomaly-screening figures.

"Your Agent Is Mine" (arXiv 2604.08407) reports that screening routers by anomaly (flagging what is
unusual) adds about 10% detection at a 6.7% false-positive rate. routerwatch's rules judge evidence
strength instead (an execution indicator, a credential leaving, a behaviour change of the same
router); this prints, on the same two corpora `routerwatch rules test` scores:

- per rule: attack turns it is expected to flag, found (recall), turns it accounts for, how many are
  attacks (precision), benign hits at medium or above and below;
- per attack class: detection rate (attack turns accounted for by a finding of that class);
- overall: detection and false-positive rate at medium or above and at any severity, beside the
  paper's figures; decode + analyze time (CPU seconds, which stay comparable on a loaded machine).

    .venv/bin/python bench/detection.py [--corpus DIR] [--json]

The corpora are in-sample (written while the rules were built): they show that the rules meet their
specification on realistic text, not how they fare on traffic never seen; judge that on captures of
routers and agents the rules were not written against.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

from analyzer.engine import SEVERITY_RANK
from analyzer.rules import load_rules
from analyzer.rules.corpus import default_corpus_dir, format_table, load_turns, run_corpus, score, summarise
from collector.catalog import load_catalog

PAPER = {"extra_detection": 0.10, "false_positive_rate": 0.067}


def measure(root: Path) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    turns = load_turns(root)
    run = run_corpus(turns, load_catalog(None), load_rules())
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    scores, summary = score(run), summarise(run)
    worst: dict[str, int] = {}
    classes: dict[str, set[str]] = defaultdict(set)
    for f in run.findings:
        for ex in run.coverage.get(f["finding_id"], set()):
            worst[ex] = max(worst.get(ex, -1), SEVERITY_RANK.get(f["severity"], 0))
            if SEVERITY_RANK.get(f["severity"], 0) >= SEVERITY_RANK["medium"]:
                classes[ex].add(f["attack_class"])
    attacks = [t for t in run.turns if t.attack]
    benign = [t for t in run.turns if t.corpus == "benign"]
    per_class: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for t in attacks:
        for c in {run.rules[r].attack_class for r in t.expect if r in run.rules}:
            per_class[c][1] += 1
            per_class[c][0] += c in classes.get(t.exchange_id, set())
    med = SEVERITY_RANK["medium"]
    return {
        "table": format_table(scores, summary),
        "turns": len(run.turns), "attack_turns": len(attacks), "benign_turns": len(benign),
        "detected_medium": sum(worst.get(t.exchange_id, -1) >= med for t in attacks),
        "detected_any": sum(t.exchange_id in worst for t in attacks),
        "fp_medium": sum(worst.get(t.exchange_id, -1) >= med for t in benign),
        "fp_any": sum(t.exchange_id in worst for t in benign),
        "per_class": {k: {"found": v[0], "of": v[1]} for k, v in sorted(per_class.items())},
        "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", metavar="DIR", help="corpus directory (default: tests/fixtures/detection)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    root = Path(args.corpus) if args.corpus else default_corpus_dir()
    if root is None:
        raise SystemExit("no corpus: pass --corpus DIR")
    m = measure(root)
    if args.json:
        print(json.dumps({k: v for k, v in m.items() if k != "table"}, indent=1))
        return 0
    a, b = m["attack_turns"], m["benign_turns"]

    def pct(n: int, d: int) -> str:
        return f"{n}/{d} = {n / d * 100:5.1f}%" if d else "-"

    print(m["table"])
    print()
    print(f"{'':34}{'detection (attack turns)':>28}{'false positives (benign turns)':>34}")
    print(f"{'routerwatch, medium or above':34}{pct(m['detected_medium'], a):>28}{pct(m['fp_medium'], b):>34}")
    print(f"{'routerwatch, any severity':34}{pct(m['detected_any'], a):>28}{pct(m['fp_any'], b):>34}")
    print(f"{'paper: anomaly screening':34}{'about +10% extra detection':>28}{'6.7%':>34}")
    print()
    print("per attack class (found by a finding of that class at medium or above):")
    for c, v in m["per_class"].items():
        print(f"  {c:20} {pct(v['found'], v['of'])}")
    print(f"\n{m['turns']} exchanges decoded and analysed in {m['seconds']} s ({m['cpu_seconds']} s CPU)")
    print("note: in-sample corpora (written with the rules); see the module docstring")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
