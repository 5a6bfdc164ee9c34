-- id: egress-after-tool-call
-- rev: 2
-- title: Agent's child resolved or contacted a host right after a tool call (named by it, or new)
-- severity: high
-- attack_class: egress
-- attack: [T1105, T1041, T1071, T1071.004]
-- false_positives:
--   - The user asked for the fetch (documentation, an API, a release) and the host is not allowlisted
--     (add hosts the agents use daily to `allowlist.hosts`).
--   - Without process data any process on the host counts, so unrelated traffic in the window can
--     match; run the live collector for process attribution.
-- description: >
--   Within `egress_window_s` after a response carrying a tool call, a descendant of the agent process
--   (without process data: any process on the same host) resolves (a `dns` row: getaddrinfo, its own
--   resolver, DoH) or connects to (a flow, a failed connect included) a host the tool call named with
--   an egress intent and that is outside the allowlist: high, one finding per exchange and host, every
--   lookup and flow accounted for. The host is judged by the name the tool call used, so a name that
--   resolves to a loopback or allowlisted address still counts, and a lookup alone (egress blocked, a
--   dead CDN) is enough. A connection to a destination this host never used before that the tool call
--   did not name is medium.
WITH RECURSIVE new_flow_ids AS (
    SELECT flow_uid AS k FROM new_flows
), new_resp AS (
    SELECT exchange_id AS k FROM new_llm_exchanges UNION SELECT exchange_id FROM new_tool_calls
), bounds AS (  -- incremental: new flows/lookups pair with responses shortly before them, new responses with later ones
    SELECT least((SELECT min(ts_start) FROM new_flows), (SELECT min(ts) FROM new_dns))
               - to_seconds(rw_setting('egress_window_s')) AS resp_lo,
           (SELECT min(ts) FROM run_llm_exchanges WHERE exchange_id IN (SELECT k FROM new_resp)) AS flow_lo,
           (SELECT min(ts) FROM new_dns) AS dns_lo
), resp AS (  -- responses that carried a tool call and can pair with a new flow or lookup, or are new themselves
    SELECT e.exchange_id, e.host_id, e.pid, e.ts AS t0, e.flow_uid, ec.router, ec.dest AS router_dest,
           ec.dst_port AS router_port
    FROM (SELECT * FROM llm_exchanges
          WHERE exchange_id IN (SELECT k FROM new_resp) OR ts >= (SELECT resp_lo FROM bounds)) e
    JOIN exchange_classes ec USING (exchange_id)
    WHERE e.exchange_id IN (SELECT exchange_id FROM tool_calls WHERE coalesce(direction, 'response') = 'response')
), named AS (  -- hosts the tool calls would reach (egress intents only: not mentions, not file content)
    SELECT exchange_id, host, any_value(port) AS port, bool_and(allowlisted) AS allowlisted
    FROM tool_call_hosts
    WHERE direction = 'response' AND coalesce(intent, 'fetch') IN ('fetch', 'connect', 'install', 'index', 'arg')
      AND exchange_id IN (SELECT exchange_id FROM resp)
    GROUP BY exchange_id, host
), tree(host_id, root, pid) AS (
    SELECT DISTINCT host_id, pid, pid FROM resp WHERE pid IS NOT NULL
    UNION
    SELECT p.host_id, t.root, p.pid
    FROM (SELECT DISTINCT host_id, pid, ppid FROM processes) p
    JOIN tree t ON p.host_id IS NOT DISTINCT FROM t.host_id AND p.ppid = t.pid AND p.pid <> t.pid
), lookups AS (  -- DNS rows for a named host outside the allowlist, new or after a new response
    SELECT d.ts, d.host_id, d.pid, d.flow_uid, lower(rtrim(d.query, '.')) AS name, d.query, d.answers, d.rcode,
           d.source
    FROM dns d
    WHERE d.ts >= least((SELECT flow_lo FROM bounds), (SELECT dns_lo FROM bounds))
      AND lower(rtrim(d.query, '.')) IN (SELECT host FROM named WHERE NOT allowlisted)
), answers AS (
    SELECT host_id, name, ts, unnest(answers) AS ip FROM lookups WHERE len(coalesce(answers, [])) > 0
), cand0 AS (  -- flows: first to their destination, or to a named host (by name, IP literal or looked-up address)
    SELECT f.flow_uid, f.host_id, f.pid, f.ts_start, f.dst_ip, f.dst_port, f.proto, f.tcp_state, fc.dest,
           fc.first_seen, fc.class
    FROM (SELECT * FROM flow_classes
          WHERE (flow_uid IN (SELECT k FROM new_flow_ids) OR ts >= (SELECT flow_lo FROM bounds))) fc
    JOIN flows f ON f.flow_uid = fc.flow_uid AND f.host_id IS NOT DISTINCT FROM fc.host_id
    WHERE NOT (coalesce(f.dst_port, 0) IN (53, 5353) AND coalesce(f.proto, 'udp') = 'udp')
      AND (fc.first_seen OR fc.dest IN (SELECT host FROM named) OR f.dst_ip IN (SELECT host FROM named)
           OR f.dst_ip IN (SELECT ip FROM answers))
), reached AS (  -- (flow, exchange, name): the flow reached a host that exchange's tool calls named
    SELECT c.flow_uid, n.exchange_id, n.host AS name, n.allowlisted
    FROM cand0 c JOIN named n ON (n.host = c.dest OR n.host = c.dst_ip) AND (n.port IS NULL OR n.port = c.dst_port)
    UNION
    SELECT c.flow_uid, n.exchange_id, n.host, n.allowlisted
    FROM cand0 c
    JOIN answers a ON a.host_id IS NOT DISTINCT FROM c.host_id AND a.ip = c.dst_ip AND a.ts <= c.ts_start + INTERVAL 5 SECOND
    JOIN named n ON n.host = a.name AND NOT n.allowlisted
), allowed AS (  -- the allowlist test once per distinct destination, not per pair
    SELECT dest, dst_port, rw_allowed(dest, dst_port) AS ok FROM (SELECT DISTINCT dest, dst_port FROM cand0)
), pairs AS (
    SELECT c.*, r.exchange_id, r.pid AS agent_pid, r.router, r.t0, m.name, (m.name IS NOT NULL) AS named_by_tool_call
    FROM cand0 c
    JOIN allowed a ON a.dest IS NOT DISTINCT FROM c.dest AND a.dst_port IS NOT DISTINCT FROM c.dst_port
    JOIN resp r ON r.host_id IS NOT DISTINCT FROM c.host_id
               AND c.ts_start >= r.t0 AND c.ts_start <= r.t0 + to_seconds(rw_setting('egress_window_s'))
    LEFT JOIN reached m ON m.flow_uid = c.flow_uid AND m.exchange_id = r.exchange_id
    LEFT JOIN tree d ON d.host_id IS NOT DISTINCT FROM c.host_id AND d.root = r.pid AND d.pid = c.pid
    WHERE c.flow_uid IS DISTINCT FROM r.flow_uid
      AND NOT (c.dest = r.router_dest AND c.dst_port IS NOT DISTINCT FROM r.router_port)
      AND ((m.name IS NOT NULL AND NOT m.allowlisted) OR (m.name IS NULL AND c.first_seen AND NOT a.ok))
      AND (c.flow_uid IN (SELECT k FROM new_flow_ids) OR r.exchange_id IN (SELECT k FROM new_resp))
      -- with the agent's pid known, only its descendants count; without process data, the same host
      AND (r.pid IS NULL OR (c.pid <> r.pid AND d.pid IS NOT NULL))
    QUALIFY row_number() OVER (PARTITION BY c.flow_uid ORDER BY named_by_tool_call DESC, r.t0 DESC) = 1
), dns_pairs AS (
    SELECT l.*, r.exchange_id, r.pid AS agent_pid, r.router, r.t0
    FROM lookups l
    JOIN resp r ON r.host_id IS NOT DISTINCT FROM l.host_id
               AND l.ts >= r.t0 AND l.ts <= r.t0 + to_seconds(rw_setting('egress_window_s'))
    JOIN named n ON n.exchange_id = r.exchange_id AND n.host = l.name AND NOT n.allowlisted
    LEFT JOIN tree d ON d.host_id IS NOT DISTINCT FROM l.host_id AND d.root = r.pid AND d.pid = l.pid
    WHERE (r.pid IS NULL OR (l.pid <> r.pid AND d.pid IS NOT NULL))
    QUALIFY row_number() OVER (PARTITION BY l.host_id, l.ts, l.name, l.pid, l.source ORDER BY r.t0 DESC) = 1
), ev AS (  -- every piece of evidence that a named host was reached
    SELECT exchange_id, name, 'flow' AS how, ts_start AS ts, host_id, pid, agent_pid, router, t0, flow_uid,
           dest || ':' || coalesce(dst_port::VARCHAR, '?') || ' ' || coalesce(tcp_state, '') AS what, tcp_state
    FROM pairs WHERE named_by_tool_call
    UNION ALL
    SELECT exchange_id, name, 'dns', ts, host_id, pid, agent_pid, router, t0, flow_uid,
           query || ' ' || coalesce(rcode, '') || ' ' || coalesce(array_to_string(answers, ','), '') || ' (' ||
           coalesce(source, '?') || ')', NULL
    FROM dns_pairs
)
SELECT min(ts) AS ts, host_id, arg_min(pid, ts) AS pid,
       coalesce(arg_min(flow_uid, ts) FILTER (WHERE how = 'flow'), arg_min(flow_uid, ts)) AS flow_uid,
       exchange_id, any_value(router) AS router,
       'named:' || exchange_id || ':' || name AS dedup, 'high' AS severity,
       list(DISTINCT flow_uid) FILTER (WHERE how = 'flow') AS flow_uids,
       json_object('after_exchange', exchange_id, 'destination', name, 'named_by_tool_call', true,
                   'resolved', bool_or(how = 'dns'), 'contacted', bool_or(how = 'flow'),
                   'failed_connects', count(*) FILTER (WHERE how = 'flow' AND tcp_state IN ('S0', 'REJ', 'RSTOS0', 'SH', 'OTH')),
                   'seconds_after', round(epoch(min(ts)) - epoch(any_value(t0)), 3), 'agent_pid', any_value(agent_pid),
                   'pids', list(DISTINCT pid) FILTER (WHERE pid IS NOT NULL),
                   'lookups', list(what ORDER BY ts) FILTER (WHERE how = 'dns'),
                   'flows', list(what ORDER BY ts) FILTER (WHERE how = 'flow'),
                   'attribution', CASE WHEN any_value(agent_pid) IS NULL THEN 'same host' ELSE 'descendant' END) AS evidence,
       format('{}s after a tool call from {} named {}, {} {} it', round(epoch(min(ts)) - epoch(any_value(t0)), 1),
              any_value(router), name, coalesce('pid ' || arg_min(pid, ts), 'this host'),
              CASE WHEN bool_or(how = 'flow') AND bool_or(how = 'dns') THEN 'resolved and contacted'
                   WHEN bool_or(how = 'flow') THEN 'contacted' ELSE 'resolved' END) AS summary
