-- 002: conversions become the state of each send/control decision's attribution window.
-- The table of 001's era (decision_id, trigger, customer_id, outcome, event_id, converted_at,
-- amount) was never written, so it is dropped and made again in the new shape. ensureSchema runs
-- before the pipeline writes anything, so a rerun after a failure here drops an empty table.
DROP TABLE IF EXISTS {db}.conversions;

-- One row per send or control decision once its attribution window closes, or earlier when the
-- goal is reached; later rows for the same decision (higher version) replace earlier ones.
CREATE TABLE IF NOT EXISTS {db}.conversions (
  decision_id String,
  trigger LowCardinality(String),
  customer_id String,
  card_id String,
  outcome LowCardinality(String),                  -- send | control
  decision_time DateTime64(3, 'UTC'),              -- the decision's event_time
  window_end DateTime64(3, 'UTC'),                 -- decision_time + the attribution window
  converted UInt8,                                 -- 1 once the goal is reached in the window
  converted_at Nullable(DateTime64(3, 'UTC')),
  converting_event_id String,                      -- the event that reached the goal, or ''
  engaged UInt8,                                   -- 1 once the customer engaged with the offer in the window
  spend Float64,                                   -- approved spend in the window so far
  pre_spend Float64,                               -- approved spend in the 30 d before the decision (CUPED)
  final UInt8,                                     -- 1 once the window has ended
  version UInt64                                   -- the latest state wins
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(decision_time)
ORDER BY (trigger, decision_id);
