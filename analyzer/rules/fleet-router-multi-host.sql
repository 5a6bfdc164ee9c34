-- id: fleet-router-multi-host
-- rev: 2
-- title: The same LLM router is used from several hosts of the fleet
-- severity: low
-- attack_class: fleet
-- attack: [T1557, T1090]
-- suppress: 1d
-- false_positives:
--   - A router the organisation chose on purpose (declare it in the catalog; the finding stays low and
--     records which hosts use it).
-- description: >
--   One router (a catalogued router, or a host that serves an LLM API and is in no catalog) now serves
--   exchanges of at least `fleet_router_min_hosts` hosts (default 2). An uncatalogued router spreading
--   through the fleet is medium: a reseller endpoint copied between agent configurations is how one
--   malicious router reaches many machines. Evidence lists the hosts and when each started. The
--   finding comes again as the router spreads, each time its host count passes 2, 3, 5, 10, 25, 50,
--   100, 250, 500 or 1000 hosts (not once per host: a popular router on a large fleet stays readable).
WITH touched AS (
    SELECT DISTINCT router FROM exchange_classes
    WHERE exchange_id IN (SELECT exchange_id FROM new_llm_exchanges)
      AND class IN ('router', 'suspected_router') AND router IS NOT NULL
), per_host AS (
    SELECT ec.router, ec.host_id, min(ec.ts) AS first_ts, count(*) AS exchanges,
           bool_or(ec.class = 'suspected_router') AS suspected
    FROM exchange_classes ec JOIN touched t USING (router)
    WHERE ec.class IN ('router', 'suspected_router') AND ec.host_id IS NOT NULL
    GROUP BY ALL
), fleet AS (
    SELECT router, count(*) AS n_hosts, max(first_ts) AS ts, arg_max(host_id, first_ts) AS newest_host,
           bool_or(suspected) AS suspected,
           list(struct_pack(host_id := host_id, first_seen := first_ts, exchanges := exchanges) ORDER BY first_ts, host_id) AS hosts
    FROM per_host GROUP BY router
)
SELECT f.ts, f.newest_host AS host_id, NULL AS pid, NULL AS flow_uid, NULL AS exchange_id, f.router,
       f.router || ':' || (SELECT max(t) FROM unnest([2, 3, 5, 10, 25, 50, 100, 250, 500, 1000]) u(t)
                           WHERE t <= f.n_hosts) AS dedup,
       CASE WHEN f.suspected THEN 'medium' ELSE 'low' END AS severity,
       json_object('router', f.router, 'hosts', f.hosts, 'host_count', f.n_hosts, 'uncatalogued', f.suspected) AS evidence,
       format('router {} is used from {} hosts ({})', f.router, f.n_hosts,
              array_to_string(list_transform(f.hosts, h -> h.host_id), ', ')) AS summary
FROM fleet f
WHERE f.n_hosts >= coalesce(rw_setting('fleet_router_min_hosts'), 2)
