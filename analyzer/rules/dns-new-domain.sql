-- id: dns-new-domain
-- rev: 1
-- title: Agent resolved a domain never seen on this host
-- severity: low
-- attack_class: dns
-- attack: [T1071.004, T1568]
-- false_positives:
--   - Any first visit to a legitimate site by the agent; severity is low on purpose (read it with the
--     egress findings around it).
-- description: >
--   A DNS query for a name this host never queried before, made by an agent process, or (without
--   process data) within `dns_window_s` after a response carrying a tool call. Provider, router,
--   allowlisted and loopback names are ignored.
WITH q AS (
    SELECT DISTINCT host_id, lower(rtrim(query, '.')) AS name FROM new_dns WHERE query IS NOT NULL
), first AS (
    SELECT d.host_id, lower(rtrim(d.query, '.')) AS name, min(d.ts) AS first_ts
    FROM dns d JOIN q ON q.host_id IS NOT DISTINCT FROM d.host_id AND q.name = lower(rtrim(d.query, '.'))
    GROUP BY ALL
), resp AS (
    SELECT e.host_id, e.ts, e.exchange_id FROM llm_exchanges e
    WHERE e.exchange_id IN (SELECT exchange_id FROM tool_calls WHERE coalesce(direction, 'response') = 'response')
), hits AS (
    SELECT d.*, lower(rtrim(d.query, '.')) AS name,
           (SELECT arg_max(r.exchange_id, r.ts) FROM resp r
            WHERE r.host_id IS NOT DISTINCT FROM d.host_id AND d.ts >= r.ts
              AND d.ts <= r.ts + to_seconds(rw_setting('dns_window_s'))) AS after_exchange
    FROM new_dns d
    JOIN first f ON f.host_id IS NOT DISTINCT FROM d.host_id AND f.name = lower(rtrim(d.query, '.')) AND d.ts = f.first_ts
)
SELECT h.ts, h.host_id, h.pid, h.flow_uid, h.after_exchange AS exchange_id, NULL AS router,
       coalesce(h.host_id, '') || ':' || h.name AS dedup,
       json_object('query', h.query, 'qtype', h.qtype, 'answers', h.answers, 'after_exchange', h.after_exchange,
                   'attribution', CASE WHEN h.pid IS NOT NULL THEN 'agent process' ELSE 'after tool call' END) AS evidence,
       format('first DNS query for {} on this host ({})', h.name,
              CASE WHEN h.pid IS NOT NULL THEN 'agent pid ' || h.pid ELSE 'after exchange ' || h.after_exchange END) AS summary
FROM hits h
WHERE NOT rw_allowlisted(h.name)
  AND NOT regexp_matches(h.name, '^[0-9.]+$|:')  -- resolver calls for IP literals are not DNS lookups
  AND h.name NOT IN (SELECT dest FROM exchange_classes WHERE dest IS NOT NULL)
  AND ((h.pid IS NOT NULL AND EXISTS (SELECT 1 FROM rw_agent_processes a WHERE a.host_id IS NOT DISTINCT FROM h.host_id AND a.pid = h.pid))
       OR (h.pid IS NULL AND h.after_exchange IS NOT NULL))
QUALIFY row_number() OVER (PARTITION BY h.host_id, h.name ORDER BY h.ts) = 1
