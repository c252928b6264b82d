-- 008: decisions of a shadow (draft) catalogue run beside the live one on the same moments:
-- recorded, never sent. The columns of decisions, plus channel_cost: what one message on the
-- decision's channel costs under the draft's economics (0 unless send). A decision's id is the
-- live decision's id for the same moment, so the two join on id. ORDER BY starts with the draft's
-- catalog_version: drafts run one after another keep their decisions apart.
CREATE TABLE IF NOT EXISTS {db}.shadow_decisions (
  id String,
  trigger LowCardinality(String),
  customer_id String,
  card_id String,
  segment LowCardinality(String),
  outcome LowCardinality(String),
  suppressed_by LowCardinality(String),
  holdout LowCardinality(String),
  channel LowCardinality(String),
  event_time DateTime64(3, 'UTC'),
  decided_at DateTime64(3, 'UTC'),
  send_at Nullable(DateTime64(3, 'UTC')),
  expires_at DateTime64(3, 'UTC'),
  offer_code String,
  offer_value Float64,
  offer_currency LowCardinality(String),
  reason String,
  catalog_version LowCardinality(String),
  attribution_window_days UInt16,
  channel_cost Float64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (catalog_version, trigger, id);

-- Draft against live, per day, trigger, segment, outcome, suppression and channel: the live
-- decisions from the first shadow decision on, beside each draft's. Predicted channel cost of a
-- group = its send decisions × the channel's cost (the draft's is in channel_cost; the live one's
-- is the live catalogue's economics.channelCost).
CREATE VIEW IF NOT EXISTS {db}.shadow_comparison AS
SELECT 'shadow' AS variant, catalog_version, trigger, toDate(event_time) AS day, segment, outcome, suppressed_by, channel,
  count() AS decisions, sumIf(channel_cost, outcome = 'send') AS draft_channel_cost
FROM {db}.shadow_decisions FINAL
GROUP BY catalog_version, trigger, day, segment, outcome, suppressed_by, channel
UNION ALL
SELECT 'live' AS variant, catalog_version, trigger, toDate(event_time) AS day, segment, outcome, suppressed_by, channel,
  count() AS decisions, 0 AS draft_channel_cost
FROM {db}.decisions FINAL
WHERE event_time >= (SELECT min(event_time) FROM {db}.shadow_decisions)
GROUP BY catalog_version, trigger, day, segment, outcome, suppressed_by, channel;
