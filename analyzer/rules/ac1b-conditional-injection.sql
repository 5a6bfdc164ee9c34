-- id: ac1b-conditional-injection
-- rev: 2
-- title: Router served clean exchanges, then turned to execution payloads
-- severity: critical
-- attack_class: AC-1.b
-- attack: [T1059, T1195]
-- suppress: forever
-- false_positives:
--   - The first malicious tool call was a genuine model answer the user asked for (see the ac1-* finding on
--     the same exchange); the evidence shows how the router behaved before.
-- description: >
--   Conditional delivery: a router answers honestly for a while (to pass spot checks, until YOLO mode, at
--   some hour, on a keyword) and injects later. The baseline is the router's behaviour across every run
--   and every host so far (router_baseline): the exchanges it served whose tool calls carried no
--   execution-strength signal. An exchange whose response carries one (download-and-execute,
--   decode-and-execute, reverse shell, credential exfiltration, persistence, an install from a URL or an
--   unknown index, a typosquat) after at least one clean exchange of the same router is the turn,
--   whatever the number of clean exchanges before it (no fixed minimum). The evidence compares the turn
--   with the baseline: response fingerprint, model family, latency. One finding per router; every later
--   injected exchange of it is accounted for in finding_coverage.
WITH bad AS (  -- exchanges whose response tool calls carry execution-strength evidence
    SELECT DISTINCT exchange_id FROM tool_call_indicators WHERE direction = 'response' AND execution
    UNION
    SELECT DISTINCT exchange_id FROM package_installs
    WHERE direction = 'response' AND NOT popular AND nearest IS NOT NULL
      AND distance <= rw_setting('typosquat_max_distance')
), new_ex AS (
    SELECT exchange_id FROM new_tool_calls UNION SELECT exchange_id FROM new_llm_exchanges
), turned AS (  -- this run's bad exchanges with their router
    SELECT ec.router, e.exchange_id, e.ts, e.host_id, e.pid, e.flow_uid, e.latency_ms, ec.fingerprint,
           ec.family_requested, ec.family_returned
    FROM (SELECT * FROM exchange_classes WHERE exchange_id IN (SELECT exchange_id FROM bad)
            AND exchange_id IN (SELECT exchange_id FROM new_ex) AND router IS NOT NULL) ec
    JOIN llm_exchanges e USING (exchange_id)
), hist AS (  -- every clean exchange of those routers, any host, any run
    SELECT ec.router, e.exchange_id, e.ts, e.host_id, e.latency_ms, coalesce(e.tool_call_count, 0) AS tool_calls,
           ec.fingerprint, ec.family_requested, ec.family_returned
    FROM (SELECT * FROM exchange_classes WHERE router IN (SELECT router FROM turned)
            AND exchange_id NOT IN (SELECT exchange_id FROM bad)) ec
    JOIN llm_exchanges e USING (exchange_id)
), judged AS (
    SELECT x.*, count(c.exchange_id) AS clean_before,
           count(c.exchange_id) FILTER (WHERE c.tool_calls > 0) AS clean_tool_call_before,
           count(DISTINCT c.host_id) AS hosts_before, min(c.ts) AS first_clean_ts,
           arg_max(c.exchange_id, c.ts) AS last_clean_exchange,
           list(DISTINCT c.fingerprint) FILTER (WHERE c.fingerprint IS NOT NULL) AS baseline_fingerprints,
           list(DISTINCT c.family_returned) FILTER (WHERE c.family_requested IS NOT DISTINCT FROM x.family_requested
                                                      AND c.family_returned IS NOT NULL) AS baseline_families,
           avg(c.latency_ms) AS baseline_latency_ms, stddev_pop(c.latency_ms) AS baseline_latency_sd
    FROM turned x
    JOIN hist c ON c.router = x.router AND (c.ts < x.ts OR (c.ts = x.ts AND c.exchange_id < x.exchange_id))
    GROUP BY ALL
)
SELECT j.ts, j.host_id, j.pid, j.flow_uid, j.exchange_id, j.router,
       j.router AS dedup,
       json_object('first_injected_exchange', j.exchange_id, 'clean_exchanges_before', j.clean_before,
                   'clean_tool_call_exchanges_before', j.clean_tool_call_before, 'hosts_before', j.hosts_before,
                   'first_clean_ts', j.first_clean_ts, 'last_clean_exchange', j.last_clean_exchange,
                   'fingerprint', j.fingerprint, 'fingerprint_new', NOT list_contains(j.baseline_fingerprints, j.fingerprint),
                   'baseline_fingerprints', j.baseline_fingerprints[1:5],
                   'family_returned', j.family_returned, 'baseline_families', j.baseline_families,
                   'family_new', len(j.baseline_families) > 0 AND NOT list_contains(j.baseline_families, j.family_returned),
                   'latency_ms', j.latency_ms, 'baseline_latency_ms', round(j.baseline_latency_ms, 1),
                   'latency_z', CASE WHEN j.baseline_latency_sd > 0
                                     THEN round((j.latency_ms - j.baseline_latency_ms) / j.baseline_latency_sd, 2) END,
                   'indicators', (SELECT list(DISTINCT i.kind) FROM tool_call_indicators i
                                  WHERE i.exchange_id = j.exchange_id AND i.execution)) AS evidence,
       format('router {} served {} clean exchanges ({} with tool calls, {} host(s)), then execution payloads in exchange {}',
              j.router, j.clean_before, j.clean_tool_call_before, j.hosts_before, j.exchange_id) AS summary
FROM judged j
WHERE j.clean_before >= 1
