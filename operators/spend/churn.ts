import { z } from 'zod'
import { Duration, DAY } from '../../schemas/duration.ts'
import { epochDay, spendBetween, type SpendLedger } from '../ledger.ts'
import { localTime, nextLocalDay, zonedInstant } from '../time.ts'
import type { Effect, Moment, Operator } from '../types.ts'

/**
 * churn_retention: approved spend in the last `recentWindow` below `dropBelow` of the monthly
 * average of the `baselineWindow` before it, with that average at least `minMonthlyAverage`.
 *
 * A customer who stops spending sends no event, so an event-time timer fires at 10:00 local time
 * on the first day the drop would show if nothing more were spent (projected from the ledger), and
 * the condition is also checked on every approved transaction. Windows are whole UTC epoch days, the granularity
 * of the shared spend ledger (facts.spend); "the last 30 d" at a check is the 30 days ending with
 * the check's day, and a month is 30 days.
 *
 * One moment per episode: after firing, none until spend recovers to at least `dropBelow` of the
 * (current) baseline; a later drop is then a new episode. Recovery counts only spend from the
 * episode's day on: right after a drop the recent window still holds the spend from before it, and
 * a customer whose spend stays low hovers at the threshold as purchases enter the window and old
 * ones leave it, so judging recovery on the whole window would reopen the episode every week or so.
 */

export interface ChurnState {
  /** Epoch day on which the open episode fired (recovery counts spend from it on); absent when there is none. */
  episode?: number
  /** Due time of the armed daily check; absent when none is armed. */
  check?: number
}

/** Days of spend the shared ledger is sure to hold (35 daily, then 10-day blocks). */
export const LEDGER_DAYS = 125

const Params = z
  .object({
    recentWindow: Duration.prefault('30d'),
    baselineWindow: Duration.prefault('90d'),
    dropBelow: z.number().positive().default(0.5),
    minMonthlyAverage: z.number().nonnegative().default(1000),
  })
  // Beyond the ledger's reach the baseline would silently read as zero: reject at load instead.
  .refine((p) => p.recentWindow + p.baselineWindow <= LEDGER_DAYS * DAY, {
    message: `recentWindow + baselineWindow must be at most ${LEDGER_DAYS}d, the spend history kept per customer`,
    path: ['baselineWindow'],
  })
type Params = z.infer<typeof Params>

/** Local time of the daily check: inside business hours, clear of the default quiet hours. */
export const CHECK_HOUR = 10
const TIMER = 'check'
const MONTH_DAYS = 30
/** Bounds the catch-up of overdue checks; the watch condition normally ends it far sooner. */
const MAX_CATCH_UP = 400

export interface ChurnFigures {
  recentSpend: number
  baselineMonthlyAverage: number
  /** Recent spend (per 30 days) over the baseline monthly average. */
  ratio: number
  dropped: boolean
  /** Spend in the recent window from day `since` on is at least `dropBelow` of the baseline average. */
  recovered: boolean
  /** Whether the spend on record could still form a qualifying baseline later without new spend. */
  watch: boolean
}

/**
 * The churn figures as of the end of epoch day `day`, recovery judged on spend from epoch day
 * `since` on (the open episode's day). Pure; exported for tests.
 */
export function churnFigures(spend: SpendLedger, day: number, p: Params, since = -Infinity): ChurnFigures {
  const r = Math.max(1, Math.round(p.recentWindow / DAY))
  const b = Math.max(1, Math.round(p.baselineWindow / DAY))
  const recentSpend = spendBetween(spend, day - r + 1, day)
  const sinceSpend = since > day - r + 1 ? spendBetween(spend, since, day) : recentSpend
  const baseline = spendBetween(spend, day - r - b + 1, day - r)
  const monthly = (baseline * MONTH_DAYS) / b
  const recentMonthly = (recentSpend * MONTH_DAYS) / r
  const ratio = monthly > 0 ? recentMonthly / monthly : recentSpend > 0 ? Infinity : 0
  // With no new spend, every later baseline is a part of these r + b days.
  const horizon = spendBetween(spend, day - r - b + 1, day)
  return {
    recentSpend,
    baselineMonthlyAverage: Math.round(monthly * 100) / 100,
    ratio,
    dropped: monthly > 0 && monthly >= p.minMonthlyAverage && recentMonthly < p.dropBelow * monthly,
    recovered: monthly > 0 ? (sinceSpend * MONTH_DAYS) / r >= p.dropBelow * monthly : sinceSpend > 0,
    watch: horizon > 0 && (horizon * MONTH_DAYS) / b >= p.minMonthlyAverage,
  }
}

