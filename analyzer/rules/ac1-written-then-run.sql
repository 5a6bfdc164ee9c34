-- id: ac1-written-then-run
-- rev: 1
-- title: Tool call runs a file an earlier tool call wrote with a payload in it
-- severity: critical
-- attack_class: AC-1
-- attack: [T1059.004, T1105, T1027]
-- false_positives:
--   - The user asked for an install script that pipes a vendor's installer into a shell and then to run
--     it; the evidence names both calls and the payload.
-- description: >
--   The payload split over two calls: one writes a file whose content downloads and runs, decodes and
--   runs, opens a reverse shell, exfiltrates credentials or plants persistence (write_file, an editor
--   tool, a heredoc, `echo … > f`), and a later call on the same host (within `written_run_window_s`)
--   runs it (`bash install.sh`, `./install.sh`, `python3 x.py`, `source x.sh`). Text that is only written
--   is not an execution indicator on its own (a Dockerfile or README holds `curl … | sh` lines all the
--   time); running it is. Both exchanges are accounted for.
WITH runs AS (
    SELECT r.*, regexp_extract(r.detail, '[^/]+$') AS base
    FROM tool_call_indicators r
    WHERE r.kind = 'runs_file' AND r.direction = 'response' AND coalesce(r.context, 'command') = 'command'
      AND r.exchange_id IN (SELECT exchange_id FROM new_tool_calls)
), written AS (
    SELECT w.*, regexp_extract(w.path, '[^/]+$') AS base
    FROM tool_call_indicators w
    WHERE w.context = 'written' AND w.path IS NOT NULL AND w.direction = 'response'
      AND w.kind IN ('download_exec', 'base64_exec', 'reverse_shell', 'credential_exfil', 'persistence')
      AND regexp_extract(w.path, '[^/]+$') IN (SELECT base FROM runs)
), pairs AS (
    SELECT r.ts, r.host_id, r.exchange_id, r.idx, r.detail AS ran, w.exchange_id AS written_in, w.idx AS written_idx,
           w.path, w.kind, w.detail AS payload, w.host AS payload_host, w.ts AS written_ts
    FROM runs r
    JOIN written w ON w.base = r.base AND w.host_id IS NOT DISTINCT FROM r.host_id
                  AND w.ts <= r.ts AND w.ts >= r.ts - to_seconds(rw_setting('written_run_window_s'))
                  AND (w.exchange_id <> r.exchange_id OR w.idx < r.idx)
                  -- `./install.sh` and `/home/dev/project/install.sh` are the same file; `/tmp/x` and `/opt/x` are not
                  AND (NOT starts_with(r.detail, '/') OR NOT starts_with(w.path, '/') OR r.detail = w.path)
)
SELECT p.ts, p.host_id, e.pid, e.flow_uid, p.exchange_id, ec.router,
       p.exchange_id || ':' || p.idx AS dedup,
       [p.exchange_id, any_value(p.written_in)] AS exchange_ids,
       json_object('ran', p.ran, 'tool_call_idx', p.idx, 'written_in_exchange', any_value(p.written_in),
                   'written_path', any_value(p.path), 'written_at', any_value(p.written_ts),
                   'payload_kinds', list(DISTINCT p.kind), 'payload', any_value(p.payload),
                   'hosts', list(DISTINCT p.payload_host) FILTER (WHERE p.payload_host IS NOT NULL)) AS evidence,
       format('tool call {} of exchange {} from {} runs {}, written with {} by exchange {}', p.idx, p.exchange_id,
              coalesce(ec.router, e.host), p.ran, string_agg(DISTINCT p.kind, '+'), any_value(p.written_in)) AS summary
FROM pairs p
LEFT JOIN run_llm_exchanges e ON e.exchange_id = p.exchange_id
LEFT JOIN run_exchange_classes ec ON ec.exchange_id = p.exchange_id
GROUP BY p.ts, p.host_id, e.pid, e.flow_uid, p.exchange_id, p.idx, p.ran, ec.router, e.host
