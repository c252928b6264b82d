import { filterParams, type FilterParams } from './filter.ts'
import { cuped, diffOfMeans, newcombeHybrid, verdict, wilson, type Interval, type Verdict } from './stats.ts'
import type { Economics } from '../../schemas/catalog.ts'

/**
 * The analytics queries, by name: the SQL the dashboards (the web page through pipeline/http.ts,
 * Grafana through dashboards/grafana/) and `cardpulse replay` read. Every query takes the filter
 * of ./filter.ts as ClickHouse query parameters ({from:DateTime64(3, 'UTC')}, {to:…},
 * {trigger:String}, {segment:String}); nothing a user typed is ever spliced into SQL. `{db}` is the
 * database name, validated when the client connects. The statistics ClickHouse has no function for
 * are done in TypeScript (./stats.ts) from the aggregates the SQL returns. docs/analytics.md
 * explains every figure.
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
  delivered / deliveries AS success_rate,
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

const num = (v: unknown) => (v === null || v === undefined ? 0 : Number(v))
const numOrNull = (v: unknown) => (v === null || v === undefined || Number.isNaN(Number(v)) ? null : Number(v))
/** Figures are rounded so that a replay's summary.json is the same bytes on every run. */
const round = (v: number, digits: number) => {
  const f = 10 ** digits
  const r = Math.round(v * f) / f
  return r === 0 ? 0 : r
}
const r6 = (v: number) => round(v, 6)
const r2 = (v: number) => round(v, 2)
const ci = (i: Interval | null | undefined, r: (v: number) => number): Interval | null => (i ? [r(i[0]), r(i[1])] : null)

export interface RoiOptions {
  /**
   * Where delivered counts come from: 'deliveries' (the live pipeline's webhook deliveries) or
   * 'sends' (every send decision counts as delivered: `cardpulse replay`, which sends nothing).
   */
  delivered?: 'deliveries' | 'sends'
}

/** One trigger's ROI (CONTRACT §5). Money in economics.currency; rates and lift as fractions. */
export interface RoiRow {
  trigger: string
  /** With roiByTriggerDay: the day of decision, YYYY-MM-DD (UTC). */
  day?: string
  /** Send decisions (intention to treat, whatever became of the touchpoint). */
  treated: number
  /** Send decisions whose webhook was delivered (replay: every send decision). */
  delivered: number
  control: number
  /** Decisions whose window is still open and not converted yet (counted as not converted). */
  pending: number
  treatedConversions: number
  controlConversions: number
  treatedRate: number | null
  treatedRateCi95: Interval | null
  controlRate: number | null
  controlRateCi95: Interval | null
  /** rate(treated) − rate(control), and its 95% interval by Newcombe's hybrid score method. */
  lift: number | null
  liftCi95: Interval | null
  /** lift × treated. */
  incrementalConversions: number | null
  incrementalConversionsCi95: Interval | null
  treatedEngaged: number
  treatedMeanSpend: number | null
  controlMeanSpend: number | null
  /** (mean spend in window, treated − control) × treated, with a Welch-style normal interval. */
  incrementalSpend: number | null
  incrementalSpendCi95: Interval | null
  /** The same, CUPED-adjusted by the 30 days of spend before each decision. */
  cupedIncrementalSpend: number | null
  cupedIncrementalSpendCi95: Interval | null
  cupedTheta: number | null
  /** incrementalSpend × interchange rate. */
  incrementalMargin: number | null
  /** Channel cost per delivered message. */
  channelCost: number
  /** Offer value of the converted treated decisions. */
  offerCost: number
  /** channelCost + offerCost. */
  cost: number
  /** (incrementalMargin − cost) / cost; null when cost is 0 or there is no estimate. */
  roi: number | null
  currency: string
  verdict: Verdict
  verdictText: string
}

interface AggregateRow {
  trigger: string
  day?: string
  [k: string]: unknown
}

