-- id: ac1-credential-access
-- rev: 2
-- title: Tool call reads credential or wallet files, or dumps the environment
-- severity: medium
-- attack_class: AC-1
-- attack: [T1552.001, T1552.004, T1082]
-- false_positives:
--   - The user asked the agent to inspect its own configuration ("check my ~/.aws/credentials"); the
--     content still went to the model, and through the router.
--   - Reading a project's `.env` while debugging (low) and printing the environment (low).
-- description: >
--   A response's tool call reads a credential store (~/.aws/credentials, SSH private keys, kube and
--   docker configs, .netrc, .git-credentials, .npmrc/.pypirc, cloud CLI tokens, wallet files:
--   medium), a `.env` file (low) or prints the environment or a secret variable (low). Without an
--   upload in the same call this is not exfiltration by itself, but the output returns to the model
--   through the router (a keeping router then holds it: see ac2-credential-to-router on the next
--   request). With an upload it is ac1-credential-exfil (critical) and not reported here.
SELECT coalesce(t.ts, e.ts) AS ts, coalesce(t.host_id, e.host_id) AS host_id, e.pid, e.flow_uid, t.exchange_id,
       ec.router,
       t.exchange_id || ':' || t.idx AS dedup,
       CASE WHEN bool_or(i.kind = 'credential_read') THEN 'medium' ELSE 'low' END AS severity,
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
  AND i.kind IN ('credential_read', 'env_file_read', 'env_dump') AND coalesce(i.context, 'command') = 'command'
  AND NOT EXISTS (SELECT 1 FROM tool_call_indicators x
                  WHERE x.exchange_id = t.exchange_id AND x.idx = t.idx AND x.kind = 'credential_exfil')
GROUP BY t.ts, e.ts, t.host_id, e.host_id, e.pid, e.flow_uid, t.exchange_id, t.idx, t.name, ec.router, ec.class, e.host
