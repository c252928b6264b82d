import { z } from 'zod'
import { Duration } from '../../schemas/duration.ts'
import type { Operator } from '../types.ts'

/**
 * cross_border_offer: an approved transaction outside the customer's home country
 * (merchant.country ≠ profile.homeCountry) with no other approved cross-border transaction in the
 * `window` before it. A previous one exactly `window` earlier is outside the window, so the new one
 * fires.
 *
 * Decided in event time, not arrival order: a qualifying transaction is held as the candidate,
 * with a timer at its own time that fires once the watermark has passed it; an earlier
 * cross-border transaction arriving late (within the allowed lateness) takes its place or rules it
 * out. With no allowed lateness the timer fires in the same step. This relies on the window being
 * longer than the allowed lateness (30 d against minutes); between steps the state is just the
 * last cross-border time.
 */

export interface CrossBorderCandidate {
  at: number
  eventId: string
  cardId: string
  country: string
  /** The home country it was compared with. */
  homeCountry: string
  merchantId: string
  amount: number
  currency: string
  /** The latest cross-border time before this one when it was seen (none: the first ever). */
  prev?: number
}

export interface CrossBorderState {
  /** The latest cross-border transaction time seen. */
  last?: number
  candidate?: CrossBorderCandidate
}

const Params = z.object({ window: Duration.prefault('30d') })
type Params = z.infer<typeof Params>

const DAY = 86_400_000
const TIMER = 'next'

export const crossBorderOffer: Operator<CrossBorderState, Params> = {
  name: 'cross_border',
  uses: 'cross_border_offer',
  initial: () => ({}),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at, { params, profile }) {
    if (event.type !== 'transaction' || event.status !== 'approved') return { state }
    const country = event.merchant.country
    if (!country || country === profile.homeCountry) return { state }
    const seen: CrossBorderCandidate = {
      at,
      eventId: event.eventId,
      cardId: event.cardId,
      country,
      homeCountry: profile.homeCountry,
      merchantId: event.merchant.id,
      amount: event.amount,
      currency: event.currency,
    }
    const last = Math.max(state.last ?? at, at)
    const c = state.candidate

    if (c) {
      if (!before(seen, c)) return { state: { last, candidate: c } } // within the window after the candidate
      // Arrived late but occurred first: the candidate is no longer first; this one may be.
      if (c.prev === undefined || at - c.prev >= params.window) {
        const candidate = { ...seen, ...(c.prev !== undefined ? { prev: c.prev } : {}) }
        return { state: { last, candidate }, effects: [{ kind: 'setTimer', key: TIMER, at }] }
      }
      return { state: { last }, effects: [{ kind: 'cancelTimer', key: TIMER }] }
    }

    // In order: qualifies when the previous one is at least a window back. Out of order (an
    // already-seen one is later): a cross-border transaction lies within the window before it.
    const prev = state.last
    const qualifies = prev === undefined || (at >= prev && at - prev >= params.window)
    if (!qualifies) return { state: { last } }
    const candidate = { ...seen, ...(prev !== undefined ? { prev } : {}) }
    return { state: { last, candidate }, effects: [{ kind: 'setTimer', key: TIMER, at }] }
  },

  onTimer(state, timer) {
    const c = state.candidate
    if (!c || c.at > timer.at) return { state }
    return {
      state: state.last === undefined ? {} : { last: state.last },
      effects: [
        {
          kind: 'moment',
          trigger: 'cross_border_offer',
          occurrence: c.eventId,
          eventTime: c.at,
          cardId: c.cardId,
          causeEventId: c.eventId,
          reason: {
            transactionId: c.eventId,
            country: c.country,
            homeCountry: c.homeCountry,
            merchantId: c.merchantId,
            amount: c.amount,
            currency: c.currency,
            ...(c.prev !== undefined ? { previousCrossBorderAt: new Date(c.prev).toISOString(), daysSincePrevious: Math.floor((c.at - c.prev) / DAY) } : {}),
          },
        },
      ],
    }
  },
}

/** Event time, then event id: ties resolve the same way in every run. */
const before = (a: CrossBorderCandidate, b: CrossBorderCandidate) => a.at < b.at || (a.at === b.at && a.eventId < b.eventId)
