import { z } from 'zod'
import { Duration, DAY } from '../../schemas/duration.ts'
import type { Effect, Moment, Operator } from '../types.ts'

/**
 * dormancy_wakeup: an active customer's last approved transaction was `after[0]` ago, and again at
 * each later step (defaults 30, 60 and 90 days).
 *
 * "Active" means the customer has made at least one approved transaction: only an approved
 * purchase starts the clock, so someone who never bought is never dormant (first_swipe_incentive
 * covers them). One timer per customer, at the next unfired step of the current quiet spell; every
 * approved purchase starts a new spell and moves it. Each step fires once per spell.
 */

export interface DormancyState {
  /** Time of the latest approved transaction: the start of the current quiet spell. */
  last?: number
  /** The largest step (ms) already fired in this spell; 0 when none. */
  fired?: number
}

const Params = z.object({
  after: z
    .array(Duration)
    .min(1)
    // Sorted and de-duplicated, so "the next step" is well defined whatever order the file uses.
    .transform((steps) => [...new Set(steps.filter((s) => s > 0))].sort((a, b) => a - b))
    .prefault(['30d', '60d', '90d']),
})
type Params = z.infer<typeof Params>

const TIMER = 'quiet'

export const dormancyWakeup: Operator<DormancyState, Params> = {
  name: 'dormancy',
  uses: 'dormancy_wakeup',
  initial: () => ({}),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at, { params }) {
    if (event.type !== 'transaction' || event.status !== 'approved') return { state }
    // A late purchase older than the latest one does not change the spell.
    if (state.last !== undefined && at <= state.last) return { state }
    // Steps of the old spell due strictly before this purchase whose timer has not fired yet (an
    // event is applied before the timers it overtakes): they held as of their due times.
    const { moments } = dueSteps(state, params.after, at - 1)
    const next: DormancyState = { last: at, fired: 0 }
    const effects: Effect[] = [...moments]
    if (params.after.length) effects.push({ kind: 'setTimer', key: TIMER, at: at + params.after[0] })
    return { state: next, effects }
  },

  onTimer(state, timer, { params }) {
    if (state.last === undefined) return { state }
    // Evaluated as of the timer's due time: every step of this spell due by then and not yet fired.
    const { moments, fired } = dueSteps(state, params.after, timer.at)
    const next: DormancyState = { last: state.last, fired }
    const effects: Effect[] = [...moments]
    // The fired key is consumed: re-arm at the next step of the spell, if any.
    const step = params.after.find((s) => s > fired)
    if (step !== undefined) effects.push({ kind: 'setTimer', key: TIMER, at: state.last + step })
    return { state: fired === (state.fired ?? 0) ? state : next, effects }
  },
}

/** The spell's unfired steps due by `upTo` (inclusive), as moments at their own due times. */
function dueSteps(state: DormancyState, steps: number[], upTo: number): { moments: Moment[]; fired: number } {
  let fired = state.fired ?? 0
  const moments: Moment[] = []
  if (state.last === undefined) return { moments, fired }
  const last = state.last
  for (const step of steps) {
    if (step <= fired || last + step > upTo) continue
    fired = step
    moments.push({
      kind: 'moment',
      trigger: 'dormancy_wakeup',
      occurrence: `${last}:${stepLabel(step)}`,
      eventTime: last + step,
      reason: { lastPurchaseAt: new Date(last).toISOString(), daysSincePurchase: Math.round((step / DAY) * 100) / 100 },
    })
  }
  return { moments, fired }
}

/** "30d" for whole days, else milliseconds: stable text for the occurrence id. */
function stepLabel(step: number): string {
  return step % DAY === 0 ? `${step / DAY}d` : `${step}ms`
}
