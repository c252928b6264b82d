import { z } from 'zod'
import type { Operator } from '../types.ts'

/**
 * renewal_reminder: lifecycle `expiring`, once per card and expiry date (`attributes.expiresOn`).
 * An `expiring` without a date counts once per card until the card is `renewed`.
 */

/** The expiry last reminded per card: its date, or UNDATED. */
export interface RenewalState {
  cards: Record<string, string>
}

const UNDATED = '?'

const Params = z.object({})
type Params = z.infer<typeof Params>

export const renewalReminder: Operator<RenewalState, Params> = {
  name: 'renewal',
  uses: 'renewal_reminder',
  initial: () => ({ cards: {} }),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at) {
    if (event.type !== 'lifecycle') return { state }
    const { cardId } = event
    if (event.stage === 'closed' || event.stage === 'declined' || (event.stage === 'renewed' && state.cards[cardId] === UNDATED)) {
      if (!(cardId in state.cards)) return { state }
      const { [cardId]: _, ...cards } = state.cards
      return { state: { cards } }
    }
    if (event.stage !== 'expiring') return { state }
    const raw = event.attributes?.expiresOn
    const expiresOn = raw === undefined || raw === '' ? undefined : String(raw)
    const key = expiresOn ?? UNDATED
    if (state.cards[cardId] === key) return { state }
    return {
      state: { cards: { ...state.cards, [cardId]: key } },
      effects: [
        {
          kind: 'moment',
          trigger: 'renewal_reminder',
          // Dated: the card and its expiry date. Undated: the event that first announced it.
          occurrence: `${cardId}@${expiresOn ?? at}`,
          eventTime: at,
          cardId,
          reason: { ...(expiresOn ? { expiresOn } : {}), ...(event.product ? { product: event.product } : {}) },
        },
      ],
    }
  },
}