/** ROI rows from the aggregates of roiAggregates / roiAggregatesByDay: the statistics of §5. */
export function roiFromAggregates(a: AggregateRow, economics: Economics, opts: RoiOptions = {}): RoiRow {
  const n = (k: string) => num(a[k])
  const treated = n('treated')
  const control = n('control')
  const tc = n('treated_conversions')
  const cc = n('control_conversions')
  const delivered = opts.delivered === 'sends' ? treated : n('delivered')
  const channelCost = opts.delivered === 'sends' ? n('sent_channel_cost') : n('delivered_channel_cost')
  const offerCost = n('offer_cost')
  const cost = channelCost + offerCost
  const lift = newcombeHybrid(tc, treated, cc, control)
  const spend = diffOfMeans({ n: treated, sum: n('treated_spend'), sumSq: n('treated_spend_sq') }, { n: control, sum: n('control_spend'), sumSq: n('control_spend_sq') })
  const adjusted = cuped(
    { n: treated, sumX: n('treated_spend'), sumXX: n('treated_spend_sq'), sumY: n('treated_pre'), sumYY: n('treated_pre_sq'), sumXY: n('treated_spend_pre') },
    { n: control, sumX: n('control_spend'), sumXX: n('control_spend_sq'), sumY: n('control_pre'), sumYY: n('control_pre_sq'), sumXY: n('control_spend_pre') },
  )
  const incrementalSpend = spend ? spend.diff * treated : null
  const incrementalMargin = incrementalSpend === null ? null : incrementalSpend * economics.interchangeRate
  const roi = incrementalMargin === null || cost <= 0 ? null : (incrementalMargin - cost) / cost
  const v = verdict(lift?.ci ?? null, treated, control)
  const times = (i: Interval | undefined, k: number): Interval | null => (i ? [i[0] * k, i[1] * k] : null)
  return {
    trigger: a.trigger,
    ...(a.day !== undefined ? { day: String(a.day) } : {}),
    treated,
    delivered,
    control,
    pending: n('pending'),
    treatedConversions: tc,
    controlConversions: cc,
    treatedRate: treated ? r6(tc / treated) : null,
    treatedRateCi95: treated ? ci(wilson(tc, treated), r6) : null,
    controlRate: control ? r6(cc / control) : null,
    controlRateCi95: control ? ci(wilson(cc, control), r6) : null,
    lift: lift ? r6(lift.diff) : null,
    liftCi95: ci(lift?.ci, r6),
    incrementalConversions: lift ? r2(lift.diff * treated) : null,
    incrementalConversionsCi95: ci(times(lift?.ci, treated), r2),
    treatedEngaged: n('treated_engaged'),
    treatedMeanSpend: treated ? r2(n('treated_spend') / treated) : null,
    controlMeanSpend: control ? r2(n('control_spend') / control) : null,
    incrementalSpend: incrementalSpend === null ? null : r2(incrementalSpend),
    incrementalSpendCi95: ci(times(spend?.ci, treated), r2),
    cupedIncrementalSpend: adjusted ? r2(adjusted.diff * treated) : null,
    cupedIncrementalSpendCi95: ci(times(adjusted?.ci, treated), r2),
    cupedTheta: adjusted ? r6(adjusted.theta) : null,
    incrementalMargin: incrementalMargin === null ? null : r2(incrementalMargin),
    channelCost: r2(channelCost),
    offerCost: r2(offerCost),
    cost: r2(cost),
    roi: roi === null ? null : r6(roi),
    currency: economics.currency,
    verdict: v.verdict,
    verdictText: v.text,
  }
}

async function aggregates(db: Queryable, name: 'roiAggregates' | 'roiAggregatesByDay', params: FilterParams, economics: Economics) {
  return db.query<AggregateRow>(sqlFor(name, db.database), { ...params, ...costParams(economics) })
}

/** ROI per trigger over the filter's range (CONTRACT §5). */
export async function roiByTrigger(db: Queryable, filter: unknown, economics: Economics, opts: RoiOptions = {}): Promise<RoiRow[]> {
  const rows = await aggregates(db, 'roiAggregates', filterParams(filter), economics)
  return rows.map((a) => roiFromAggregates(a, economics, opts))
}

/** ROI per trigger and day of decision (UTC). */
export async function roiByTriggerDay(db: Queryable, filter: unknown, economics: Economics, opts: RoiOptions = {}): Promise<(RoiRow & { day: string })[]> {
  const rows = await aggregates(db, 'roiAggregatesByDay', filterParams(filter), economics)
  return rows.map((a) => roiFromAggregates(a, economics, opts) as RoiRow & { day: string })
}

/** ROI per trigger computed in SQL only (the Grafana panel's query), as rows of roiTable. */
export async function roiTable(db: Queryable, filter: unknown, economics: Economics) {
  return db.query<Record<string, unknown>>(sqlFor('roiTable', db.database), { ...filterParams(filter), ...costParams(economics), interchange_rate: economics.interchangeRate })
}

