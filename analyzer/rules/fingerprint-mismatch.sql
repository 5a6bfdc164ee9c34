-- id: fingerprint-mismatch
-- rev: 1
-- title: Provider-looking endpoint answers with router-software headers
-- severity: high
-- attack_class: fingerprint-mismatch
-- attack: [T1036, T1557]
-- suppress: 7d
-- false_positives:
--   - Your company's own gateway on a name containing a provider brand (declare it under `declared_routers`).
-- description: >
--   The host is an official provider endpoint, or a name imitating one (`api-openai.example`,
--   `claude-api.example`), yet the response carries the headers of router software (one-api/new-api
--   `X-Oneapi-Request-Id`/`X-New-Api-Version`, LiteLLM `x-litellm-*`, ...): traffic meant for the
--   provider is going through a reseller, or DNS/hosts redirect it.
SELECT e.ts, e.host_id, e.pid, e.flow_uid, e.exchange_id, coalesce(ec.router, ec.dest) AS router,
       coalesce(ec.dest, e.host) || ':' || array_to_string(ec.software, ',') AS dedup,
       CASE WHEN ec.class = 'provider' THEN 'critical' ELSE 'high' END AS severity,
       json_object('host', e.host, 'class', ec.class, 'imitates', coalesce(ec.brand, ec.provider),
                   'software', ec.software) AS evidence,
       format('{} ({}) answers with {} headers', coalesce(ec.dest, e.host),
              CASE WHEN ec.class = 'provider' THEN 'official ' || ec.provider || ' endpoint'
                   ELSE 'imitates ' || ec.brand END, array_to_string(ec.software, ', ')) AS summary
FROM new_llm_exchanges e
JOIN run_exchange_classes ec USING (exchange_id)
WHERE len(coalesce(ec.software, [])) > 0
  AND (ec.class = 'provider' OR (ec.brand IS NOT NULL AND ec.class <> 'router'))