FROM ev
GROUP BY host_id, exchange_id, name
UNION ALL BY NAME
SELECT p.ts_start AS ts, p.host_id, p.pid, p.flow_uid, p.exchange_id, p.router,
       p.flow_uid AS dedup, 'medium' AS severity, NULL::VARCHAR[] AS flow_uids,
       json_object('after_exchange', p.exchange_id, 'seconds_after', round(epoch(p.ts_start) - epoch(p.t0), 3),
                   'destination', p.dest, 'dst_ip', p.dst_ip, 'dst_port', p.dst_port, 'first_seen', p.first_seen,
                   'tcp_state', p.tcp_state, 'named_by_tool_call', false, 'agent_pid', p.agent_pid,
                   'process', (SELECT any_value(exe || ' ' || coalesce(cmdline, '')) FROM processes pr
                               WHERE pr.host_id IS NOT DISTINCT FROM p.host_id AND pr.pid = p.pid),
                   'attribution', CASE WHEN p.agent_pid IS NULL THEN 'same host' ELSE 'descendant' END) AS evidence,
       format('{}s after a tool call from {}, {} connected to {}:{} (never seen before)', round(epoch(p.ts_start) - epoch(p.t0), 1),
              p.router, coalesce('pid ' || p.pid, 'this host'), p.dest, p.dst_port) AS summary
FROM pairs p
WHERE NOT p.named_by_tool_call
