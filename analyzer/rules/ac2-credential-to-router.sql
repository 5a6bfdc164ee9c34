-- id: ac2-credential-to-router
-- rev: 1
-- title: Credential sent to a host that is not its provider
-- severity: high
-- attack_class: AC-2
-- attack: [T1552, T1567]
-- suppress: 7d
-- false_positives:
--   - A provider endpoint missing from the catalog (add it under `providers` with its `key_kinds`).
--   - A credential you deliberately hand to a router you run (declare it, or add the kind to
--     `router_key_kinds` in catalog.yaml beside the store).
-- description: >
--   A credential in a request (header or body) went to a destination that is not where that kind of
--   credential belongs: an OpenAI key (`sk-proj-`, `sk-svcacct-`, `sk-admin-`, `T3BlbkFJ`) or an
--   Anthropic key (`sk-ant-`) to a router, an AWS key, GitHub token, private key or seed phrase in a
--   prompt. The router's own key (plain `sk-…`, bearer tokens: `router_key_kinds`) sent to that router
--   is normal use. One finding per kind, credential and destination.
SELECT s.ts, coalesce(s.host_id, e.host_id) AS host_id, coalesce(s.pid, e.pid) AS pid,
       coalesce(s.flow_uid, e.flow_uid) AS flow_uid, s.exchange_id, ec.router,
       s.kind || ':' || s.fingerprint || ':' || coalesce(ec.dest, s.destination, '?') AS dedup,
       CASE WHEN s.kind IN ('aws_access_key_id', 'aws_secret_access_key', 'pem_private_key', 'eth_private_key',
                            'bip39_mnemonic') THEN 'critical' ELSE 'high' END AS severity,
       json_object('kind', s.kind, 'fingerprint', s.fingerprint, 'last4', s.last4, 'location', s.location,
                   'destination', coalesce(ec.dest, s.destination), 'destination_class', ec.class) AS evidence,
       format('{} …{} sent to {} ({})', s.kind, s.last4, coalesce(ec.router, ec.dest, s.destination),
              coalesce(ec.class, 'unclassified')) AS summary
FROM new_secrets_seen s
LEFT JOIN run_llm_exchanges e ON e.exchange_id = s.exchange_id
LEFT JOIN run_exchange_classes ec ON ec.exchange_id = s.exchange_id
WHERE s.direction = 'request'
  AND s.kind <> 'canary'
  AND s.kind NOT IN (SELECT kind FROM cat_router_key_kinds)
  AND coalesce(ec.dest, s.destination) IS NOT NULL
  AND NOT rw_credential_ok(s.kind, coalesce(ec.dest, s.destination))
  -- a credential kind with no provider of its own (JWT, PEM, seed phrase, ...) matters when it goes
  -- to a router; one with a provider matters anywhere but that provider
  AND (rw_provider_kind(s.kind) OR coalesce(ec.class, 'other') <> 'provider')
