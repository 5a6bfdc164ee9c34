-- id: ac1-credential-access
-- rev: 1
-- title: Tool call reads credential or wallet files, or dumps the environment
-- severity: high
-- attack_class: AC-1
-- attack: [T1552.001, T1552.004, T1082]
-- false_positives:
--   - The user asked the agent to inspect its own configuration (e.g. "check my ~/.aws/config").
-- description: >
--   A response's tool call reads ~/.aws/credentials, SSH keys, kube/docker configs, .netrc, .env,
--   crypto wallet files, or dumps the process environment: the first half of secret theft.
SELECT coalesce(t.ts, e.ts) AS ts, coalesce(t.host_id, e.host_id) AS host_id, e.pid, e.flow_uid, t.exchange_id,
       ec.router,
       t.exchange_id || ':' || t.idx AS dedup,
       json_object('tool_call_idx', t.idx, 'tool', t.name, 'indicators', list(DISTINCT i.kind),
                   'targets', list(DISTINCT i.detail)) AS evidence,
       format('{} in tool call {} of exchange {} from {}', string_agg(DISTINCT i.kind, '+'), t.name, t.exchange_id,
              coalesce(ec.router, e.host)) AS summary
FROM new_tool_calls t
JOIN tool_call_indicators i
  ON i.exchange_id = t.exchange_id AND i.idx = t.idx AND i.direction = coalesce(t.direction, 'response')
LEFT JOIN run_llm_exchanges e ON e.exchange_id = t.exchange_id
LEFT JOIN run_exchange_classes ec ON ec.exchange_id = t.exchange_id
WHERE coalesce(t.direction, 'response') = 'response'
  AND i.kind IN ('credential_read', 'env_dump')
GROUP BY t.ts, e.ts, t.host_id, e.host_id, e.pid, e.flow_uid, t.exchange_id, t.idx, t.name, ec.router, ec.class, e.host
