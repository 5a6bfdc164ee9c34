-- id: fleet-canary-other-host
-- rev: 1
-- title: A canary planted on one host was seen in traffic of another host
-- severity: critical
-- attack_class: canary
-- attack: [T1552, T1078, T1021]
-- suppress: 1d
-- false_positives:
--   - The same canary value was deliberately planted on several hosts but registered on only one
--     (register it without a host, or on each host).
-- description: >
--   A canary registered for a given host (its `canaries.host_id`) appears in the traffic of a different
--   host of the fleet: the credential travelled, e.g. a router that kept it replays it to other agents,
--   or it was copied to a machine it was never meant for. Canaries registered without a host are
--   fleet-wide and are covered by canary-seen alone.
WITH hits AS (
    SELECT s.ts, s.host_id, s.pid, s.flow_uid, s.exchange_id, s.fingerprint, s.last4, s.direction, s.destination,
           c.canary_id, c.kind AS canary_kind
    FROM new_secrets_seen s JOIN canaries c ON c.fingerprint = s.fingerprint
    UNION ALL
    SELECT s.ts, s.host_id, s.pid, s.flow_uid, s.exchange_id, s.fingerprint, s.last4, s.direction, s.destination,
           c.canary_id, c.kind AS canary_kind
    FROM secrets_seen s JOIN new_canaries c ON c.fingerprint = s.fingerprint
), planted AS (
    SELECT fingerprint, list(DISTINCT host_id ORDER BY host_id) AS hosts, bool_or(host_id IS NULL) AS fleet_wide
    FROM canaries WHERE fingerprint IN (SELECT fingerprint FROM hits) GROUP BY fingerprint
)
SELECT h.ts, h.host_id, h.pid, h.flow_uid, h.exchange_id, ec.router,
       h.fingerprint || ':' || h.host_id AS dedup,
       json_object('canary_id', h.canary_id, 'canary_kind', h.canary_kind, 'fingerprint', h.fingerprint,
                   'last4', h.last4, 'direction', h.direction, 'planted_on', p.hosts, 'seen_on', h.host_id,
                   'destination', coalesce(ec.dest, h.destination)) AS evidence,
       format('canary {} planted on {} seen on host {} ({} to {})', h.canary_id, array_to_string(p.hosts, ', '),
              h.host_id, h.direction, coalesce(ec.router, ec.dest, h.destination)) AS summary
FROM hits h
JOIN planted p USING (fingerprint)
LEFT JOIN exchange_classes ec ON ec.exchange_id = h.exchange_id
WHERE h.host_id IS NOT NULL AND NOT p.fleet_wide AND NOT list_contains(p.hosts, h.host_id)
QUALIFY row_number() OVER (PARTITION BY h.fingerprint, h.host_id ORDER BY h.ts) = 1
