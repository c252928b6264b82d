import { z } from 'zod'
import { Duration } from '../schemas/duration.ts'
import { deadlines, type DeadlineCard, type DeadlineState } from './deadline.ts'
import type { Operator } from './types.ts'

/**
 * activation_reminder: a card `approved` or `issued` and not `activated` `delay` later.
 * The clock starts at the first of approved/issued; one reminder per card. Activated in
 * [startedAt, startedAt + delay) — or before the approval — means no reminder; activated at the
 * due time or later is a conversion, not a cancel (see deadline.ts).
 */

export type CardActivation = DeadlineCard<'startedAt'>

/** `cards` is left out when empty, so a customer with no card in play stores nothing. */
export type ActivationState = DeadlineState<'startedAt'>

/** Version 1's card: the activation time, earliest first, instead of `done`, and `reminded`. */
interface CardActivationV1 {
  startedAt?: number
  activatedAt?: number
  reminded?: boolean
}

const Params = z.object({ delay: Duration.prefault('72h') })
type Params = z.infer<typeof Params>

// A card closed after its reminder was due is reminded once, and not again if approved or issued again.
const window = deadlines('startedAt', { keepClosed: true })

export const activationReminder: Operator<ActivationState, Params> = {
  name: 'activation_reminder',
  uses: 'activation_reminder',
  eventTypes: ['lifecycle'],
  formerNames: ['activation'],
  version: 2,
  migrate: (state, fromVersion) => (fromVersion < 2 ? fromV1(state as { cards?: Record<string, CardActivationV1> }) : (state as ActivationState)),
  initial: () => ({}),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at, { params }) {
    if (event.type !== 'lifecycle') return { state }
    if (event.stage === 'approved' || event.stage === 'issued') return window.open(state, event.cardId, at, params.delay)
    if (event.stage === 'activated') return window.resolve(state, event.cardId, at, params.delay)
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
          trigger: 'activation_reminder',
          occurrence: `${timer.key}@${expired.startedAt}`,
          eventTime: timer.at,
          cardId: timer.key,
          reason: {
            approvedAt: new Date(expired.startedAt).toISOString(),
            hoursWithoutActivation: Math.round(params.delay / 3_600_000),
          },
        },
      ],
    }
  },
}

/**
 * A stored version-1 card is done once reminded or activated: an activation recorded without a
 * reminder came before the due time (one at the due time is followed, in the same step, by the
 * reminder), so it resolved the window. Otherwise it is still waiting on its timer.
 */
function fromV1(state: { cards?: Record<string, CardActivationV1> }): ActivationState {
  const cards: Record<string, CardActivation> = {}
  for (const [cardId, card] of Object.entries(state.cards ?? {})) {
    if (card.reminded || card.activatedAt !== undefined) cards[cardId] = { done: true }
    else if (card.startedAt !== undefined) cards[cardId] = { startedAt: card.startedAt }
  }
  return Object.keys(cards).length ? { cards } : {}
}
