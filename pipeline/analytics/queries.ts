import { filterParams } from './filter.ts'
import { num, r6, round, roiByTrigger, roiByTriggerDay, programmeLift } from './roi.ts'
import { costParams, sqlFor, type Queryable } from './sql.ts'
import type { Economics } from '../../schemas/catalog.ts'

/**
 * The dashboard views other than ROI (./roi.ts): the card funnel, the filters' dimensions,
 * decision outcomes, risk alerts and webhook delivery health, over the SQL of ./sql.ts; and VIEWS,
 * every view by name.
 */

const numOrNull = (v: unknown) => (v === null || v === undefined || Number.isNaN(Number(v)) ? null : Number(v))

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

/** Webhook delivery health per channel: success rate (of those not cancelled), attempts, latency percentiles of delivered messages. */
export async function deliveryHealth(db: Queryable, filter: unknown) {
  const rows = await db.query<Record<string, unknown>>(sqlFor('deliveryHealth', db.database), filterParams(filter))
  return rows.map((r) => ({
    channel: String(r.channel),
    deliveries: num(r.deliveries),
    delivered: num(r.delivered),
    failed: num(r.failed),
    expired: num(r.expired),
    cancelled: num(r.cancelled),
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
/**
 * A shadow catalogue against the live one: decisions by variant, catalogue version, trigger,
 * outcome and suppression, with their predicted channel cost (live: under `economics`, the live
 * catalogue's; shadow: under the draft's, as recorded with each shadow decision).
 */
export async function shadowComparison(db: Queryable, filter: unknown, economics: Economics) {
  const rows = await db.query<Record<string, unknown>>(sqlFor('shadowComparison', db.database), { ...filterParams(filter), ...costParams(economics) })
  return rows.map((r) => ({
    variant: String(r.variant) as 'live' | 'shadow',
    catalogVersion: String(r.catalog_version),
    trigger: String(r.trigger),
    outcome: String(r.outcome),
    suppressedBy: String(r.suppressed_by),
    decisions: num(r.decisions),
    predictedChannelCost: round(num(r.predicted_channel_cost), 2),
  }))
}

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
  shadow: (db: Queryable, filter: unknown, economics: Economics) => shadowComparison(db, filter, economics),
} satisfies Record<string, (db: Queryable, filter: unknown, economics: Economics) => Promise<unknown>>
export type ViewName = keyof typeof VIEWS
