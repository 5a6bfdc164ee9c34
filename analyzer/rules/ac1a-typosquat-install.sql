-- id: ac1a-typosquat-install
-- rev: 1
-- title: Tool call installs a package whose name is a near-miss of a popular package
-- severity: high
-- attack_class: AC-1.a
-- attack: [T1195.001, T1036]
-- false_positives:
--   - A real but little-known package one or two edits away from a popular one (check the registry;
--     add it to your allowlist by installing it under its exact name in a reviewed requirements file).
-- description: >
--   pip/npm/cargo/go installs in a response's tool call are compared with the shipped lists of
--   popular packages; a non-popular name within a small Damerau-Levenshtein distance of a popular
--   one (`reqeusts` vs `requests`) is the swap a dependency-targeted router makes (AC-1.a).
SELECT coalesce(p.ts, e.ts) AS ts, coalesce(p.host_id, e.host_id) AS host_id, e.pid, e.flow_uid, p.exchange_id,
       ec.router,
       p.exchange_id || ':' || p.manager || ':' || p.package AS dedup,
       json_object('tool_call_idx', p.idx, 'manager', p.manager, 'package', p.package, 'looks_like', p.nearest,
                   'distance', p.distance) AS evidence,
       format('{} install of "{}" (looks like "{}") in exchange {} from {}', p.manager, p.package, p.nearest,
              p.exchange_id, coalesce(ec.router, e.host)) AS summary
FROM package_installs p
JOIN new_tool_calls t ON t.exchange_id = p.exchange_id AND t.idx = p.idx
LEFT JOIN run_llm_exchanges e ON e.exchange_id = p.exchange_id
LEFT JOIN run_exchange_classes ec ON ec.exchange_id = p.exchange_id
WHERE p.direction = 'response' AND NOT p.popular AND p.nearest IS NOT NULL
  AND p.distance <= rw_setting('typosquat_max_distance')
