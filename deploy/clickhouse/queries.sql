-- Queries a CSM lead needs, over Pulse's ClickHouse tables (database
-- `pulse`). Each works on ClickHouse 18.16 and current releases, and is run
-- against a real server by sinks/clickhouse's tests. `?` is a parameter.
-- Score rows and alert transitions may be stored twice after a restart or
-- a replay: FINAL (or argMax over ts_ns) reads each once.

-- name: at_risk_now
-- Accounts whose latest grade is red, lowest score first, with their owner.
SELECT
    account_id,
    argMax(score, ts_ns) AS score,
    argMax(csm, ts_ns) AS csm,
    argMax(segment, ts_ns) AS segment,
    max(ts) AS as_of
FROM pulse.scores FINAL
GROUP BY account_id
HAVING argMax(grade, ts_ns) = 'red'
ORDER BY score ASC, account_id ASC;

-- name: grade_changes_this_week
-- Accounts whose grade now differs from their grade 7 days ago.
SELECT account_id, before, now_grade, csm
FROM
(
    SELECT
        account_id,
        toString(argMaxIf(grade, ts_ns, ts <= now() - INTERVAL 7 DAY)) AS before,
        toString(argMax(grade, ts_ns)) AS now_grade,
        argMax(csm, ts_ns) AS csm,
        countIf(ts <= now() - INTERVAL 7 DAY) AS known_before
    FROM pulse.scores FINAL
    GROUP BY account_id
)
WHERE known_before > 0 AND before != now_grade
ORDER BY account_id;

-- name: alerts_by_csm
-- Alerts firing now, by account owner and severity.
SELECT csm, severity, count() AS firing
FROM
(
    SELECT alert_id, argMax(state, ts_ns) AS state, argMax(csm, ts_ns) AS csm, argMax(severity, ts_ns) AS severity
    FROM pulse.alerts FINAL
    GROUP BY alert_id
)
WHERE state = 'firing'
GROUP BY csm, severity
ORDER BY csm, severity DESC;

-- name: score_trend
-- One account's score and grade at the end of each day, with the day's
-- DAU and 7-day event count, from the daily rollup (parameter: the
-- account id).
SELECT day, score, grade, dau, events_7d
FROM pulse.daily FINAL
WHERE account_id = ?
ORDER BY day;