export interface ProgrammeRow {
  /** Decisions (send or control) of customers outside the global control group, and inside it. */
  programme: { decisions: number; customers: number; conversions: number; rate: number | null; meanSpend: number | null }
  globalControl: { decisions: number; customers: number; conversions: number; rate: number | null; meanSpend: number | null }
  lift: number | null
  liftCi95: Interval | null
  /** (mean spend per decision, programme − global control) × programme decisions. */
  incrementalSpend: number | null
  incrementalSpendCi95: Interval | null
  currency: string
  verdict: Verdict
  verdictText: string
}

/** The programme's total lift: customers in the global control group against everyone else. */
export async function programmeLift(db: Queryable, filter: unknown, economics: Economics): Promise<ProgrammeRow> {
  const rows = await db.query<Record<string, unknown>>(sqlFor('programme', db.database), filterParams(filter))
  const arm = (name: string) => {
    const r = rows.find((x) => x.arm === name)
    return { decisions: num(r?.decisions), customers: num(r?.customers), conversions: num(r?.conversions), spend: num(r?.spend_sum), spendSq: num(r?.spend_sq) }
  }
  const p = arm('programme')
  const g = arm('global_control')
  const lift = newcombeHybrid(p.conversions, p.decisions, g.conversions, g.decisions)
  const spend = diffOfMeans({ n: p.decisions, sum: p.spend, sumSq: p.spendSq }, { n: g.decisions, sum: g.spend, sumSq: g.spendSq })
  const v = verdict(lift?.ci ?? null, p.decisions, g.decisions)
  const side = (a: typeof p) => ({
    decisions: a.decisions,
    customers: a.customers,
    conversions: a.conversions,
    rate: a.decisions ? r6(a.conversions / a.decisions) : null,
    meanSpend: a.decisions ? r2(a.spend / a.decisions) : null,
  })
  return {
    programme: side(p),
    globalControl: side(g),
    lift: lift ? r6(lift.diff) : null,
    liftCi95: ci(lift?.ci, r6),
    incrementalSpend: spend ? r2(spend.diff * p.decisions) : null,
    incrementalSpendCi95: spend ? ci([spend.ci[0] * p.decisions, spend.ci[1] * p.decisions], r2) : null,
    currency: economics.currency,
    verdict: v.verdict,
    verdictText: v.text,
  }
}

export const FUNNEL_STAGES = ['applied', 'approved', 'activated', 'bound', 'first_purchase'] as const
export type FunnelStage = (typeof FUNNEL_STAGES)[number]

export interface FunnelStep {
  stage: FunnelStage
  /** Cards of the cohort that reached the stage. */
  cards: number
  /** Share of the cohort's cards that reached it. */
  rateOfCohort: number | null
  /** Cards that reached both the previous stage and this one. */
  fromPrevious: number | null
  /** fromPrevious / cards that reached the previous stage. */
  rateFromPrevious: number | null
  /** Median hours from the previous stage to this one, over cards with both. */
  medianHoursFromPrevious: number | null
}

/** The card funnel: applied → approved → activated → bound → first purchase. */
export async function cardFunnel(db: Queryable, filter: unknown): Promise<{ cohortCards: number; steps: FunnelStep[] }> {
  const [r = {}] = await db.query<Record<string, unknown>>(sqlFor('funnel', db.database), filterParams(filter))
  const cohort = num(r.cards)
  const steps = FUNNEL_STAGES.map((stage, i): FunnelStep => {
    const cards = num(r[stage])
    if (i === 0) return { stage, cards, rateOfCohort: cohort ? r6(cards / cohort) : null, fromPrevious: null, rateFromPrevious: null, medianHoursFromPrevious: null }
    const prev = FUNNEL_STAGES[i - 1]
    const both = num(r[`${prev}_to_${stage}`])
    const prevCards = num(r[prev])
    const median = numOrNull(r[`median_hours_${prev}_to_${stage}`])
    return {
      stage,
      cards,
      rateOfCohort: cohort ? r6(cards / cohort) : null,
      fromPrevious: both,
      rateFromPrevious: prevCards ? r6(both / prevCards) : null,
      medianHoursFromPrevious: median === null ? null : round(median, 3),
    }
  })
  return { cohortCards: cohort, steps }
}

