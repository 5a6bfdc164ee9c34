"""Detection rules: one SQL file per rule with a YAML metadata header in leading `--` comments.

    -- id: ac1-download-exec
    -- rev: 1
    -- title: Tool call downloads and executes code
    -- severity: critical              (info | low | medium | high | critical)
    -- attack_class: AC-1
    -- attack: [T1059.004, T1105]      (MITRE ATT&CK technique ids)
    -- suppress: forever               (seconds, or 30m / 12h / 7d: how long a dedup key stays quiet)
    -- false_positives:
    --   - ...
    SELECT ts, host_id, dedup, pid, flow_uid, exchange_id, router, evidence, summary FROM ...

Required output columns: `ts`, `host_id`, `dedup` (what makes two rows the same finding).
Optional: `pid`, `flow_uid`, `exchange_id`, `router`, `evidence` (JSON/struct), `summary`,
`severity` (overrides the header). Fixtures: `fixtures/<id>/positive.yaml` and `negative.yaml`.
"""

from analyzer.rules.loader import Rule, RuleError, builtin_rules_dir, load_rules

__all__ = ["Rule", "RuleError", "builtin_rules_dir", "load_rules"]
