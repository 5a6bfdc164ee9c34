-- id: gate-blocked-tool-call
-- rev: 1
-- title: The policy gate blocked a tool call before the agent ran it (or let through one it could not judge)
-- severity: high
-- attack_class: AC-1
-- attack: [T1059, T1105, T1195.001]
-- false_positives:
--   - A policy stricter than the work (e.g. installs from a private index not in the catalog's allowlist);
--     the evidence names the deciding rule and the reason, so add the host to `allowlist.hosts` or
--     override the rule for that agent or router in policy.yaml.
-- description: >
--   Every decision of the policy gate (`wrap --proxy --enforce`, or `routerwatch gate` as an agent's
--   PreToolUse hook) is a row of gate_decisions. A call the gate blocked never reached the agent (proxy)
--   or was denied (hook): the router tried something the policy forbids, and this finding records the
--   action taken next to the analyzer's own finding on the same exchange. A response the gate could not
--   parse or judge in time and let through because the user chose `unjudged: allow` is reported too
--   (medium): nothing vouched for it. The attack class follows the deciding rule (AC-1.a for a
--   typosquat); the severity is high for a block, since the agent was protected but the router is hostile.
SELECT d.ts, d.host_id, d.pid, d.flow_uid, d.exchange_id, d.router,
       coalesce(d.exchange_id, d.session_id, '') || ':' || coalesce(d.call_id, d.tool_name, '?') || ':'
         || coalesce(d.rule_id, '') || ':' || d.source AS dedup,
       CASE WHEN d.action = 'block' THEN 'high' ELSE 'medium' END AS severity,
       CASE WHEN d.rule_id LIKE 'ac1a-%' THEN 'AC-1.a' ELSE 'AC-1' END AS attack_class,
       json_object('action', d.action, 'source', d.source, 'rule', d.rule_id, 'rules', d.rules, 'reason', d.reason,
                   'detail', d.detail, 'tool', d.tool_name, 'agent', d.agent, 'api', d.api, 'policy', d.policy,
                   'session_id', d.session_id) AS evidence,
       format('{} {} call{} from {} ({}: {})', CASE WHEN d.action = 'block' THEN 'blocked' ELSE 'passed unjudged' END,
              coalesce(d.tool_name, 'a'), CASE WHEN d.agent IS NULL THEN '' ELSE ' of ' || d.agent END,
              coalesce(d.router, 'an unknown router'), d.rule_id, d.reason) AS summary
FROM new_gate_decisions d
WHERE d.action = 'block' OR (d.rule_id IN ('gate-unparseable', 'gate-timeout') AND d.action = 'allow')
