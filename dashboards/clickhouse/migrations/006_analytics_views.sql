-- 006: views the dashboards and analysts read. The query module (pipeline/analytics/sql.ts)
-- reads decision_outcomes and card_funnel with its filters; roi_daily is the same aggregation per
-- day for ad-hoc SQL. Every figure in roi_daily is additive: sum its rows over any range.

-- Every send or control decision with the state of its attribution window and its delivery.
-- has_window is 0 while the window is still open and nothing converted yet (no conversions row):
-- such a decision counts as not converted, with no spend, in both groups alike.
CREATE VIEW IF NOT EXISTS {db}.decision_outcomes AS
SELECT
  d.id AS decision_id,
  d.trigger AS trigger,
  d.customer_id AS customer_id,
  d.card_id AS card_id,
  d.segment AS segment,
  d.holdout AS holdout,
  d.outcome AS outcome,
  d.channel AS channel,
  d.offer_value AS offer_value,
  d.event_time AS decision_time,
  toUInt8(ifNull(c.decision_id, '') != '') AS has_window,
  toUInt8(ifNull(c.converted, 0)) AS converted,
  c.converted_at AS converted_at,
  toUInt8(ifNull(c.engaged, 0)) AS engaged,
  toFloat64(ifNull(c.spend, 0)) AS spend,
  toFloat64(ifNull(c.pre_spend, 0)) AS pre_spend,
  toUInt8(ifNull(c.final, 0)) AS final,
  ifNull(dl.status, '') AS delivery_status,
  dl.latency_ms AS delivery_latency_ms
FROM (SELECT id, trigger, customer_id, card_id, segment, holdout, outcome, channel, offer_value, event_time
      FROM {db}.decisions FINAL WHERE outcome IN ('send', 'control')) AS d
LEFT JOIN (SELECT decision_id, converted, converted_at, engaged, spend, pre_spend, final FROM {db}.conversions FINAL) AS c
  ON c.decision_id = d.id
LEFT JOIN (SELECT decision_id, status, latency_ms FROM {db}.deliveries FINAL) AS dl
  ON dl.decision_id = d.id;

-- ROI inputs per trigger, day of decision (UTC), segment and channel: counts, sums and sums of
-- squares, from which rates, lift, intervals and CUPED follow (docs/analytics.md).
CREATE VIEW IF NOT EXISTS {db}.roi_daily AS
SELECT
  trigger,
  toDate(decision_time) AS day,
  segment,
  channel,
  countIf(outcome = 'send') AS treated,
  countIf(outcome = 'control') AS control,
  countIf(outcome = 'send' AND delivery_status = 'delivered') AS delivered,
  countIf(outcome = 'send' AND converted = 1) AS treated_conversions,
  countIf(outcome = 'control' AND converted = 1) AS control_conversions,
  countIf(outcome = 'send' AND engaged = 1) AS treated_engaged,
  countIf(has_window = 0) AS pending,
  sumIf(spend, outcome = 'send') AS treated_spend,
  sumIf(spend * spend, outcome = 'send') AS treated_spend_sq,
  sumIf(spend, outcome = 'control') AS control_spend,
  sumIf(spend * spend, outcome = 'control') AS control_spend_sq,
  sumIf(pre_spend, outcome = 'send') AS treated_pre,
  sumIf(pre_spend * pre_spend, outcome = 'send') AS treated_pre_sq,
  sumIf(spend * pre_spend, outcome = 'send') AS treated_spend_pre,
  sumIf(pre_spend, outcome = 'control') AS control_pre,
  sumIf(pre_spend * pre_spend, outcome = 'control') AS control_pre_sq,
  sumIf(spend * pre_spend, outcome = 'control') AS control_spend_pre,
  sumIf(offer_value, outcome = 'send' AND converted = 1) AS offer_cost
FROM {db}.decision_outcomes
GROUP BY trigger, day, segment, channel;

-- The card funnel, one row per card: when it first reached each stage (NULL if not yet).
-- first_seen_at, its first funnel milestone, dates the card's cohort.
CREATE VIEW IF NOT EXISTS {db}.card_funnel AS
SELECT
  customer_id,
  card_id,
  argMaxIf(segment, event_time, segment != '') AS segment,
  min(event_time) AS first_seen_at,
  minIfOrNull(event_time, stage = 'applied') AS applied_at,
  minIfOrNull(event_time, stage = 'approved') AS approved_at,
  minIfOrNull(event_time, stage = 'activated') AS activated_at,
  minIfOrNull(event_time, stage = 'bound') AS bound_at,
  minIfOrNull(event_time, stage = 'first_purchase') AS first_purchase_at
FROM {db}.card_events FINAL
WHERE stage IN ('applied', 'approved', 'activated', 'bound', 'first_purchase')
GROUP BY customer_id, card_id;
