-- cardpulse analytics schema. Idempotent: run at every start, on chDB and on a ClickHouse server.
-- {db} is replaced by the configured database name (default: cardpulse).
-- Every table is a ReplacingMergeTree on its row id: the pipeline may insert a row again after a
-- crash, and the copy collapses; read with FINAL (or through the views) for exact counts.

CREATE DATABASE IF NOT EXISTS {db};

-- One row per trigger decision, including those not sent (control, suppressed).
CREATE TABLE IF NOT EXISTS {db}.decisions (
  id String,
  trigger LowCardinality(String),
  customer_id String,
  card_id String,
  outcome LowCardinality(String),            -- send | control | suppressed
  suppressed_by LowCardinality(String),      -- '' unless suppressed
  channel LowCardinality(String),
  event_time DateTime64(3, 'UTC'),
  decided_at DateTime64(3, 'UTC'),
  send_at Nullable(DateTime64(3, 'UTC')),
  expires_at DateTime64(3, 'UTC'),
  offer_code String,
  offer_value Float64,
  offer_currency LowCardinality(String),
  reason String,                             -- the evidence, JSON
  catalog_version LowCardinality(String),
  attribution_window_days UInt16
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (trigger, id);

-- One row per finished webhook delivery: delivered, failed (the delivery dead letters) or expired.
CREATE TABLE IF NOT EXISTS {db}.deliveries (
  decision_id String,
  trigger LowCardinality(String),
  customer_id String,
  channel LowCardinality(String),
  status LowCardinality(String),             -- delivered | failed | expired
  attempts UInt16,
  http_status Nullable(UInt16),
  latency_ms Nullable(Float64),
  error Nullable(String),
  delivered_at Nullable(DateTime64(3, 'UTC')),
  event_time DateTime64(3, 'UTC'),
  decided_at DateTime64(3, 'UTC'),
  finished_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (trigger, decision_id);

-- One row per risk alert, as published on the alert topic.
CREATE TABLE IF NOT EXISTS {db}.alerts (
  id String,
  kind LowCardinality(String),
  severity LowCardinality(String),
  score Float64,
  customer_id String,
  card_id String,
  event_time DateTime64(3, 'UTC'),
  detected_at DateTime64(3, 'UTC'),
  evidence String,                           -- JSON, with eventIds
  rule_version LowCardinality(String)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (kind, id);

-- One row per conversion: a trigger's goal reached within its attribution window.
CREATE TABLE IF NOT EXISTS {db}.conversions (
  decision_id String,
  trigger LowCardinality(String),
  customer_id String,
  outcome LowCardinality(String),            -- the decision's outcome: send | control
  event_id String,                           -- the event that reached the goal
  converted_at DateTime64(3, 'UTC'),
  amount Float64                             -- spend in the window, for incremental spend
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(converted_at)
ORDER BY (trigger, decision_id);

-- One row per dead-lettered input message (bad input, PAN, late events). Originals are masked,
-- and cut to their first 16 KiB (original_truncated says when; original_bytes is the full size).
CREATE TABLE IF NOT EXISTS {db}.dead_letters (
  id String,
  topic String,
  partition Int32,
  offset String,
  code LowCardinality(String),
  message String,
  path String,
  original String,
  original_encoding LowCardinality(String),
  received_at Nullable(DateTime64(3, 'UTC')),
  original_bytes UInt64 DEFAULT 0,
  original_truncated Bool DEFAULT false
) ENGINE = ReplacingMergeTree
ORDER BY (code, id);
-- Tables made before these columns existed gain them (rows already there read the defaults).
ALTER TABLE {db}.dead_letters ADD COLUMN IF NOT EXISTS original_bytes UInt64 DEFAULT 0;
ALTER TABLE {db}.dead_letters ADD COLUMN IF NOT EXISTS original_truncated Bool DEFAULT false;

-- Valid events applied, counted per hour of event time and type (one row per batch and hour).
CREATE TABLE IF NOT EXISTS {db}.event_volume (
  id String,
  hour DateTime('UTC'),
  type LowCardinality(String),
  events UInt64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, type, id);

CREATE VIEW IF NOT EXISTS {db}.event_volume_hourly AS
SELECT hour, type, sum(events) AS events
FROM {db}.event_volume FINAL
GROUP BY hour, type;
