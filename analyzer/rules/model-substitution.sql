-- id: model-substitution
-- rev: 1
-- title: Router returned a different model family than the one requested
-- severity: medium
-- attack_class: model-substitution
-- attack: [T1565.002]
-- suppress: 1d
-- false_positives:
--   - A router alias that legitimately maps to another family (add it to `model_aliases` in catalog.yaml).
-- description: >
--   The model a response (or its stream: message_start / chunk `model`) names belongs to a different
--   family than the model requested (date and version suffixes and vendor prefixes are ignored):
--   a cheaper model served at the price of the requested one, or a router answering itself.
SELECT e.ts, e.host_id, e.pid, e.flow_uid, e.exchange_id, ec.router,
       coalesce(ec.router, ec.dest) || ':' || ec.family_requested || '->' || coalesce(ec.family_returned, '?') AS dedup,
       json_object('model_requested', e.model_requested, 'model_returned', e.model_returned, 'streamed', e.streamed,
                   'family_requested', ec.family_requested, 'family_returned', ec.family_returned,
                   'stream_models', sa.detail) AS evidence,
       format('{} requested {}, got {}{}', coalesce(ec.router, ec.dest), e.model_requested,
              coalesce(e.model_returned, sa.detail), CASE WHEN e.streamed THEN ' (streamed)' ELSE '' END) AS summary
FROM new_llm_exchanges e
JOIN run_exchange_classes ec USING (exchange_id)
LEFT JOIN stream_anomalies sa ON sa.exchange_id = e.exchange_id AND sa.kind = 'model_changed'
WHERE ec.family_requested IS NOT NULL
  AND ((ec.family_returned IS NOT NULL AND ec.family_returned <> ec.family_requested) OR sa.exchange_id IS NOT NULL)
