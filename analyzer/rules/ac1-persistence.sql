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
SELECT coalesce(t.ts, e.ts) AS ts, coalesce(t.host_id, e.host_id) AS host_id, e.pid, e.flow_uid, t.exchange_id,
       ec.router,
       t.exchange_id || ':' || t.idx AS dedup,
       json_object('tool_call_idx', t.idx, 'tool', t.name, 'writes', list(DISTINCT i.detail),
                   'hosts', list(DISTINCT i.host) FILTER (WHERE i.host IS NOT NULL)) AS evidence,
       format('persistence in tool call {} of exchange {} from {}: {}', t.name, t.exchange_id,
              coalesce(ec.router, e.host), left(any_value(i.detail), 120)) AS summary
FROM new_tool_calls t
JOIN tool_call_indicators i
  ON i.exchange_id = t.exchange_id AND i.idx = t.idx AND i.direction = coalesce(t.direction, 'response')
LEFT JOIN run_llm_exchanges e ON e.exchange_id = t.exchange_id
LEFT JOIN run_exchange_classes ec ON ec.exchange_id = t.exchange_id
WHERE coalesce(t.direction, 'response') = 'response'
  AND i.kind = 'persistence' AND coalesce(i.context, 'command') = 'command'
GROUP BY t.ts, e.ts, t.host_id, e.host_id, e.pid, e.flow_uid, t.exchange_id, t.idx, t.name, ec.router, e.host
