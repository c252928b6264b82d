import { z } from 'zod'
import { Duration } from '../../schemas/duration.ts'
import { deadlines, type DeadlineCard, type DeadlineState } from '../deadline.ts'
import type { Operator } from '../types.ts'

/**
 * bind_wallet_nudge: a card `activated`, and not `bound` `delay` later. Bound in
 * [activatedAt, activatedAt + delay) — or before the activation — means no nudge; bound at exactly
 * the due time or later is a conversion, not a cancel (see deadline.ts). Events reach it in
 * event-time order.
 */

export type WalletCard = DeadlineCard<'activatedAt'>

/** `cards` is left out when empty, so a customer with no card in play stores nothing. */
export type BindWalletState = DeadlineState<'activatedAt'>

const Params = z.object({ delay: Duration.prefault('3d') })
type Params = z.infer<typeof Params>

const DAY = 86_400_000
const window = deadlines('activatedAt')

export const bindWallet: Operator<BindWalletState, Params> = {
  name: 'bind_wallet_nudge',
  uses: 'bind_wallet_nudge',
  eventTypes: ['lifecycle'],
  formerNames: ['bind_wallet'],
  initial: () => ({}),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at, { params }) {
    if (event.type !== 'lifecycle') return { state }
    // Bound before the activation marks the card done: no nudge when it comes.
    if (event.stage === 'bound') return window.resolve(state, event.cardId, at, params.delay)
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
          trigger: 'bind_wallet_nudge',
          occurrence: `${timer.key}@${expired.startedAt}`,
          eventTime: timer.at,
          cardId: timer.key,
          reason: { activatedAt: new Date(expired.startedAt).toISOString(), daysUnbound: Math.round((params.delay / DAY) * 100) / 100 },
        },
      ],
    }
  },
}
