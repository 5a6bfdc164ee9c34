-- id: stream-anomaly
-- rev: 1
-- title: SSE stream does not look like the provider's
-- severity: medium
-- attack_class: stream-integrity
-- attack: [T1565.002]
-- suppress: 1d
-- false_positives:
--   - A provider that added new event types after this release (update routerwatch).
-- description: >
--   The stream's cumulative token counts decrease, it carries event types outside the API's spec,
--   events after the terminal event, several model families, or streamed tool-call deltas that differ
--   from the final arguments: signs of a router rewriting or synthesising the stream.
SELECT e.ts, e.host_id, e.pid, e.flow_uid, e.exchange_id, ec.router,
       coalesce(ec.router, ec.dest, e.host) || ':' || list_sort(list(DISTINCT sa.kind))::VARCHAR AS dedup,
       json_object('anomalies', list(DISTINCT sa.kind), 'details', list(sa.detail), 'api', e.api) AS evidence,
       format('stream from {} ({}): {}', coalesce(ec.router, ec.dest, e.host), e.api,
              string_agg(DISTINCT sa.kind || ' ' || sa.detail, '; ')) AS summary
FROM new_llm_exchanges e
JOIN stream_anomalies sa USING (exchange_id)
LEFT JOIN run_exchange_classes ec USING (exchange_id)
WHERE sa.kind <> 'model_changed'
GROUP BY e.ts, e.host_id, e.pid, e.flow_uid, e.exchange_id, ec.router, ec.dest, e.host, e.api
