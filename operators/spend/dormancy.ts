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
 * approved purchase starts a new spell, which the timer catches up with when it fires. Each step
 * fires once per spell.
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
  name: 'dormancy_wakeup',
  uses: 'dormancy_wakeup',
  eventTypes: ['transaction'],
  formerNames: ['dormancy'],
  initial: () => ({}),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at, { params }) {
    if (event.type !== 'transaction' || event.status !== 'approved') return { state }
    if (state.last !== undefined && at <= state.last) return { state }
    const next: DormancyState = { last: at, fired: 0 }
    // Most purchases come while the timer of the spell they end is still ahead: it is left to
    // fire and re-arm for the new spell then (one timer write per spell, not per purchase).
    const armed = dueOf(state, params.after)
    const due = dueOf(next, params.after)
    return { state: next, effects: due !== undefined && (armed === undefined || armed > due) ? [{ kind: 'setTimer', key: TIMER, at: due }] : [] }
  },

  onTimer(state, timer, { params }) {
    if (state.last === undefined) return { state }
    const due = dueOf(state, params.after)
    // A purchase since this timer was set moved the spell on: wait for its own next step.
    if (due !== undefined && due > timer.at) return { state, effects: [{ kind: 'setTimer', key: TIMER, at: due }] }
    // Evaluated as of the timer's due time: every step of this spell due by then and not yet fired.
    const { moments, fired } = dueSteps(state, params.after, timer.at)
    const next: DormancyState = { last: state.last, fired }
    const effects: Effect[] = [...moments]
    // The fired key is consumed: re-arm at the next step of the spell, if any.
    const after = dueOf(next, params.after)
    if (after !== undefined) effects.push({ kind: 'setTimer', key: TIMER, at: after })
    return { state: fired === (state.fired ?? 0) ? state : next, effects }
  },
}

/** Due time of the spell's next unfired step; undefined when all have fired or no spell is open. */
function dueOf(state: DormancyState, steps: number[]): number | undefined {
  if (state.last === undefined) return undefined
  const fired = state.fired ?? 0
  const step = steps.find((s) => s > fired)
  return step === undefined ? undefined : state.last + step
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
