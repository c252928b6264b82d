import type { Economics } from '../../schemas/catalog.ts'

/**
 * The analytics queries' SQL, by name: what the dashboards (the web page through pipeline/http.ts,
 * Grafana through dashboards/grafana/) and `cardpulse replay` read, the one place it is written.
 * Every query takes the filter of ./filter.ts as ClickHouse query parameters
 * ({from:DateTime64(3, 'UTC')}, {to:…}, {trigger:String}, {segment:String}); nothing a user typed is
 * ever spliced into SQL. `{db}` is the database name, validated when the client connects. The
 * statistics ClickHouse has no function for are done in TypeScript (./stats.ts) from the aggregates
 * the SQL returns: ./roi.ts for ROI and the programme's lift, ./queries.ts for the other views.
 * docs/analytics.md explains every figure.
 */

/** What the query functions need of a ClickHouse connection: ClickHouseSink fits. */
export interface Queryable {
  readonly database: string
  query<T = Record<string, unknown>>(query: string, params?: Record<string, unknown>): Promise<T[]>
}

const FROM = `{from:DateTime64(3, 'UTC')}`
const TO = `{to:DateTime64(3, 'UTC')}`
const TRIGGER = `{trigger:String}`
const SEGMENT = `{segment:String}`

/** The filter on a decision-time column; trigger and segment where the rows carry them. */
const decisionFilter = (time: string) => `${time} >= ${FROM} AND ${time} < ${TO}
  AND (${TRIGGER} = '' OR trigger = ${TRIGGER})
  AND (${SEGMENT} = '' OR segment = ${SEGMENT})`

/** Rows without a segment column: the customers whose decisions carry the segment. */
const segmentByCustomer = `(${SEGMENT} = '' OR customer_id IN (SELECT customer_id FROM {db}.decisions WHERE segment = ${SEGMENT}))`

/** Channel cost of a row's channel, from the query parameters {cost_sms} … {cost_app_banner}. */
const CHANNEL_COST = `multiIf(channel = 'sms', {cost_sms:Float64}, channel = 'push', {cost_push:Float64}, channel = 'call', {cost_call:Float64}, channel = 'app_banner', {cost_app_banner:Float64}, 0)`

/** The additive ROI inputs of a group of send/control decisions (decision_outcomes, migration 006). */
const ROI_AGGREGATES = `
  toUInt64(countIf(outcome = 'send')) AS treated,
  toUInt64(countIf(outcome = 'control')) AS control,
  toUInt64(countIf(outcome = 'send' AND delivery_status = 'delivered')) AS delivered,
  toUInt64(countIf(outcome = 'send' AND delivery_status = 'cancelled')) AS cancelled,
  toUInt64(countIf(outcome = 'send' AND converted = 1)) AS treated_conversions,
  toUInt64(countIf(outcome = 'control' AND converted = 1)) AS control_conversions,
  toUInt64(countIf(outcome = 'send' AND engaged = 1)) AS treated_engaged,
  toUInt64(countIf(has_window = 0)) AS pending,
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
  sumIf(offer_value, outcome = 'send' AND converted = 1) AS offer_cost,
  sumIf(${CHANNEL_COST}, outcome = 'send' AND delivery_status = 'delivered') AS delivered_channel_cost,
  sumIf(${CHANNEL_COST}, outcome = 'send') AS sent_channel_cost`

const roiAggregatesSql = (byDay: boolean) => `
SELECT trigger,${byDay ? ` toString(toDate(decision_time)) AS day,` : ''}${ROI_AGGREGATES}
FROM {db}.decision_outcomes
WHERE ${decisionFilter('decision_time')}
GROUP BY trigger${byDay ? ', day' : ''}
ORDER BY trigger${byDay ? ', day' : ''}`

/**
 * The named SQL. Parameters beyond the filter: {cost_*:Float64} (channel costs), for roi*;
 * {interchange_rate:Float64} for roiTable; {bucket_seconds:UInt32} for the *OverTime queries.
 */
