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
SELECT any_value(i.ts) AS ts, any_value(i.host_id) AS host_id, i.pid, i.flow_uid, i.exchange_id, i.router,
       any_value(i.dedup) AS dedup,
       json_object('tool_call_idx', i.idx, 'tool', i.tool, 'indicators', list(DISTINCT i.kind),
                   'hosts', list(DISTINCT i.host) FILTER (WHERE i.host IS NOT NULL),
                   'command', any_value(i.detail)) AS evidence,
       format('{} from {} in tool call {} of exchange {} from {}', string_agg(DISTINCT i.kind, '+'),
              string_agg(DISTINCT i.host, ', '), i.tool, i.exchange_id, coalesce(i.router, i.exchange_host)) AS summary
FROM rw_response_indicators i  -- the engine's view: indicators of new tool calls in responses
WHERE i.kind IN ('install_url', 'custom_index') AND i.execution
GROUP BY i.call_ts, i.exchange_ts, i.call_host_id, i.exchange_host_id, i.pid, i.flow_uid, i.exchange_id, i.idx,
         i.tool, i.router, i.exchange_host
