-- id: fleet-router-divergence
-- rev: 1
-- title: A router behaves differently on one host than on the other hosts using it
-- severity: high
-- attack_class: AC-1.b
-- attack: [T1557, T1195, T1059]
-- suppress: 1d
-- false_positives:
--   - The hosts asked for different things (one host's agent runs tasks whose tool calls look
--     suspicious on any router, or asks for a model the router maps to another family for everyone).
-- description: >
--   The same router answered one host with rewritten tool calls (a tool call with a shell indicator:
--   download-and-execute, credential reads, ...) or with another model family than requested, while
--   other hosts using that router within `fleet_window_s` (default 1 day) saw no such answer. A
--   malicious router that delivers conditionally (AC-1.b) picks its targets: the fleet sees the first
--   one before the others. Runs whenever any host's new exchanges touch the router, so the finding
--   appears whichever host's traffic arrives first.
WITH touched AS (
    SELECT DISTINCT router FROM exchange_classes
    WHERE exchange_id IN (SELECT exchange_id FROM new_llm_exchanges)
      AND class IN ('router', 'suspected_router') AND router IS NOT NULL
), ex AS (
    SELECT ec.ts, ec.host_id, ec.exchange_id, ec.flow_uid, ec.router,
           CASE WHEN coalesce(ec.suspicious_tool_calls, 0) > 0 THEN 'tool-call-tampering'
                WHEN ec.family_requested IS NOT NULL AND ec.family_returned IS NOT NULL
                     AND ec.family_requested <> ec.family_returned THEN 'model-substitution' END AS behaviour
    FROM exchange_classes ec JOIN touched USING (router)
    WHERE ec.class IN ('router', 'suspected_router') AND ec.host_id IS NOT NULL
), first_bad AS (
    SELECT * FROM ex WHERE behaviour IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY router, host_id, behaviour ORDER BY ts, exchange_id) = 1
), pairs AS (  -- each first bad answer and each other host on that router that never got that behaviour
    SELECT b.router, b.host_id AS bad_host, b.behaviour, h.host_id,
           b.ts - to_seconds(w.s) AS lo, b.ts + to_seconds(w.s) AS hi
    FROM first_bad b
    CROSS JOIN (SELECT coalesce(rw_setting('fleet_window_s'), 86400) AS s) w
    JOIN (SELECT DISTINCT router, host_id FROM ex) h ON h.router = b.router AND h.host_id <> b.host_id
    WHERE NOT EXISTS (SELECT 1 FROM first_bad x WHERE x.router = b.router AND x.host_id = h.host_id AND x.behaviour = b.behaviour)
), clean AS (  -- those hosts' exchanges with the router near that time (`fleet_window_s` either side)
    SELECT p.router, p.bad_host, p.behaviour, p.host_id, count(*) AS exchanges
    FROM pairs p JOIN ex o ON o.router = p.router AND o.host_id = p.host_id AND o.ts BETWEEN p.lo AND p.hi
    GROUP BY ALL
), clean_hosts AS (
    SELECT router, bad_host, behaviour,
           list(struct_pack(host_id := host_id, exchanges := exchanges) ORDER BY host_id) AS hosts
    FROM clean GROUP BY ALL
)
SELECT b.ts, b.host_id, e.pid, b.flow_uid, b.exchange_id, b.router,
       b.router || ':' || b.host_id || ':' || b.behaviour AS dedup,
       json_object('router', b.router, 'behaviour', b.behaviour, 'host', b.host_id,
                   'clean_hosts', c.hosts) AS evidence,
       format('router {} {} on host {} but not on {}', b.router,
              CASE b.behaviour WHEN 'tool-call-tampering' THEN 'tampered with tool calls' ELSE 'substituted the model' END,
              b.host_id, array_to_string(list_transform(c.hosts, h -> h.host_id), ', ')) AS summary
FROM first_bad b
JOIN clean_hosts c ON c.router = b.router AND c.bad_host = b.host_id AND c.behaviour = b.behaviour
LEFT JOIN llm_exchanges e ON e.exchange_id = b.exchange_id
