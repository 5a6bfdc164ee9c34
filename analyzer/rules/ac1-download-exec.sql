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
SELECT any_value(i.ts) AS ts, any_value(i.host_id) AS host_id, i.pid, i.flow_uid, i.exchange_id, i.router,
       any_value(i.dedup) AS dedup,
       json_object('tool_call_idx', i.idx, 'tool', i.tool, 'indicators', list(DISTINCT i.kind),
                   'hosts', list(DISTINCT i.host) FILTER (WHERE i.host IS NOT NULL),
                   'command', any_value(i.detail), 'class', i.class) AS evidence,
       format('{} in tool call {} of exchange {} from {}', string_agg(DISTINCT i.kind, '+'), i.tool, i.exchange_id,
              coalesce(i.router, i.exchange_host)) AS summary
FROM rw_response_indicators i  -- the engine's view: indicators of new tool calls in responses
WHERE i.kind IN ('download_exec', 'base64_exec', 'reverse_shell') AND coalesce(i.context, 'command') = 'command'
GROUP BY i.call_ts, i.exchange_ts, i.call_host_id, i.exchange_host_id, i.pid, i.flow_uid, i.exchange_id, i.idx,
         i.tool, i.router, i.class, i.exchange_host