export const churnRetention: Operator<ChurnState, Params> = {
  name: 'churn_retention',
  uses: 'churn_retention',
  eventTypes: ['transaction'],
  formerNames: ['churn'],
  initial: () => ({}),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at, { params, facts, profile }) {
    if (event.type !== 'transaction' || event.status !== 'approved') return { state }
    const effects: Effect[] = []
    // Daily checks due before this purchase whose timer never ran (the runtime drops the timers of
    // a trigger while the catalogue disables it) run first, as of their due times.
    let s = runDueChecks(state, facts.spend, params, profile.timezone, at - 1, effects)
    const f = churnFigures(facts.spend, epochDay(at), params, s.episode)
    s = step(s, f, epochDay(at), at, effects)
    // A purchase only raises recent spend until it moves into the baseline `recentWindow` later:
    // the check planned before it stays valid until then, so check by then at the latest.
    // With no check armed (first watch, or an episode just ended) nothing bounds the next drop yet:
    // project it from here.
    if (s.episode !== undefined || !f.watch) s = withCheck(s, undefined)
    else if (s.check === undefined || s.check > at + params.recentWindow - 2 * DAY) {
      const bound = nextCheck(at + params.recentWindow - DAY, profile.timezone)
      s = withCheck(s, Math.min(s.check ?? projectDrop(facts.spend, at, params, profile.timezone, bound) ?? bound, bound))
    }
    if (s.check !== state.check) effects.push(s.check === undefined ? { kind: 'cancelTimer', key: TIMER } : { kind: 'setTimer', key: TIMER, at: s.check })
    return { state: s, effects }
  },

  onTimer(state, timer, { params, facts, profile }) {
    const effects: Effect[] = []
    const s = runDueChecks(state, facts.spend, params, profile.timezone, timer.at, effects)
    // The fired key is consumed: arm the next check (also when this timer was a stale one).
    if (s.check !== undefined) effects.push({ kind: 'setTimer', key: TIMER, at: s.check })
    return { state: s, effects }
  },
}

/** Runs the armed daily checks due by `upTo` (inclusive), each as of its due time, re-arming daily while watched. */
function runDueChecks(state: ChurnState, spend: SpendLedger, p: Params, tz: string, upTo: number, effects: Effect[]): ChurnState {
  let s = state
  for (let i = 0; s.check !== undefined && s.check <= upTo && i < MAX_CATCH_UP; i++) {
    const due = s.check
    const day = epochDay(due)
    const f = churnFigures(spend, day, p, s.episode)
    s = step(s, f, day, due, effects)
    // While an episode is open only a purchase can end it: no check until one comes.
    s = withCheck(s, s.episode === undefined && f.watch ? projectDrop(spend, due, p, tz) : undefined)
  }
  return s
}

/**
 * The first daily check after `after` at which spend would have dropped if nothing more were
 * spent, or undefined when it never would: one timer per drop instead of one per day.
 */
function projectDrop(spend: SpendLedger, after: number, p: Params, tz: string, until = Infinity): number | undefined {
  for (let t = nextCheck(after, tz), i = 0; i < MAX_CATCH_UP && t <= until; t = nextLocalDay(t, tz), i++) {
    const f = churnFigures(spend, epochDay(t), p)
    if (f.dropped) return t
    if (!f.watch) return undefined
  }
  return undefined
}

/** One evaluation: opens an episode on a drop (emitting the moment) or closes it on recovery. */
function step(state: ChurnState, f: ChurnFigures, day: number, at: number, effects: Effect[]): ChurnState {
  if (state.episode !== undefined) return f.recovered ? withEpisode(state, undefined) : state
  if (!f.dropped) return state
  const moment: Moment = {
    kind: 'moment',
    trigger: 'churn_retention',
    // One episode opens per day at most (spend within a day only grows), so the day names it.
    occurrence: new Date(day * DAY).toISOString().slice(0, 10),
    eventTime: at,
    reason: { recentSpend: f.recentSpend, baselineMonthlyAverage: f.baselineMonthlyAverage, ratio: Math.round(f.ratio * 1000) / 1000 },
  }
  effects.push(moment)
  return withEpisode(state, day)
}

function withEpisode(s: ChurnState, episode: number | undefined): ChurnState {
  const { episode: _, ...rest } = s
  return episode === undefined ? rest : { ...rest, episode }
}

function withCheck(s: ChurnState, check: number | undefined): ChurnState {
  if (s.check === check) return s
  const { check: _, ...rest } = s
  return check === undefined ? rest : { ...rest, check }
}

/** The first CHECK_HOUR:00 local strictly after `after`. */
export function nextCheck(after: number, tz: string): number {
  const t = localTime(after, tz)
  const today = zonedInstant(t.year, t.month, t.day, CHECK_HOUR, 0, tz)
  if (today > after) return today
  const d = new Date(Date.UTC(t.year, t.month - 1, t.day + 1))
  return zonedInstant(d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), CHECK_HOUR, 0, tz)
}
