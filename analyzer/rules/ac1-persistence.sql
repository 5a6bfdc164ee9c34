-- id: ac1-persistence
-- rev: 1
-- title: Tool call plants persistence (cron, systemd, ssh authorized_keys, shell rc payload)
-- severity: high
-- attack_class: AC-1
-- attack: [T1053.003, T1543.002, T1098.004, T1546.004, T1574.006]
-- false_positives:
--   - The user asked the agent to install a service or a cron job (deployment work); the evidence
--     names the file and what was written; plain shell rc edits (PATH exports, aliases, `eval "$(pyenv
--     init -)"`) are not reported, only rc lines that fetch, decode, hide or hook.
-- description: >
--   A response's tool call writes a crontab (`crontab -`, /etc/cron.*), a systemd unit or drop-in, an
--   entry in ~/.ssh/authorized_keys, /etc/ld.so.preload, rc.local, sudoers or a login item, or appends a
--   payload (a download, a decoder, a PROMPT_COMMAND or LD_PRELOAD hook, a background job) to a shell
--   rc file: the foothold outlives the agent's session.
SELECT any_value(i.ts) AS ts, any_value(i.host_id) AS host_id, i.pid, i.flow_uid, i.exchange_id, i.router,
       any_value(i.dedup) AS dedup,
       json_object('tool_call_idx', i.idx, 'tool', i.tool, 'writes', list(DISTINCT i.detail),
                   'hosts', list(DISTINCT i.host) FILTER (WHERE i.host IS NOT NULL)) AS evidence,
       format('persistence in tool call {} of exchange {} from {}: {}', i.tool, i.exchange_id,
              coalesce(i.router, i.exchange_host), left(any_value(i.detail), 120)) AS summary
FROM rw_response_indicators i  -- the engine's view: indicators of new tool calls in responses
WHERE i.kind = 'persistence' AND coalesce(i.context, 'command') = 'command'
GROUP BY i.call_ts, i.exchange_ts, i.call_host_id, i.exchange_host_id, i.pid, i.flow_uid, i.exchange_id, i.idx,
         i.tool, i.router, i.exchange_host
