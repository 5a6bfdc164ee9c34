-- id: tool-call-egress-intent
-- rev: 1
-- title: Tool call would fetch from or connect to a host outside the allowlist
-- severity: low
-- attack_class: egress
-- attack: [T1105, T1071.001]
-- suppress: 1d
-- false_positives:
--   - Ordinary agent work (documentation, APIs the user works with, release downloads); that is why this
--     is low on its own; add hosts you use daily to `allowlist.hosts` in catalog.yaml beside the store.
-- description: >
--   A response's tool call fetches from, installs from, connects to or hands to a program a host that is
--   neither allowlisted, a provider or router endpoint, nor loopback: an egress intent. Hosts that are
--   only mentioned (in an echo, a commit message, a grep pattern) or that sit in file content being
--   written are not intents. On its own this is weak evidence (was ac1-unallowlisted-host, medium);
--   egress-after-tool-call raises it to high when a descendant of the agent then resolves or contacts
--   the host. One finding per router (or host) and destination a day; every exchange naming it is
--   accounted for in finding_coverage.
SELECT min(coalesce(h.ts, e.ts)) AS ts, coalesce(h.host_id, e.host_id) AS host_id, any_value(e.pid) AS pid,
       any_value(e.flow_uid) AS flow_uid, h.exchange_id, ec.router,
       coalesce(ec.router, coalesce(h.host_id, e.host_id)) || ':' || h.host AS dedup,
       json_object('tool_call_idx', min(h.idx), 'host', h.host, 'port', any_value(h.port),
                   'intents', list(DISTINCT h.intent),
                   'urls', list(DISTINCT h.url) FILTER (WHERE h.url IS NOT NULL)) AS evidence,
       format('tool call of exchange {} from {} would reach {} ({})', h.exchange_id, coalesce(ec.router, any_value(e.host)),
              h.host, string_agg(DISTINCT h.intent, '+')) AS summary
FROM new_tool_calls t
JOIN tool_call_hosts h ON t.exchange_id = h.exchange_id AND t.idx = h.idx
LEFT JOIN run_llm_exchanges e ON e.exchange_id = h.exchange_id
LEFT JOIN run_exchange_classes ec ON ec.exchange_id = h.exchange_id
WHERE h.direction = 'response' AND NOT h.allowlisted
  AND coalesce(h.intent, 'fetch') IN ('fetch', 'connect', 'install', 'index', 'arg')
GROUP BY h.host_id, e.host_id, h.exchange_id, ec.router, h.host
