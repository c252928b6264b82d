import { z } from 'zod'
import { Duration } from '../../schemas/duration.ts'
import type { Effect, Operator } from '../types.ts'

/**
 * first_swipe_incentive: a card `activated`, and no approved transaction on any of the customer's
 * cards in the `delay` after it. The window is [activatedAt, activatedAt + delay): a purchase at
 * exactly the due time is already too late (it is applied before that instant's timers, which is
 * why the timer, not the purchase, decides). Events reach it in event-time order.
 */

export interface SwipeCard {
  activatedAt?: number
  /** Resolved: the incentive went out or a purchase came in time. Kept so a repeated activation does not re-arm. */
  done?: true
  /** Closed at or after the due time: the pending timer still fires, then the card is forgotten. */
  closed?: true
}

/** `cards` is left out when empty, so a customer with no card in play stores nothing. */
export interface FirstSwipeState {
  cards?: Record<string, SwipeCard>
}

const Params = z.object({ delay: Duration.prefault('7d') })
type Params = z.infer<typeof Params>

const DAY = 86_400_000

export const firstSwipe: Operator<FirstSwipeState, Params> = {
  name: 'first_swipe_incentive',
  uses: 'first_swipe_incentive',
  formerNames: ['first_swipe'],
  initial: () => ({}),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at, { params }) {
    if (event.type === 'transaction') {
      if (event.status !== 'approved') return { state }
      // A purchase on any card resolves every card whose window holds it.
      let next = state
      const effects: Effect[] = []
      for (const [cardId, card] of Object.entries(state.cards ?? {})) {
        if (card.done || card.activatedAt === undefined) continue
        if (at >= card.activatedAt + params.delay) continue
        next = withCard(next, cardId, { done: true })
        effects.push({ kind: 'cancelTimer', key: cardId })
      }
      return { state: next, effects }
    }
    if (event.type !== 'lifecycle') return { state }
    const card = state.cards?.[event.cardId]

    if (event.stage === 'activated') {
      // A repeated activation keeps the first one's window.
      if (card?.done || card?.activatedAt !== undefined) return { state }
      return { state: withCard(state, event.cardId, { activatedAt: at }), effects: [{ kind: 'setTimer', key: event.cardId, at: at + params.delay }] }
    }

    if ((event.stage === 'closed' || event.stage === 'declined') && card) {
      const due = card.activatedAt === undefined ? undefined : card.activatedAt + params.delay
      // Closed after the due time but before the timer fired: the incentive was due while the card was open.
      if (!card.done && due !== undefined && at >= due) return { state: withCard(state, event.cardId, { ...card, closed: true }) }
      return { state: withoutCard(state, event.cardId), effects: card.done ? [] : [{ kind: 'cancelTimer', key: event.cardId }] }
    }
    return { state }
  },

  onTimer(state, timer, { params }) {
    const card = state.cards?.[timer.key]
    if (!card || card.done || card.activatedAt === undefined) return { state }
    return {
      state: card.closed ? withoutCard(state, timer.key) : withCard(state, timer.key, { done: true }),
      effects: [
        {
          kind: 'moment',
          trigger: 'first_swipe_incentive',
          occurrence: `${timer.key}@${card.activatedAt}`,
          eventTime: timer.at,
          cardId: timer.key,
          reason: { activatedAt: new Date(card.activatedAt).toISOString(), daysWithoutPurchase: roundDays(params.delay) },
        },
      ],
    }
  },
}

function withCard(state: FirstSwipeState, cardId: string, card: SwipeCard): FirstSwipeState {
  return { cards: { ...state.cards, [cardId]: card } }
}

function withoutCard(state: FirstSwipeState, cardId: string): FirstSwipeState {
  const { [cardId]: _, ...cards } = state.cards ?? {}
  return Object.keys(cards).length ? { cards } : {}
}

const roundDays = (ms: number) => Math.round((ms / DAY) * 100) / 100
