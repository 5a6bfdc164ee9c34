-- id: ac1b-conditional-injection
-- rev: 1
-- title: Router served clean tool calls, then injected one
-- severity: critical
-- attack_class: AC-1.b
-- attack: [T1059, T1195]
-- suppress: forever
-- false_positives:
--   - The first suspicious tool call was a genuine model answer (see ac1-* findings on the same exchange).
-- description: >
--   Conditional delivery: a router answers honestly for a while (to pass spot checks) and injects
--   later (after N calls, in YOLO mode, on keywords). Flags the first exchange of a router whose tool
--   call is malicious (download/decode-and-exec, reverse shell, typosquat install) when at least
--   `conditional_min_clean` earlier exchanges of the same router carried only clean tool calls.
WITH tc AS (
    SELECT DISTINCT exchange_id FROM tool_calls WHERE coalesce(direction, 'response') = 'response'
), bad AS (
    SELECT DISTINCT exchange_id FROM tool_call_indicators
    WHERE direction = 'response' AND kind IN ('download_exec', 'base64_exec', 'reverse_shell')
    UNION
    SELECT DISTINCT exchange_id FROM package_installs
    WHERE direction = 'response' AND NOT popular AND nearest IS NOT NULL
), new_bad_routers AS (  -- incremental: only routers with a malicious exchange new in this run
    SELECT DISTINCT router FROM exchange_classes
    WHERE exchange_id IN (SELECT exchange_id FROM bad)
      AND exchange_id IN (SELECT exchange_id FROM new_tool_calls UNION SELECT exchange_id FROM new_llm_exchanges)
), ex AS (
    SELECT ec.router, e.exchange_id, e.ts, e.host_id, e.pid, e.flow_uid, bad.exchange_id IS NOT NULL AS is_bad
    FROM (SELECT * FROM exchange_classes WHERE router IN (SELECT router FROM new_bad_routers)) ec
    JOIN llm_exchanges e USING (exchange_id)
    JOIN tc USING (exchange_id)
    LEFT JOIN bad USING (exchange_id)
), first_bad AS (
    SELECT router, arg_min(exchange_id, (ts, exchange_id)) AS exchange_id, min(ts) AS ts
    FROM ex WHERE is_bad GROUP BY router
)
SELECT fb.ts, x.host_id, x.pid, x.flow_uid, fb.exchange_id, fb.router,
       fb.router AS dedup,
       json_object('first_injected_exchange', fb.exchange_id, 'clean_exchanges_before', count(c.exchange_id),
                   'first_clean_ts', min(c.ts), 'last_clean_exchange', arg_max(c.exchange_id, c.ts)) AS evidence,
       format('router {} served {} clean tool-call exchanges, then injected in exchange {}', fb.router,
              count(c.exchange_id), fb.exchange_id) AS summary
FROM first_bad fb
JOIN ex x ON x.exchange_id = fb.exchange_id AND x.router = fb.router
JOIN ex c ON c.router = fb.router AND NOT c.is_bad AND c.ts < fb.ts
WHERE fb.exchange_id IN (SELECT exchange_id FROM new_tool_calls UNION SELECT exchange_id FROM new_llm_exchanges)
GROUP BY fb.ts, x.host_id, x.pid, x.flow_uid, fb.exchange_id, fb.router
HAVING count(c.exchange_id) >= rw_setting('conditional_min_clean')
