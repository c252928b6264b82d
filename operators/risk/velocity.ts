import { z } from 'zod'
import type { Operator } from '../types.ts'
import { Count, Window, addHit, burstAlert, emptyWindow, pruneWindow, type HitWindow } from './window.ts'

/**
 * velocity: ≥ `count` transactions (any status) within `window`.
 *
 * Boundaries: a burst is `count` qualifying events whose first and last times are at most `window`
 * apart, inclusive: with the defaults the 10th transaction exactly 10 min after the first fires.
 * One alert per burst (see window.ts).
 */

const Params = z.strictObject({ count: Count.default(10), window: Window.prefault('10m') })
type Params = z.infer<typeof Params>

export const velocity: Operator<HitWindow, Params> = {
  name: 'velocity',
  uses: 'velocity',
  formerNames: ['risk.velocity'],
  initial: emptyWindow,
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at, { params }) {
    if (event.type !== 'transaction') return { state: pruneWindow(state, at, params.window, params.count) }
    const { state: next, burst } = addHit(state, { t: at, id: event.eventId }, params.count, params.window)
    return burst ? { state: next, effects: [burstAlert('velocity', 'medium', burst, params.window, event.cardId)] } : { state: next }
  },
}
