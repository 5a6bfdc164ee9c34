-- id: agent-uncatalogued-router
-- rev: 1
-- title: Agent is configured to use an LLM endpoint that is not a known provider or router
-- severity: medium
-- attack_class: config
-- attack: [T1557, T1090.002]
-- false_positives:
--   - A router the organisation runs or buys from that the catalog does not list yet (declare it in
--     the catalog under declared_routers, or allowlist its host).
-- description: >
--   The router-configuration inventory (`routerwatch inventory`, table agent_configs) found an
--   effective base-URL setting (environment of a live agent, or a user's or project's config file)
--   that points at a host which is neither a catalogued provider or router, allowlisted, nor
--   loopback. Every prompt, key and tool call of that agent goes through that host.
SELECT c.ts, c.host_id, c.pid, NULL AS flow_uid, NULL AS exchange_id, c.endpoint_host AS router,
       c.host_id || ':' || c.agent || ':' || coalesce(c.user, '') || ':' || c.endpoint AS dedup,
       json_object('agent', c.agent, 'endpoint', c.endpoint, 'variable', c.variable, 'source', c.source,
                   'path', c.path, 'scope', c.scope, 'user', c.user) AS evidence,
       format('{} is configured to use {} ({} in {})', c.agent, c.endpoint, c.variable, c.path) AS summary
FROM agent_configs c
WHERE c.kind = 'endpoint' AND c.effective AND c.endpoint_host IS NOT NULL
  AND NOT rw_allowed(c.endpoint_host, c.endpoint_port)
