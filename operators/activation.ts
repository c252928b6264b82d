import { z } from 'zod'
import { Duration } from '../schemas/duration.ts'
import type { Operator } from './types.ts'

/**
 * activation_reminder: a card `approved` or `issued` and not `activated` `delay` later.
 * The clock starts at the first of approved/issued; one reminder per card.
 */

export interface CardActivation {
  startedAt?: number
  activatedAt?: number
  reminded?: boolean
}

export interface ActivationState {
  cards: Record<string, CardActivation>
}

const Params = z.object({ delay: Duration.prefault('72h') })
type Params = z.infer<typeof Params>

export const activationReminder: Operator<ActivationState, Params> = {
  name: 'activation_reminder',
  uses: 'activation_reminder',
  formerNames: ['activation'],
  initial: () => ({ cards: {} }),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at, { params }) {
    if (event.type !== 'lifecycle') return { state }
    const card = state.cards[event.cardId] ?? {}
    if (event.stage === 'approved' || event.stage === 'issued') {
      if (card.startedAt !== undefined || card.activatedAt !== undefined) return { state }
      return {
        state: withCard(state, event.cardId, { ...card, startedAt: at }),
        effects: [{ kind: 'setTimer', key: event.cardId, at: at + params.delay }],
      }
    }
    if (event.stage === 'activated') {
      const activatedAt = Math.min(card.activatedAt ?? at, at)
      const next = withCard(state, event.cardId, { ...card, activatedAt })
      // An activation before the due time cancels the reminder; a later one is a conversion, not a cancel.
      const due = card.startedAt === undefined ? undefined : card.startedAt + params.delay
      const cancel = due !== undefined && !card.reminded && activatedAt < due
      return { state: next, effects: cancel ? [{ kind: 'cancelTimer', key: event.cardId }] : [] }
    }
    if (event.stage === 'closed' || event.stage === 'declined') {
      // Closed at or after the due time: the reminder was due first, whatever the arrival order.
      if (card.startedAt !== undefined && !card.reminded && card.activatedAt === undefined && at >= card.startedAt + params.delay) return { state }
      const { [event.cardId]: _, ...cards } = state.cards
      return { state: { cards }, effects: [{ kind: 'cancelTimer', key: event.cardId }] }
    }
    return { state }
  },

  onTimer(state, timer, { params }) {
    const card = state.cards[timer.key]
    if (!card || card.startedAt === undefined || card.reminded) return { state }
    // Half-open [start, due): an activation at the due time itself is too late.
    if (card.activatedAt !== undefined && card.activatedAt < timer.at) return { state }
    return {
      state: withCard(state, timer.key, { ...card, reminded: true }),
      effects: [
        {
          kind: 'moment',
          trigger: 'activation_reminder',
          occurrence: `${timer.key}@${card.startedAt}`,
          eventTime: timer.at,
          cardId: timer.key,
          reason: {
            approvedAt: new Date(card.startedAt).toISOString(),
            hoursWithoutActivation: Math.round(params.delay / 3_600_000),
          },
        },
      ],
    }
  },
}

function withCard(state: ActivationState, cardId: string, card: CardActivation): ActivationState {
  return { cards: { ...state.cards, [cardId]: card } }
}