export const SQL = {
  /** ROI inputs per trigger. */
  roiAggregates: roiAggregatesSql(false),
  /** ROI inputs per trigger and day of decision (UTC). */
  roiAggregatesByDay: roiAggregatesSql(true),

  /**
   * ROI per trigger entirely in SQL (Wilson, Newcombe's hybrid, incremental spend, cost, ROI) for
   * tools that can only run SQL, such as Grafana. The same figures as roiByTrigger (a test holds
   * them equal), without CUPED and the spend interval; cost counts delivered messages.
   */
  roiTable: `
WITH 1.959963984540054 AS z
SELECT
  trigger, treated, delivered, control, treated_conversions, control_conversions,
  treated_conversions / treated AS treated_rate,
  control_conversions / control AS control_rate,
  treated_rate - control_rate AS lift,
  (treated_conversions + z * z / 2) / (treated + z * z) AS t_centre,
  z * sqrt(treated) / (treated + z * z) * sqrt(treated_rate * (1 - treated_rate) + z * z / (4 * treated)) AS t_half,
  (control_conversions + z * z / 2) / (control + z * z) AS c_centre,
  z * sqrt(control) / (control + z * z) * sqrt(control_rate * (1 - control_rate) + z * z / (4 * control)) AS c_half,
  lift - sqrt(pow(treated_rate - greatest(0, t_centre - t_half), 2) + pow(least(1, c_centre + c_half) - control_rate, 2)) AS lift_low,
  lift + sqrt(pow(least(1, t_centre + t_half) - treated_rate, 2) + pow(control_rate - greatest(0, c_centre - c_half), 2)) AS lift_high,
  lift * treated AS incremental_conversions,
  (treated_spend / treated - control_spend / control) * treated AS incremental_spend,
  incremental_spend * {interchange_rate:Float64} AS incremental_margin,
  delivered_channel_cost + offer_cost AS cost,
  if(cost > 0, (incremental_margin - cost) / cost, NULL) AS roi,
  multiIf(least(treated, control) < 100, 'not yet (too few decisions)', lift_low > 0, 'lift credible', lift_high < 0, 'negative', 'not yet') AS verdict
FROM (${roiAggregatesSql(false)}
)
WHERE treated > 0 AND control > 0
ORDER BY trigger`,

  /**
   * The programme's lift: decisions of customers in the global control group against all others
   * (decisions whose holdout is 'global' against the rest).
   */
  programme: `
SELECT
  if(holdout = 'global', 'global_control', 'programme') AS arm,
  toUInt64(count()) AS decisions,
  toUInt64(uniqExact(customer_id)) AS customers,
  toUInt64(countIf(converted = 1)) AS conversions,
  sum(spend) AS spend_sum,
  sum(spend * spend) AS spend_sq
FROM {db}.decision_outcomes
WHERE ${decisionFilter('decision_time')}
GROUP BY arm
ORDER BY arm`,

  /** The card funnel over the cards whose first milestone falls in the range (trigger does not apply). */
  funnel: `
SELECT
  toUInt64(count()) AS cards,
  toUInt64(countIf(applied_at IS NOT NULL)) AS applied,
  toUInt64(countIf(approved_at IS NOT NULL)) AS approved,
  toUInt64(countIf(activated_at IS NOT NULL)) AS activated,
  toUInt64(countIf(bound_at IS NOT NULL)) AS bound,
  toUInt64(countIf(first_purchase_at IS NOT NULL)) AS first_purchase,
  toUInt64(countIf(applied_at IS NOT NULL AND approved_at IS NOT NULL)) AS applied_to_approved,
  toUInt64(countIf(approved_at IS NOT NULL AND activated_at IS NOT NULL)) AS approved_to_activated,
  toUInt64(countIf(activated_at IS NOT NULL AND bound_at IS NOT NULL)) AS activated_to_bound,
  toUInt64(countIf(bound_at IS NOT NULL AND first_purchase_at IS NOT NULL)) AS bound_to_first_purchase,
  quantileIf(0.5)(dateDiff('second', applied_at, approved_at), approved_at >= applied_at) / 3600 AS median_hours_applied_to_approved,
  quantileIf(0.5)(dateDiff('second', approved_at, activated_at), activated_at >= approved_at) / 3600 AS median_hours_approved_to_activated,
  quantileIf(0.5)(dateDiff('second', activated_at, bound_at), bound_at >= activated_at) / 3600 AS median_hours_activated_to_bound,
  quantileIf(0.5)(dateDiff('second', bound_at, first_purchase_at), first_purchase_at >= bound_at) / 3600 AS median_hours_bound_to_first_purchase
FROM {db}.card_funnel
WHERE first_seen_at >= ${FROM} AND first_seen_at < ${TO}
  AND (${SEGMENT} = '' OR segment = ${SEGMENT})`,

  /** What the filters can choose from: the triggers and segments decided, and the decision days. */
  dimensions: `
SELECT
  arraySort(groupUniqArray(trigger)) AS triggers,
  arraySort(arrayFilter(s -> s != '', groupUniqArray(segment))) AS segments,
  toString(toDate(min(event_time))) AS first_day,
  toString(toDate(max(event_time))) AS last_day,
  toUInt64(count()) AS decisions
FROM {db}.decisions`,

  /** Decisions by trigger, outcome and suppression reason. */
  outcomes: `
SELECT trigger, outcome, suppressed_by, toUInt64(count()) AS decisions
FROM {db}.decisions FINAL
WHERE ${decisionFilter('event_time')}
GROUP BY trigger, outcome, suppressed_by
ORDER BY trigger, outcome, suppressed_by`,

  /** Decisions per time bucket and series: send, control, or 'suppressed: <reason>'. */
  outcomesOverTime: `
SELECT
  toStartOfInterval(event_time, INTERVAL {bucket_seconds:UInt32} SECOND) AS time,
  if(outcome = 'suppressed', concat('suppressed: ', suppressed_by), outcome) AS series,
  toUInt64(count()) AS decisions
FROM {db}.decisions FINAL
WHERE ${decisionFilter('event_time')}
GROUP BY time, series
ORDER BY time, series`,

  /** Risk alerts by kind and severity (segment through the customers' decisions; trigger does not apply). */
  alerts: `
SELECT kind, severity, toUInt64(count()) AS alerts, toUInt64(uniqExact(customer_id)) AS customers, avg(score) AS mean_score
FROM {db}.alerts FINAL
WHERE event_time >= ${FROM} AND event_time < ${TO} AND ${segmentByCustomer}
GROUP BY kind, severity
ORDER BY kind, severity`,

  /** Risk alerts per time bucket and severity. */
  alertsOverTime: `
SELECT toStartOfInterval(event_time, INTERVAL {bucket_seconds:UInt32} SECOND) AS time, severity, toUInt64(count()) AS alerts
FROM {db}.alerts FINAL
WHERE event_time >= ${FROM} AND event_time < ${TO} AND ${segmentByCustomer}
GROUP BY time, severity
ORDER BY time, severity`,

  /** Webhook delivery health per channel, by the decision time of the touchpoint. */
  deliveryHealth: `
SELECT
  channel,
  toUInt64(count()) AS deliveries,
  toUInt64(countIf(status = 'delivered')) AS delivered,
  toUInt64(countIf(status = 'failed')) AS failed,
  toUInt64(countIf(status = 'expired')) AS expired,
  toUInt64(countIf(status = 'cancelled')) AS cancelled,
  -- A cancelled touchpoint was never due to be sent: it counts neither way.
  if(deliveries > cancelled, delivered / (deliveries - cancelled), 1) AS success_rate,
  avg(attempts) AS mean_attempts,
  toUInt32(max(attempts)) AS max_attempts,
  quantileIf(0.5)(latency_ms, status = 'delivered') AS p50_ms,
  quantileIf(0.95)(latency_ms, status = 'delivered') AS p95_ms,
  quantileIf(0.99)(latency_ms, status = 'delivered') AS p99_ms
FROM {db}.deliveries FINAL
WHERE event_time >= ${FROM} AND event_time < ${TO}
  AND (${TRIGGER} = '' OR trigger = ${TRIGGER})
  AND (${SEGMENT} = '' OR decision_id IN (SELECT id FROM {db}.decisions WHERE segment = ${SEGMENT}))
GROUP BY channel
ORDER BY channel`,

  /**
   * A shadow (draft) catalogue against the live one (migration 008): decisions per variant
   * (`live`, `shadow`), catalogue version, trigger, outcome and suppression, and their predicted
   * channel cost — send decisions × the channel's cost, the draft's from its rows, the live one's
   * from {cost_*}. Live decisions count from the first shadow decision on.
   */
  shadowComparison: `
SELECT variant, catalog_version, trigger, outcome, suppressed_by,
  toUInt64(count()) AS decisions,
  sum(cost) AS predicted_channel_cost
FROM (
  SELECT 'shadow' AS variant, catalog_version, trigger, segment, outcome, suppressed_by, event_time, if(outcome = 'send', channel_cost, 0) AS cost
  FROM {db}.shadow_decisions FINAL
  UNION ALL
  SELECT 'live' AS variant, catalog_version, trigger, segment, outcome, suppressed_by, event_time, if(outcome = 'send', ${CHANNEL_COST}, 0) AS cost
  FROM {db}.decisions FINAL
  WHERE event_time >= (SELECT min(event_time) FROM {db}.shadow_decisions)
)
WHERE ${decisionFilter('event_time')}
GROUP BY variant, catalog_version, trigger, outcome, suppressed_by
ORDER BY trigger, variant, catalog_version, outcome, suppressed_by`,
} as const

export type QueryName = keyof typeof SQL

/** The SQL of a named query for a database. */
export function sqlFor(name: QueryName, database: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(database)) throw new Error(`"${database}" is not a valid database name`)
  return SQL[name].replaceAll('{db}', database)
}

/** Channel costs as the query parameters {cost_sms} … {cost_app_banner}. */
export function costParams(economics: Economics) {
  const c = economics.channelCost
  return { cost_sms: c.sms, cost_push: c.push, cost_call: c.call, cost_app_banner: c.app_banner }
}
