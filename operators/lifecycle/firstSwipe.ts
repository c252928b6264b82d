import { z } from 'zod'
import { Duration } from '../../schemas/duration.ts'
import { deadlines, type DeadlineCard, type DeadlineState } from '../deadline.ts'
import type { Operator } from '../types.ts'

/**
 * first_swipe_incentive: a card `activated`, and no approved transaction on any of the customer's
 * cards in the `delay` after it. The window is [activatedAt, activatedAt + delay): a purchase at
 * exactly the due time is already too late (see deadline.ts). Events reach it in event-time order.
 */

export type SwipeCard = DeadlineCard<'activatedAt'>

/** `cards` is left out when empty, so a customer with no card in play stores nothing. */
export type FirstSwipeState = DeadlineState<'activatedAt'>

const Params = z.object({ delay: Duration.prefault('7d') })
type Params = z.infer<typeof Params>

const DAY = 86_400_000
const window = deadlines('activatedAt')

export const firstSwipe: Operator<FirstSwipeState, Params> = {
  name: 'first_swipe_incentive',
  uses: 'first_swipe_incentive',
  eventTypes: ['lifecycle', 'transaction'],
  formerNames: ['first_swipe'],
  initial: () => ({}),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at, { params }) {
    if (event.type === 'transaction') {
      // A purchase on any card resolves every card whose window holds it.
      return event.status === 'approved' ? window.resolveOpen(state, at, params.delay) : { state }
    }
    if (event.type !== 'lifecycle') return { state }
    if (event.stage === 'activated') return window.open(state, event.cardId, at, params.delay)
    if (event.stage === 'closed' || event.stage === 'declined') return window.close(state, event.cardId, at, params.delay)
    return { state }
  },

  onTimer(state, timer, { params }) {
    const { state: next, expired } = window.fire(state, timer.key)
    if (!expired) return { state }
    return {
      state: next,
      effects: [
        {
          kind: 'moment',
          trigger: 'first_swipe_incentive',
          occurrence: `${timer.key}@${expired.startedAt}`,
          eventTime: timer.at,
          cardId: timer.key,
          reason: { activatedAt: new Date(expired.startedAt).toISOString(), daysWithoutPurchase: roundDays(params.delay) },
        },
      ],
    }
  },
}

const roundDays = (ms: number) => Math.round((ms / DAY) * 100) / 100
