import { z } from 'zod'
import { Duration } from '../../schemas/duration.ts'
import type { Operator } from '../types.ts'

/**
 * cross_border_offer: an approved transaction outside the customer's home country
 * (merchant.country ≠ profile.homeCountry) with no other approved cross-border transaction in the
 * `window` before it. A previous one exactly `window` earlier is outside the window, so the new one
 * fires. The window runs from the last cross-border transaction, whether it fired or not.
 *
 * The runtime hands each customer's events over in event-time order, so the state is just the
 * last cross-border time.
 */

export interface CrossBorderState {
  /** The latest cross-border transaction time. */
  last?: number
}

const Params = z.object({ window: Duration.prefault('30d') })
type Params = z.infer<typeof Params>

const DAY = 86_400_000

export const crossBorderOffer: Operator<CrossBorderState, Params> = {
  name: 'cross_border_offer',
  uses: 'cross_border_offer',
  eventTypes: ['transaction'],
  formerNames: ['cross_border'],
  initial: () => ({}),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at, { params, profile }) {
    if (event.type !== 'transaction' || event.status !== 'approved') return { state }
    const country = event.merchant.country
    if (!country || country === profile.homeCountry) return { state }
    const prev = state.last
    const next = { last: Math.max(prev ?? at, at) }
    if (prev !== undefined && at - prev < params.window) return { state: next }
    return {
      state: next,
      effects: [
        {
          kind: 'moment',
          trigger: 'cross_border_offer',
          occurrence: event.eventId,
          eventTime: at,
          cardId: event.cardId,
          reason: {
            transactionId: event.eventId,
            country,
            homeCountry: profile.homeCountry,
            merchantId: event.merchant.id,
            amount: event.amount,
            currency: event.currency,
            ...(prev !== undefined ? { previousCrossBorderAt: new Date(prev).toISOString(), daysSincePrevious: Math.floor((at - prev) / DAY) } : {}),
          },
        },
      ],
    }
  },
}
