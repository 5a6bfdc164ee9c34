-- id: fleet-new-destination
-- rev: 1
-- title: Agent connected to a destination new to the whole fleet
-- severity: medium
-- attack_class: egress
-- attack: [T1071, T1041, T1105]
-- false_positives:
--   - The first use anywhere of a new, legitimate service (add it to the allowlist once seen).
-- description: >
--   An agent process (it made an LLM exchange, or its name is a known agent) connected to a
--   destination (server name, else address, and port) that no host of the fleet ever connected to
--   before, and that is neither a provider, a router, allowlisted nor loopback (unless loopback is
--   switched off in the allowlist). One finding per destination for the whole fleet, on the host
--   that went there first: what per-host rules report once per host, this reports once.
WITH cand AS (
    SELECT f.*, coalesce(f.server_name, f.dst_ip) AS dest
    FROM new_flows f
    JOIN rw_agent_processes a ON a.host_id IS NOT DISTINCT FROM f.host_id AND a.pid = f.pid
    WHERE coalesce(f.direction, 'outbound') = 'outbound'
      AND NOT (coalesce(f.dst_port, 0) IN (53, 5353) AND coalesce(f.proto, 'udp') = 'udp')
    QUALIFY row_number() OVER (PARTITION BY dest, f.dst_port ORDER BY f.ts_start, f.host_id, f.flow_uid) = 1
)
SELECT c.ts_start AS ts, c.host_id, c.pid, c.flow_uid, NULL AS exchange_id, NULL AS router,
       c.dest || ':' || coalesce(c.dst_port, 0) AS dedup,
       json_object('destination', c.dest, 'dst_ip', c.dst_ip, 'dst_port', c.dst_port, 'first_host', c.host_id,
                   'process', (SELECT any_value(exe || ' ' || coalesce(cmdline, '')) FROM processes pr
                               WHERE pr.host_id IS NOT DISTINCT FROM c.host_id AND pr.pid = c.pid)) AS evidence,
       format('first connection in the fleet to {}:{} (host {}, agent pid {})', c.dest, c.dst_port, c.host_id, c.pid) AS summary
FROM cand c
WHERE c.dest IS NOT NULL AND NOT rw_allowed(c.dest, c.dst_port)
  AND NOT EXISTS (SELECT 1 FROM flows o WHERE coalesce(o.server_name, o.dst_ip) = c.dest
                  AND o.dst_port IS NOT DISTINCT FROM c.dst_port AND o.ts_start < c.ts_start)
