import { filterParams, type FilterParams } from './filter.ts'
import { cuped, diffOfMeans, newcombeHybrid, verdict, wilson, type Interval, type Verdict } from './stats.ts'
import { costParams, sqlFor, type Queryable } from './sql.ts'
import type { Economics } from '../../schemas/catalog.ts'

/**
 * ROI per trigger (CONTRACT §5) and the programme's lift, from the SQL of ./sql.ts with the
 * statistics of ./stats.ts.
 */

export const num = (v: unknown) => (v === null || v === undefined ? 0 : Number(v))
/** Figures are rounded so that a replay's summary.json is the same bytes on every run. */
export const round = (v: number, digits: number) => {
  const f = 10 ** digits
  const r = Math.round(v * f) / f
  return r === 0 ? 0 : r
}
export const r6 = (v: number) => round(v, 6)
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
  /**
   * Send decisions whose touchpoint was cancelled while waiting (goal reached, consent withdrawn,
   * risk alert); still treated. Absent with delivered 'sends' (a replay sends and cancels nothing).
   */
  cancelled?: number
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
    ...(opts.delivered === 'sends' ? {} : { cancelled: n('cancelled') }),
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
