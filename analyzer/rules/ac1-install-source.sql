-- id: ac1-install-source
-- rev: 1
-- title: Tool call installs a package from a URL or an unknown index
-- severity: high
-- attack_class: AC-1
-- attack: [T1195.001, T1105, T1059]
-- false_positives:
--   - A private index or mirror the organisation uses (add it to `package_sources` in catalog.yaml beside
--     the store).
--   - An install from a repository the user chose, e.g. `pip install git+https://github.com/org/x`
--     (reported, since a router can swap the repository for its own fork; list trusted repositories as
--     `package_sources` entries such as `github.com/org/*`).
-- description: >
--   pip/uv/poetry/npm/yarn/pnpm/bun/cargo installs whose code comes from a URL (`pip install
--   https://…/pkg.tar.gz`, `npm i https://…/x.tgz`, `cargo install --git …`) or from an index other than
--   a known one (`--index-url`, `--extra-index-url`, `--find-links`, `--trusted-host`, `--registry`,
--   `npm config set registry`, `PIP_INDEX_URL=`, `GOPROXY=`) that is not a known package source
--   (`package_sources`: the registries). Installing runs the package's build and install scripts: a router
--   swapping the source runs its code.
SELECT coalesce(t.ts, e.ts) AS ts, coalesce(t.host_id, e.host_id) AS host_id, e.pid, e.flow_uid, t.exchange_id,
       ec.router,
       t.exchange_id || ':' || t.idx AS dedup,
       json_object('tool_call_idx', t.idx, 'tool', t.name, 'indicators', list(DISTINCT i.kind),
                   'hosts', list(DISTINCT i.host) FILTER (WHERE i.host IS NOT NULL),
                   'command', any_value(i.detail)) AS evidence,
       format('{} from {} in tool call {} of exchange {} from {}', string_agg(DISTINCT i.kind, '+'),
              string_agg(DISTINCT i.host, ', '), t.name, t.exchange_id, coalesce(ec.router, e.host)) AS summary
FROM new_tool_calls t
JOIN tool_call_indicators i
  ON i.exchange_id = t.exchange_id AND i.idx = t.idx AND i.direction = coalesce(t.direction, 'response')
LEFT JOIN run_llm_exchanges e ON e.exchange_id = t.exchange_id
LEFT JOIN run_exchange_classes ec ON ec.exchange_id = t.exchange_id
WHERE coalesce(t.direction, 'response') = 'response'
  AND i.kind IN ('install_url', 'custom_index') AND i.execution
GROUP BY t.ts, e.ts, t.host_id, e.host_id, e.pid, e.flow_uid, t.exchange_id, t.idx, t.name, ec.router, e.host
