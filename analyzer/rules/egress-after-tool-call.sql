-- id: egress-after-tool-call
-- rev: 1
-- title: New egress right after a response that carried a tool call
-- severity: high
-- attack_class: egress
-- attack: [T1105, T1041, T1071]
-- false_positives:
--   - The tool call legitimately fetched something new (a documentation site, a package mirror not on
--     the allowlist). Without process data any process on the host counts, so unrelated traffic in the
--     window can match; run the live collector for process attribution.
-- description: >
--   Within `egress_window_s` after a response carrying a tool call, a descendant of the agent process
--   (without process data: any process on the same host) connects to a destination this host never
--   used before, or to a host the tool call named. This is what an executed injected payload does.
WITH RECURSIVE new_flow_ids AS (
    SELECT flow_uid AS k FROM new_flows
), new_resp AS (
    SELECT exchange_id AS k FROM new_llm_exchanges UNION SELECT exchange_id FROM new_tool_calls
), bounds AS (  -- incremental: new flows pair with responses shortly before them, new responses with later flows
    SELECT (SELECT min(ts_start) FROM new_flows) - to_seconds(rw_setting('egress_window_s')) AS resp_lo,
           (SELECT min(ts) FROM run_llm_exchanges WHERE exchange_id IN (SELECT k FROM new_resp)) AS flow_lo
), resp AS (  -- responses that carried a tool call and can pair with a new flow, or are new themselves
    SELECT e.exchange_id, e.host_id, e.pid, e.ts AS t0, e.flow_uid, ec.router, ec.dest AS router_dest,
           ec.dst_port AS router_port
    FROM (SELECT * FROM llm_exchanges
          WHERE exchange_id IN (SELECT k FROM new_resp) OR ts >= (SELECT resp_lo FROM bounds)) e
    JOIN exchange_classes ec USING (exchange_id)
    WHERE e.exchange_id IN (SELECT exchange_id FROM tool_calls WHERE coalesce(direction, 'response') = 'response')
), named AS (
    SELECT DISTINCT exchange_id, host, port FROM tool_call_hosts WHERE direction = 'response'
), tree(host_id, root, pid) AS (
    SELECT DISTINCT host_id, pid, pid FROM resp WHERE pid IS NOT NULL
    UNION
    SELECT p.host_id, t.root, p.pid
    FROM (SELECT DISTINCT host_id, pid, ppid FROM processes) p
    JOIN tree t ON p.host_id IS NOT DISTINCT FROM t.host_id AND p.ppid = t.pid AND p.pid <> t.pid
), cand0 AS (
    SELECT f.flow_uid, f.host_id, f.pid, f.ts_start, f.dst_ip, f.dst_port, f.proto, fc.dest, fc.first_seen, fc.class
    FROM (SELECT * FROM flow_classes
          WHERE (first_seen OR dest IN (SELECT host FROM named))
            AND (flow_uid IN (SELECT k FROM new_flow_ids) OR ts >= (SELECT flow_lo FROM bounds))) fc
    JOIN flows f ON f.flow_uid = fc.flow_uid AND f.host_id IS NOT DISTINCT FROM fc.host_id
    WHERE NOT (coalesce(f.dst_port, 0) IN (53, 5353) AND coalesce(f.proto, 'udp') = 'udp')
), allowed AS (  -- the allowlist test once per distinct destination, not per pair
    SELECT dest, dst_port, rw_allowed(dest, dst_port) AS ok FROM (SELECT DISTINCT dest, dst_port FROM cand0)
), cand AS (
    SELECT c.* FROM cand0 c JOIN allowed a ON a.dest IS NOT DISTINCT FROM c.dest AND a.dst_port IS NOT DISTINCT FROM c.dst_port
    WHERE NOT a.ok
), pairs AS (
    SELECT c.*, r.exchange_id, r.pid AS agent_pid, r.router, r.t0,
           (n.host IS NOT NULL) AS named_by_tool_call
    FROM cand c
    JOIN resp r ON r.host_id IS NOT DISTINCT FROM c.host_id
               AND c.ts_start >= r.t0 AND c.ts_start <= r.t0 + to_seconds(rw_setting('egress_window_s'))
    LEFT JOIN named n ON n.exchange_id = r.exchange_id AND n.host = c.dest
                     AND (n.port IS NULL OR n.port IS NOT DISTINCT FROM c.dst_port)
    LEFT JOIN tree d ON d.host_id IS NOT DISTINCT FROM c.host_id AND d.root = r.pid AND d.pid = c.pid
    WHERE c.flow_uid IS DISTINCT FROM r.flow_uid
      AND NOT (c.dest = r.router_dest AND c.dst_port IS NOT DISTINCT FROM r.router_port)
      AND (c.first_seen OR n.host IS NOT NULL)
      AND (c.flow_uid IN (SELECT k FROM new_flow_ids) OR r.exchange_id IN (SELECT k FROM new_resp))
      -- with the agent's pid known, only its descendants count; without process data, the same host
      AND (r.pid IS NULL OR (c.pid <> r.pid AND d.pid IS NOT NULL))
    QUALIFY row_number() OVER (PARTITION BY c.flow_uid ORDER BY named_by_tool_call DESC, r.t0 DESC) = 1
)
SELECT p.ts_start AS ts, p.host_id, p.pid, p.flow_uid, p.exchange_id, p.router,
       p.flow_uid AS dedup,
       CASE WHEN p.named_by_tool_call THEN 'high' ELSE 'medium' END AS severity,
       json_object('after_exchange', p.exchange_id, 'seconds_after', round(epoch(p.ts_start) - epoch(p.t0), 3),
                   'destination', p.dest, 'dst_ip', p.dst_ip, 'dst_port', p.dst_port, 'first_seen', p.first_seen,
                   'named_by_tool_call', p.named_by_tool_call, 'agent_pid', p.agent_pid,
                   'process', (SELECT any_value(exe || ' ' || coalesce(cmdline, '')) FROM processes pr
                               WHERE pr.host_id IS NOT DISTINCT FROM p.host_id AND pr.pid = p.pid),
                   'attribution', CASE WHEN p.agent_pid IS NULL THEN 'same host' ELSE 'descendant' END) AS evidence,
       format('{}s after a tool call from {}, {} connected to {}:{}{}', round(epoch(p.ts_start) - epoch(p.t0), 1),
              p.router, coalesce('pid ' || p.pid, 'this host'), p.dest, p.dst_port,
              CASE WHEN p.named_by_tool_call THEN ' (named by the tool call)' ELSE ' (never seen before)' END) AS summary
FROM pairs p
