import { z } from 'zod'
import type { Operator } from '../types.ts'
import { Count, Window, addHit, burstAlert, emptyWindow, pruneWindow, type HitWindow } from './window.ts'

/**
 * card_testing: ≥ `count` transactions of at most `maxAmount` within `window`, any status (a
 * fraudster probing a stolen card is mostly declined). Both bounds are inclusive: an amount of
 * exactly `maxAmount` is tiny, and the last of the burst exactly `window` after the first counts.
 * One alert per burst, as for velocity: the window is cleared through the reported burst.
 */

const Params = z.strictObject({
  count: Count.default(3),
  maxAmount: z.number().positive().default(10),
  window: Window.prefault('10m'),
})
type Params = z.infer<typeof Params>

export const cardTesting: Operator<HitWindow, Params> = {
  name: 'card_testing',
  uses: 'card_testing',
  formerNames: ['risk.card_testing'],
  initial: emptyWindow,
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at, { params }) {
    if (event.type !== 'transaction' || event.amount > params.maxAmount) return { state: pruneWindow(state, at, params.window, params.count) }
    const { state: next, burst } = addHit(state, { t: at, id: event.eventId, a: event.amount }, params.count, params.window)
    if (!burst) return { state: next }
    const figures = { amounts: burst.map((x) => x.a), maxAmount: params.maxAmount }
    return { state: next, effects: [burstAlert('card_testing', 'high', burst, params.window, event.cardId, figures)] }
  },
}
