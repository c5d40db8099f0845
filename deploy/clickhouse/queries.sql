-- Queries a CSM lead needs, over Pulse's ClickHouse tables (database
-- `pulse`). Each works on ClickHouse 18.16 and current releases, and is run
-- against a real server by sinks/clickhouse's tests. `?` is a parameter.
-- Score rows, alert transitions and renewal outcomes may be stored twice
-- after a restart or a replay: FINAL (or argMax over ts_ns) reads each once.

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

-- name: revenue_retention
-- Per month (of the renewal), segment and CSM, from the renewal outcomes
-- (SPEC §5): NDR = Σ arr_after ÷ Σ arr_before, GRR = Σ min(arr_after,
-- arr_before) ÷ Σ arr_before (both null where Σ arr_before is 0), logo
-- churn = churned ÷ all outcomes. The sums and counts are there to roll
-- rows up (a quarter, a whole segment): divide their sums, never average
-- their ratios.
SELECT
    toStartOfMonth(ts) AS month,
    segment,
    csm,
    count() AS outcomes,
    countIf(outcome = 'churned') AS churned,
    sum(arr_before) AS arr_before_sum,
    sum(arr_after) AS arr_after_sum,
    sum(least(arr_after, arr_before)) AS arr_kept,
    if(arr_before_sum > 0, arr_after_sum / arr_before_sum, NULL) AS ndr,
    if(arr_before_sum > 0, arr_kept / arr_before_sum, NULL) AS grr,
    churned / outcomes AS logo_churn
FROM pulse.revenue FINAL
GROUP BY month, segment, csm
ORDER BY month, segment, csm;

-- name: arr_at_risk
-- ARR at risk: the ARR of the accounts whose latest score row is red,
-- beside the ARR of all accounts. The latest row is taken whole, as a
-- tuple: argMax of a Nullable column alone skips NULLs, and would take an
-- older row's arr. Red accounts whose ARR is unknown are counted apart.
SELECT
    countIf(last_grade = 'red') AS red_accounts,
    countIf(last_grade = 'red' AND isNull(last_arr)) AS red_unknown_arr,
    ifNull(sumIf(last_arr, last_grade = 'red'), 0) AS arr_at_risk,
    ifNull(sum(last_arr), 0) AS arr_total
FROM
(
    SELECT
        account_id,
        argMax(tuple(grade, arr), ts_ns) AS latest,
        tupleElement(latest, 1) AS last_grade,
        tupleElement(latest, 2) AS last_arr
    FROM pulse.scores FINAL
    GROUP BY account_id
);

-- name: arr_at_risk_by_owner
-- The same per segment and CSM (those of each account's latest row), most
-- ARR at risk first; every group with its total ARR.
SELECT
    last_segment AS segment,
    last_csm AS csm,
    count() AS accounts,
    countIf(last_grade = 'red') AS red_accounts,
    countIf(last_grade = 'red' AND isNull(last_arr)) AS red_unknown_arr,
    ifNull(sumIf(last_arr, last_grade = 'red'), 0) AS arr_at_risk,
    ifNull(sum(last_arr), 0) AS arr_total
FROM
(
    SELECT
        account_id,
        argMax(tuple(grade, arr, segment, csm), ts_ns) AS latest,
        tupleElement(latest, 1) AS last_grade,
        tupleElement(latest, 2) AS last_arr,
        tupleElement(latest, 3) AS last_segment,
        tupleElement(latest, 4) AS last_csm
    FROM pulse.scores FINAL
    GROUP BY account_id
)
GROUP BY segment, csm
ORDER BY arr_at_risk DESC, segment, csm;
