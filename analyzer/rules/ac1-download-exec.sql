-- id: ac1-download-exec
-- rev: 2
-- title: Tool call downloads and executes code, or runs an obfuscated or reverse-shell command
-- severity: critical
-- attack_class: AC-1
-- attack: [T1059.004, T1105, T1027, T1140]
-- false_positives:
--   - The user asked the agent to run a vendor's install script (rustup, nvm, Homebrew); the finding
--     still names the script's host, so compare it with what the user asked for.
-- description: >
--   A response's tool call pipes a download into an interpreter (`curl … | sh`, `bash -c "$(curl …)"`,
--   `wget -qO- … | sh`, download-then-run), decodes and executes (`base64 -d | sh`, `exec(b64decode(…))`)
--   or opens a reverse shell. This is the payload a malicious router injects (AC-1). Text a tool call
--   only writes (a Dockerfile's `curl … | sh`, a heredoc into a script) counts only when the same call
--   then runs that file.
SELECT coalesce(t.ts, e.ts) AS ts,
       coalesce(t.host_id, e.host_id) AS host_id,
       e.pid, e.flow_uid, t.exchange_id,
       ec.router,
       t.exchange_id || ':' || t.idx AS dedup,
       json_object('tool_call_idx', t.idx, 'tool', t.name, 'indicators', list(DISTINCT i.kind),
                   'hosts', list(DISTINCT i.host) FILTER (WHERE i.host IS NOT NULL),
                   'command', any_value(i.detail), 'class', ec.class) AS evidence,
       format('{} in tool call {} of exchange {} from {}', string_agg(DISTINCT i.kind, '+'), t.name, t.exchange_id,
              coalesce(ec.router, e.host)) AS summary
FROM new_tool_calls t
JOIN tool_call_indicators i
  ON i.exchange_id = t.exchange_id AND i.idx = t.idx AND i.direction = coalesce(t.direction, 'response')
LEFT JOIN run_llm_exchanges e ON e.exchange_id = t.exchange_id
LEFT JOIN run_exchange_classes ec ON ec.exchange_id = t.exchange_id
WHERE coalesce(t.direction, 'response') = 'response'
  AND i.kind IN ('download_exec', 'base64_exec', 'reverse_shell') AND coalesce(i.context, 'command') = 'command'
GROUP BY t.ts, e.ts, t.host_id, e.host_id, e.pid, e.flow_uid, t.exchange_id, t.idx, t.name, ec.router, ec.class, e.host
