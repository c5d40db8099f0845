CREATE TABLE IF NOT EXISTS pulse.scores (
    account_id String,
    ts DateTime('UTC'),
    ts_ns UInt64,
    score Nullable(Float64),
    grade Enum8('none' = 0, 'red' = 1, 'yellow' = 2, 'green' = 3),
    depth Enum8('none' = 0, 'record' = 1, 'process' = 2, 'integration' = 3, 'custom' = 4),
    segment String,
    stage String,
    csm String,
    dau Nullable(Float64),
    wau Nullable(Float64),
    mau Nullable(Float64),
    seats Nullable(Float64),
    activation_rate Nullable(Float64),
    login_ratio_7d Nullable(Float64),
    events_7d Nullable(Float64),
    usage_change_7d Nullable(Float64),
    api_calls_7d Nullable(Float64),
    open_tickets Nullable(Float64),
    days_since_active Nullable(Float64),
    nps_90d Nullable(Float64),
    days_to_renewal Nullable(Float64),
    inserted DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree(inserted)
ORDER BY (account_id, ts, ts_ns);

CREATE TABLE IF NOT EXISTS pulse.alerts (
    alert_id String,
    state Enum8('firing' = 0, 'resolved' = 1),
    account_id String,
    rule String,
    severity Enum8('low' = 0, 'medium' = 1, 'high' = 2),
    kind Enum8('risk' = 0, 'opportunity' = 1),
    ts DateTime('UTC'),
    ts_ns UInt64,
    score Nullable(Float64),
    grade Enum8('none' = 0, 'red' = 1, 'yellow' = 2, 'green' = 3),
    depth Enum8('none' = 0, 'record' = 1, 'process' = 2, 'integration' = 3, 'custom' = 4),
    metric_names Array(String),
    metric_values Array(Float64),
    message String,
    segment String,
    stage String,
    csm String,
    plan String,
    region String,
    industry String,
    inserted DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree(inserted)
ORDER BY (alert_id, state);

CREATE TABLE IF NOT EXISTS pulse.daily (
    day Date,
    account_id String,
    score AggregateFunction(argMax, Float64, UInt64),
    grade AggregateFunction(argMax, String, UInt64),
    dau AggregateFunction(max, Float64),
    events_7d AggregateFunction(argMax, Float64, UInt64),
    csm AggregateFunction(argMax, String, UInt64)
) ENGINE = AggregatingMergeTree()
ORDER BY (account_id, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS pulse.daily_mv TO pulse.daily AS
SELECT
    toDate(ts) AS day,
    account_id,
    argMaxState(ifNull(score, nan), ts_ns) AS score,
    argMaxState(toString(grade), ts_ns) AS grade,
    maxState(ifNull(dau, 0)) AS dau,
    argMaxState(ifNull(events_7d, 0), ts_ns) AS events_7d,
    argMaxState(csm, ts_ns) AS csm
FROM pulse.scores
GROUP BY day, account_id;

DROP TABLE IF EXISTS pulse.daily_mv;

DROP TABLE IF EXISTS pulse.daily;

CREATE TABLE IF NOT EXISTS pulse.daily (
    day Date,
    account_id String,
    ts_ns UInt64,
    score Nullable(Float64),
    grade Enum8('none' = 0, 'red' = 1, 'yellow' = 2, 'green' = 3),
    depth Enum8('none' = 0, 'record' = 1, 'process' = 2, 'integration' = 3, 'custom' = 4),
    dau Nullable(Float64),
    mau Nullable(Float64),
    events_7d Nullable(Float64),
    segment String,
    csm String
) ENGINE = ReplacingMergeTree(ts_ns)
ORDER BY (account_id, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS pulse.daily_mv TO pulse.daily AS
SELECT
    toDate(toDateTime(intDiv(ts_ns - 1, 1000000000), 'UTC')) AS day,
    account_id, ts_ns, score, grade, depth, dau, mau, events_7d, segment, csm
FROM pulse.scores;

INSERT INTO pulse.daily (day, account_id, ts_ns, score, grade, depth, dau, mau, events_7d, segment, csm)
SELECT
    toDate(toDateTime(intDiv(ts_ns - 1, 1000000000), 'UTC')) AS day,
    account_id, ts_ns, score, grade, depth, dau, mau, events_7d, segment, csm
FROM pulse.scores;

ALTER TABLE pulse.scores
    ADD COLUMN scorecard String AFTER depth,
    ADD COLUMN arr Nullable(Float64) AFTER days_to_renewal;

ALTER TABLE pulse.alerts
    ADD COLUMN suppressed UInt8 AFTER state,
    ADD COLUMN scorecard String AFTER depth;

CREATE TABLE IF NOT EXISTS pulse.revenue (
    account_id String,
    ts DateTime('UTC'),
    ts_ns UInt64,
    outcome Enum8('renewed' = 1, 'churned' = 2, 'expanded' = 3, 'contracted' = 4),
    arr_before Float64,
    arr_after Float64,
    segment String,
    csm String,
    inserted DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree(inserted)
ORDER BY (account_id, ts, outcome, ts_ns);
