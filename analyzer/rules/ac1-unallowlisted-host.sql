-- id: ac1-unallowlisted-host
-- rev: 1
-- title: Tool call names a host outside the allowlist
-- severity: medium
-- attack_class: AC-1
-- attack: [T1105, T1071.001]
-- false_positives:
--   - The task genuinely involves a site the allowlist does not know (documentation, an API the user
--     works on); add it to `allowlist.hosts` in catalog.yaml beside the store.
-- description: >
--   A response's tool call fetches from, posts to or connects to a host that is neither allowlisted,
--   nor a provider or router endpoint, nor loopback: where an injected payload usually comes from.
SELECT min(coalesce(h.ts, e.ts)) AS ts, coalesce(h.host_id, e.host_id) AS host_id, e.pid, e.flow_uid, h.exchange_id,
       ec.router,
       h.exchange_id || ':' || h.host AS dedup,
       json_object('tool_call_idx', min(h.idx), 'host', h.host, 'port', any_value(h.port),
                   'urls', list(DISTINCT h.url) FILTER (WHERE h.url IS NOT NULL)) AS evidence,
       format('tool call of exchange {} from {} names {}', h.exchange_id, coalesce(ec.router, e.host), h.host) AS summary
FROM new_tool_calls t
JOIN tool_call_hosts h ON t.exchange_id = h.exchange_id AND t.idx = h.idx
LEFT JOIN run_llm_exchanges e ON e.exchange_id = h.exchange_id
LEFT JOIN run_exchange_classes ec ON ec.exchange_id = h.exchange_id
WHERE h.direction = 'response' AND NOT h.allowlisted
GROUP BY h.host_id, e.host_id, e.pid, e.flow_uid, h.exchange_id, ec.router, e.host, h.host
