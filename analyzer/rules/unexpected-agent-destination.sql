-- id: unexpected-agent-destination
-- rev: 1
-- title: Agent process connected to a destination that is new and not allowlisted
-- severity: medium
-- attack_class: egress
-- attack: [T1071, T1041]
-- false_positives:
--   - A new provider, router or API the agent was configured for (add it to the catalog).
-- description: >
--   A process that talks to an LLM API (or whose name is a known agent) opens a connection to a
--   destination this host never used before that is neither a provider, a router, allowlisted nor
--   loopback. Needs process attribution (live collector).
WITH cand AS (
    SELECT f.*, fc.dest, fc.class
    FROM (SELECT flow_uid, host_id, dest, class FROM flow_classes WHERE first_seen AND class = 'other') fc
    JOIN new_flows f ON fc.flow_uid = f.flow_uid AND fc.host_id IS NOT DISTINCT FROM f.host_id
    JOIN rw_agent_processes a ON a.host_id IS NOT DISTINCT FROM f.host_id AND a.pid = f.pid
    WHERE NOT (coalesce(f.dst_port, 0) IN (53, 5353) AND coalesce(f.proto, 'udp') = 'udp')
), allowed AS (
    SELECT dest, dst_port, rw_allowed(dest, dst_port) AS ok FROM (SELECT DISTINCT dest, dst_port FROM cand)
)
SELECT f.ts_start AS ts, f.host_id, f.pid, f.flow_uid, NULL AS exchange_id, NULL AS router,
       f.host_id || ':' || f.pid || ':' || f.dest || ':' || coalesce(f.dst_port, 0) AS dedup,
       json_object('destination', f.dest, 'dst_ip', f.dst_ip, 'dst_port', f.dst_port, 'class', f.class,
                   'process', (SELECT any_value(exe || ' ' || coalesce(cmdline, '')) FROM processes pr
                               WHERE pr.host_id IS NOT DISTINCT FROM f.host_id AND pr.pid = f.pid)) AS evidence,
       format('agent pid {} connected to new destination {}:{}', f.pid, f.dest, f.dst_port) AS summary
FROM cand f
JOIN allowed al ON al.dest IS NOT DISTINCT FROM f.dest AND al.dst_port IS NOT DISTINCT FROM f.dst_port
WHERE NOT al.ok
