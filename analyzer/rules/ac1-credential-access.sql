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
SELECT any_value(i.ts) AS ts, any_value(i.host_id) AS host_id, i.pid, i.flow_uid, i.exchange_id, i.router,
       any_value(i.dedup) AS dedup,
       CASE WHEN bool_or(i.kind = 'credential_read') THEN 'medium' ELSE 'low' END AS severity,
       json_object('tool_call_idx', i.idx, 'tool', i.tool, 'indicators', list(DISTINCT i.kind),
                   'targets', list(DISTINCT i.detail)) AS evidence,
       format('{} in tool call {} of exchange {} from {}', string_agg(DISTINCT i.kind, '+'), i.tool, i.exchange_id,
              coalesce(i.router, i.exchange_host)) AS summary
FROM rw_response_indicators i  -- the engine's view: indicators of new tool calls in responses
WHERE i.kind IN ('credential_read', 'env_file_read', 'env_dump') AND coalesce(i.context, 'command') = 'command'
  AND NOT EXISTS (SELECT 1 FROM tool_call_indicators x
                  WHERE x.exchange_id = i.exchange_id AND x.idx = i.idx AND x.kind = 'credential_exfil')
GROUP BY i.call_ts, i.exchange_ts, i.call_host_id, i.exchange_host_id, i.pid, i.flow_uid, i.exchange_id, i.idx,
         i.tool, i.router, i.class, i.exchange_host
