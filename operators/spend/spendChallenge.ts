import { z } from 'zod'
import { localMonth, zonedInstant } from '../time.ts'
import type { Effect, Moment, Operator } from '../types.ts'

/**
 * spend_threshold_challenge: at 10:00 local time on day `dayOfMonth` of a month, month-to-date
 * approved spend below `threshold` while last month's reached it.
 *
 * Months are the customer's local calendar months (profile time zone), so this keeps its own
 * month-to-date and last-month totals instead of reading the UTC-day ledger: a purchase at
 * 2026-09-30T17:00Z is October in Shanghai. The check runs at 10:00 local (business hours, clear of
 * the default quiet hours); a `dayOfMonth` past the end of a short month means its last day.
 *
 * The check timer is armed only while a check could fire: for this month's day while last month
 * reached the threshold and this one has not yet, and for next month's day once this month has
 * reached it. A customer who stops spending thus stops being re-armed after one month.
 */

export interface ChallengeState {
  /** Local month ("2026-10") that `mtd` belongs to. */
  month?: string
  /** Approved spend in `month` so far, in cents. */
  mtd: number
  /** Approved spend in the month before `month`, in cents (0 when none was seen). */
  last: number
  /** The latest month whose check has run. */
  checked?: string
}

const Params = z.object({
  dayOfMonth: z.number().int().min(1).max(31).default(20),
  threshold: z.number().nonnegative().default(500),
})
type Params = z.infer<typeof Params>

export const CHECK_HOUR = 10
const TIMER = 'check'

export const spendThresholdChallenge: Operator<ChallengeState, Params> = {
  name: 'spend_threshold_challenge',
  uses: 'spend_threshold_challenge',
  eventTypes: ['transaction'],
  formerNames: ['spendChallenge'],
  initial: () => ({ mtd: 0, last: 0 }),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at, { params, profile }) {
    if (event.type !== 'transaction' || event.status !== 'approved') return { state }
    const tz = profile.timezone
    const cents = Math.round(event.amount * 100)
    const month = monthOf(at, tz)
    const effects: Effect[] = []
    let s: ChallengeState
    if (state.month !== undefined && month < state.month) {
      // A purchase in an earlier local month (the time zone changed): only last month's total can still matter.
      if (month !== prevMonth(state.month)) return { state }
      s = { ...state, last: state.last + cents }
    } else {
      // Checks due before this purchase whose timer never ran (the runtime drops the timers of a
      // trigger while the catalogue disables it) run first, on the totals as of their due times.
      s = advance(state, at, false, params, tz, effects)
      s = { ...s, mtd: s.mtd + cents }
    }
    const before = target(state, params)
    const after = target(s, params)
    if (after !== before) effects.push(after === undefined ? { kind: 'cancelTimer', key: TIMER } : { kind: 'setTimer', key: TIMER, at: checkAt(after, params.dayOfMonth, tz) })
    return { state: s, effects }
  },

  onTimer(state, timer, { params, profile }) {
    const tz = profile.timezone
    const effects: Effect[] = []
    const s = advance(state, timer.at, true, params, tz, effects)
    // The fired key is consumed: re-arm for the next check that could fire, if any.
    const next = target(s, params)
    const at = next === undefined ? undefined : checkAt(next, params.dayOfMonth, tz)
    if (at !== undefined && at > timer.at) effects.push({ kind: 'setTimer', key: TIMER, at })
    return { state: s, effects }
  },
}

/**
 * Brings the state to the month of `upTo`, running every check due before it (or at it, when
 * `inclusive`) in month order, each on the totals of its own month.
 */
function advance(state: ChallengeState, upTo: number, inclusive: boolean, p: Params, tz: string, effects: Effect[]): ChallengeState {
  const goal = monthOf(upTo, tz)
  let s: ChallengeState = state.month === undefined ? { ...state, month: goal, mtd: 0, last: 0 } : state
  for (;;) {
    const month = s.month!
    if (s.checked !== month) {
      const due = checkAt(month, p.dayOfMonth, tz)
      if (inclusive ? due <= upTo : due < upTo) {
        const threshold = Math.round(p.threshold * 100)
        if (s.last >= threshold && s.mtd < threshold) effects.push(moment(month, due, s, p))
        s = { ...s, checked: month }
      }
    }
    if (month >= goal) return s
    // A month with no spend makes every later month's "last month" zero: jump straight to the goal.
    s = s.mtd > 0 ? { ...s, month: nextMonth(month), mtd: 0, last: s.mtd } : { ...s, month: goal, mtd: 0, last: 0 }
  }
}

/** The month whose check could still fire, given the totals so far; undefined when none can. */
function target(s: ChallengeState, p: Params): string | undefined {
  if (s.month === undefined) return undefined
  const threshold = Math.round(p.threshold * 100)
  if (s.checked !== s.month && s.last >= threshold && s.mtd < threshold) return s.month
  if (s.mtd >= threshold) return nextMonth(s.month)
  return undefined
}

function moment(month: string, due: number, s: ChallengeState, p: Params): Moment {
  return {
    kind: 'moment',
    trigger: 'spend_threshold_challenge',
    occurrence: month,
    eventTime: due,
    reason: { monthToDate: s.mtd / 100, lastMonth: s.last / 100, threshold: p.threshold },
  }
}

/** "2026-10": the local calendar month of `ms`. */
export function monthOf(ms: number, tz: string): string {
  return localMonth(ms, tz).month
}

function parseMonth(month: string): [number, number] {
  return [Number(month.slice(0, 4)), Number(month.slice(5, 7))]
}

function nextMonth(month: string): string {
  const [y, m] = parseMonth(month)
  return m === 12 ? `${y + 1}-01` : `${y}-${String(m + 1).padStart(2, '0')}`
}

function prevMonth(month: string): string {
  const [y, m] = parseMonth(month)
  return m === 1 ? `${y - 1}-12` : `${y}-${String(m - 1).padStart(2, '0')}`
}

/** CHECK_HOUR:00 local on day `dayOfMonth` of `month`, or on its last day when the month is shorter. */
export function checkAt(month: string, dayOfMonth: number, tz: string): number {
  const [y, m] = parseMonth(month)
  const days = new Date(Date.UTC(y, m, 0)).getUTCDate()
  return zonedInstant(y, m, Math.min(dayOfMonth, days), CHECK_HOUR, 0, tz)
}
