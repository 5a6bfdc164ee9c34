-- id: agent-config-changed
-- rev: 1
-- title: An agent's configured LLM endpoint changed to a new destination
-- severity: medium
-- attack_class: config
-- attack: [T1556, T1562.001, T1557]
-- false_positives:
--   - The user switched routers or providers on purpose (the evidence names the file, the old and the
--     new endpoint).
-- description: >
--   Two inventory snapshots of the same setting (same host, user, agent, file or environment variable)
--   name different endpoints: a config file or environment was changed to send the agent's traffic
--   somewhere new. Malware and malicious install scripts do this to put a router in the middle.
WITH snaps AS (
    SELECT *, lag(endpoint) OVER w AS prev_endpoint, lag(ts) OVER w AS prev_ts,
              lag(file_sha256) OVER w AS prev_sha256
    FROM agent_configs
    WHERE kind IN ('endpoint', 'proxy') AND endpoint IS NOT NULL
      AND (source = 'file' OR pid IS NULL)
    WINDOW w AS (PARTITION BY host_id, coalesce(user, ''), agent, path, variable ORDER BY ts)
)
SELECT s.ts, s.host_id, s.pid, NULL AS flow_uid, NULL AS exchange_id, s.endpoint_host AS router,
       s.host_id || ':' || coalesce(s.user, '') || ':' || s.agent || ':' || s.path || ':' || s.variable || ':'
           || s.prev_endpoint || '->' || s.endpoint AS dedup,
       json_object('agent', s.agent, 'path', s.path, 'variable', s.variable, 'old', s.prev_endpoint,
                   'new', s.endpoint, 'old_seen', s.prev_ts, 'file_sha256', s.file_sha256,
                   'old_file_sha256', s.prev_sha256, 'new_is_allowlisted', rw_allowed(s.endpoint_host, s.endpoint_port)) AS evidence,
       format('{} setting {} in {} changed from {} to {}', s.agent, s.variable, s.path, s.prev_endpoint, s.endpoint) AS summary
FROM snaps s
WHERE s.prev_endpoint IS NOT NULL AND s.prev_endpoint <> s.endpoint
