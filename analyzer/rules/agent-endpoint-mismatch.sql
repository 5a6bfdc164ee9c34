-- id: agent-endpoint-mismatch
-- rev: 1
-- title: Agent's LLM traffic goes somewhere other than its configured endpoint
-- severity: high
-- attack_class: config
-- attack: [T1557, T1565.002]
-- false_positives:
--   - The agent follows a documented redirect, or uses a second provider on purpose (an auxiliary
--     model); the evidence lists both hosts.
--   - The inventory ran before the configuration changed and the agent was restarted since.
-- description: >
--   A live agent process has an effective configured base URL (agent_configs with its pid), yet its
--   decrypted LLM exchanges went to a different host: something rewrote its destination (a DNS or
--   hosts-file change, an injected proxy, a tampered binary or config loaded from elsewhere).
WITH conf AS (
    SELECT host_id, pid, agent, list(DISTINCT endpoint_host) AS hosts, list(DISTINCT endpoint) AS endpoints
    FROM agent_configs
    WHERE kind = 'endpoint' AND effective AND pid IS NOT NULL AND endpoint_host IS NOT NULL
    GROUP BY ALL
), used AS (
    SELECT e.*, lower(regexp_replace(regexp_replace(e.host, ':[0-9]+$', ''), '^\[|\]$', '', 'g')) AS used_host
    FROM new_llm_exchanges e
    WHERE e.pid IS NOT NULL AND e.host IS NOT NULL
)
SELECT u.ts, u.host_id, u.pid, u.flow_uid, u.exchange_id, u.used_host AS router,
       u.host_id || ':' || u.pid || ':' || u.used_host AS dedup,
       json_object('agent', c.agent, 'configured', c.endpoints, 'used_host', u.used_host, 'api', u.api,
                   'path', u.path) AS evidence,
       format('{} (pid {}) is configured for {} but sent {} to {}', c.agent, u.pid, array_to_string(c.hosts, ', '),
              u.api, u.used_host) AS summary
FROM used u
JOIN conf c ON c.host_id IS NOT DISTINCT FROM u.host_id AND c.pid = u.pid
WHERE NOT list_contains(c.hosts, u.used_host)
