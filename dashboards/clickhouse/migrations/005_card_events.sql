-- 005: card lifecycle milestones, for the card funnel (applied → approved → activated → bound →
-- first purchase). One row per lifecycle event of a card, and one per card for its first approved
-- purchase (stage 'first_purchase'); a repeated event collapses on its event_id.
CREATE TABLE IF NOT EXISTS {db}.card_events (
  customer_id String,
  card_id String,
  stage LowCardinality(String),              -- a lifecycle stage (applied, approved, issued, activated, bound, ...) or first_purchase
  event_time DateTime64(3, 'UTC'),           -- the event's occurredAt
  event_id String,                           -- the input event's eventId
  segment LowCardinality(String) DEFAULT ''  -- the customer's profile segment, '' when unknown
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (customer_id, card_id, stage, event_id);
