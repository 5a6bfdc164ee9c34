-- id: canary-seen
-- rev: 1
-- title: A registered canary credential was seen
-- severity: critical
-- attack_class: canary
-- attack: [T1552, T1078]
-- suppress: 1d
-- false_positives:
--   - You planted the canary in a prompt or file on purpose to test a router; then this finding is
--     the result of the test (it shows where the canary went).
-- description: >
--   A value registered with `routerwatch canary new` (known only by its fingerprint) appeared in
--   traffic, in any direction: someone is using, echoing or forwarding it.
WITH hits AS (
    SELECT s.*, c.canary_id, c.kind AS canary_kind, c.label
    FROM new_secrets_seen s JOIN canaries c ON c.fingerprint = s.fingerprint
    UNION ALL
    SELECT s.*, c.canary_id, c.kind AS canary_kind, c.label
    FROM secrets_seen s JOIN new_canaries c ON c.fingerprint = s.fingerprint
)
SELECT s.ts, coalesce(s.host_id, e.host_id) AS host_id, coalesce(s.pid, e.pid) AS pid,
       coalesce(s.flow_uid, e.flow_uid) AS flow_uid, s.exchange_id, ec.router,
       s.fingerprint || ':' || coalesce(s.direction, '?') || ':' || coalesce(ec.dest, s.destination, '?') AS dedup,
       json_object('canary_id', s.canary_id, 'canary_kind', s.canary_kind, 'label', s.label, 'fingerprint', s.fingerprint,
                   'last4', s.last4, 'direction', s.direction, 'location', s.location,
                   'destination', coalesce(ec.dest, s.destination)) AS evidence,
       format('canary {} ({} …{}) seen in {} to {}', s.canary_id, s.canary_kind, s.last4, s.direction,
              coalesce(ec.router, ec.dest, s.destination)) AS summary
FROM hits s
LEFT JOIN run_llm_exchanges e ON e.exchange_id = s.exchange_id
LEFT JOIN run_exchange_classes ec ON ec.exchange_id = s.exchange_id
