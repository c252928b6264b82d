import { z } from 'zod'
import { Duration } from '../../schemas/duration.ts'
import type { Effect, Operator } from '../types.ts'

/**
 * bind_wallet_nudge: a card `activated`, and not `bound` `delay` later. Bound in
 * [activatedAt, activatedAt + delay) — or before the activation — means no nudge; bound at exactly
 * the due time or later is a conversion, not a cancel: a `bound` at the due instant is applied
 * before that instant's timers, and does not suppress the nudge. Events reach it in event-time order.
 */

export interface WalletCard {
  activatedAt?: number
  /** Resolved: nudged, or bound in time. Kept so a repeated activation does not re-arm. */
  done?: true
  /** Closed at or after the due time: the pending timer still fires, then the card is forgotten. */
  closed?: true
}

/** `cards` is left out when empty, so a customer with no card in play stores nothing. */
export interface BindWalletState {
  cards?: Record<string, WalletCard>
}

const Params = z.object({ delay: Duration.prefault('3d') })
type Params = z.infer<typeof Params>

const DAY = 86_400_000

export const bindWallet: Operator<BindWalletState, Params> = {
  name: 'bind_wallet_nudge',
  uses: 'bind_wallet_nudge',
  formerNames: ['bind_wallet'],
  initial: () => ({}),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at, { params }) {
    if (event.type !== 'lifecycle') return { state }
    const card = state.cards?.[event.cardId]

    if (event.stage === 'bound') {
      if (card?.done) return { state }
      // Bound before the activation: no nudge when it comes.
      if (card?.activatedAt === undefined) return { state: withCard(state, event.cardId, { done: true }) }
      if (at >= card.activatedAt + params.delay) return { state } // too late to cancel: the nudge was due
      return { state: withCard(state, event.cardId, { done: true }), effects: [{ kind: 'cancelTimer', key: event.cardId }] }
    }

    if (event.stage === 'activated') {
      // A repeated activation keeps the first one's window.
      if (card?.done || card?.activatedAt !== undefined) return { state }
      return { state: withCard(state, event.cardId, { activatedAt: at }), effects: [{ kind: 'setTimer', key: event.cardId, at: at + params.delay }] }
    }

    if ((event.stage === 'closed' || event.stage === 'declined') && card) {
      const due = card.activatedAt === undefined ? undefined : card.activatedAt + params.delay
      if (!card.done && due !== undefined && at >= due) return { state: withCard(state, event.cardId, { ...card, closed: true }) }
      const effects: Effect[] = card.done ? [] : [{ kind: 'cancelTimer', key: event.cardId }]
      return { state: withoutCard(state, event.cardId), effects }
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
          trigger: 'bind_wallet_nudge',
          occurrence: `${timer.key}@${card.activatedAt}`,
          eventTime: timer.at,
          cardId: timer.key,
          reason: { activatedAt: new Date(card.activatedAt).toISOString(), daysUnbound: Math.round((params.delay / DAY) * 100) / 100 },
        },
      ],
    }
  },
}

function withCard(state: BindWalletState, cardId: string, card: WalletCard): BindWalletState {
  return { cards: { ...state.cards, [cardId]: card } }
}

function withoutCard(state: BindWalletState, cardId: string): BindWalletState {
  const { [cardId]: _, ...cards } = state.cards ?? {}
  return Object.keys(cards).length ? { cards } : {}
}