/** The triggers and segments in the data and its first and last decision day, for the dashboard's filters. */
export async function dimensions(db: Queryable) {
  const [r] = await db.query<Record<string, unknown>>(sqlFor('dimensions', db.database), {})
  const decisions = num(r?.decisions)
  return {
    triggers: (r?.triggers as string[]) ?? [],
    segments: (r?.segments as string[]) ?? [],
    firstDay: decisions ? String(r.first_day) : null,
    lastDay: decisions ? String(r.last_day) : null,
  }
}

/** Decisions by trigger, outcome and suppression reason. */
export async function outcomes(db: Queryable, filter: unknown) {
  const rows = await db.query<Record<string, unknown>>(sqlFor('outcomes', db.database), filterParams(filter))
  return rows.map((r) => ({ trigger: String(r.trigger), outcome: String(r.outcome), suppressedBy: String(r.suppressed_by), decisions: num(r.decisions) }))
}

/** Decisions per time bucket (default one day) and outcome. */
export async function outcomesOverTime(db: Queryable, filter: unknown, bucketSeconds = 86_400) {
  const rows = await db.query<Record<string, unknown>>(sqlFor('outcomesOverTime', db.database), { ...filterParams(filter), bucket_seconds: bucketOf(bucketSeconds) })
  return rows.map((r) => ({ time: String(r.time), series: String(r.series), decisions: num(r.decisions) }))
}

/** Risk alerts by kind and severity. */
export async function alertsByKind(db: Queryable, filter: unknown) {
  const rows = await db.query<Record<string, unknown>>(sqlFor('alerts', db.database), filterParams(filter))
  return rows.map((r) => ({ kind: String(r.kind), severity: String(r.severity), alerts: num(r.alerts), customers: num(r.customers), meanScore: r6(num(r.mean_score)) }))
}

/** Risk alerts per time bucket (default one day) and severity. */
export async function alertsOverTime(db: Queryable, filter: unknown, bucketSeconds = 86_400) {
  const rows = await db.query<Record<string, unknown>>(sqlFor('alertsOverTime', db.database), { ...filterParams(filter), bucket_seconds: bucketOf(bucketSeconds) })
  return rows.map((r) => ({ time: String(r.time), severity: String(r.severity), alerts: num(r.alerts) }))
}

/** Webhook delivery health per channel: success rate, attempts, latency percentiles of delivered messages. */
export async function deliveryHealth(db: Queryable, filter: unknown) {
  const rows = await db.query<Record<string, unknown>>(sqlFor('deliveryHealth', db.database), filterParams(filter))
  return rows.map((r) => ({
    channel: String(r.channel),
    deliveries: num(r.deliveries),
    delivered: num(r.delivered),
    failed: num(r.failed),
    expired: num(r.expired),
    successRate: r6(num(r.success_rate)),
    meanAttempts: r6(num(r.mean_attempts)),
    maxAttempts: num(r.max_attempts),
    p50Ms: numOrNull(r.p50_ms),
    p95Ms: numOrNull(r.p95_ms),
    p99Ms: numOrNull(r.p99_ms),
  }))
}

function bucketOf(seconds: number) {
  if (!Number.isInteger(seconds) || seconds < 60 || seconds > 366 * 86_400) throw new RangeError('bucket must be a whole number of seconds from 60 to a year')
  return seconds
}

/**
 * Every view by name, with one signature, for an HTTP route such as
 * GET /api/analytics/:view?from=…&to=…&trigger=…&segment=… (pipeline/http.ts).
 */
export const VIEWS = {
  roi: (db: Queryable, filter: unknown, economics: Economics) => roiByTrigger(db, filter, economics),
  roiDaily: (db: Queryable, filter: unknown, economics: Economics) => roiByTriggerDay(db, filter, economics),
  programme: (db: Queryable, filter: unknown, economics: Economics) => programmeLift(db, filter, economics),
  funnel: (db: Queryable, filter: unknown) => cardFunnel(db, filter),
  dimensions: (db: Queryable) => dimensions(db),
  outcomes: (db: Queryable, filter: unknown) => outcomes(db, filter),
  outcomesOverTime: (db: Queryable, filter: unknown) => outcomesOverTime(db, filter),
  alerts: (db: Queryable, filter: unknown) => alertsByKind(db, filter),
  alertsOverTime: (db: Queryable, filter: unknown) => alertsOverTime(db, filter),
  deliveryHealth: (db: Queryable, filter: unknown) => deliveryHealth(db, filter),
} satisfies Record<string, (db: Queryable, filter: unknown, economics: Economics) => Promise<unknown>>
export type ViewName = keyof typeof VIEWS
