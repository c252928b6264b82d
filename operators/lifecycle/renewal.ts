import { z } from 'zod'
import type { Operator } from '../types.ts'

/**
 * renewal_reminder: lifecycle `expiring`, once per card and expiry date (`attributes.expiresOn`).
 * An `expiring` without a date counts once per card until the card is `renewed`.
 */

export interface RenewalState {
  /** Expiries already reminded per card, oldest first: dates, or UNDATED. At most KEPT. Left out when empty. */
  cards?: Record<string, string[]>
}

const UNDATED = '?'
/** A card sees one expiry every few years; a few remembered dates cover repeats and reordering. */
const KEPT = 3

const Params = z.object({})
type Params = z.infer<typeof Params>

export const renewalReminder: Operator<RenewalState, Params> = {
  name: 'renewal_reminder',
  uses: 'renewal_reminder',
  eventTypes: ['lifecycle'],
  formerNames: ['renewal'],
  initial: () => ({}),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at) {
    if (event.type !== 'lifecycle') return { state }
    const { cardId } = event
    const reminded = state.cards?.[cardId]

    if (event.stage === 'closed' || event.stage === 'declined') {
      return reminded ? { state: withReminded(state, cardId, []) } : { state }
    }
    if (event.stage === 'renewed') {
      // The undated reminder belonged to the cycle that has just ended.
      if (!reminded?.includes(UNDATED)) return { state }
      return { state: withReminded(state, cardId, reminded.filter((k) => k !== UNDATED)) }
    }
    if (event.stage !== 'expiring') return { state }

    const raw = event.attributes?.expiresOn
    const expiresOn = raw === undefined || raw === '' ? undefined : String(raw)
    const key = expiresOn ?? UNDATED
    if (reminded?.includes(key)) return { state }
    return {
      state: withReminded(state, cardId, [...(reminded ?? []), key].slice(-KEPT)),
      effects: [
        {
          kind: 'moment',
          trigger: 'renewal_reminder',
          // Dated: the card and its expiry date. Undated: the notice that opened the cycle.
          occurrence: `${cardId}@${expiresOn ?? at}`,
          eventTime: at,
          cardId,
          reason: { ...(expiresOn ? { expiresOn } : {}), ...(event.product ? { product: event.product } : {}) },
        },
      ],
    }
  },
}

/** The state with the card's reminded expiries replaced; a card with none is left out, and so is an empty map. */
function withReminded(state: RenewalState, cardId: string, keys: string[]): RenewalState {
  const { [cardId]: _, ...rest } = state.cards ?? {}
  const cards = keys.length ? { ...rest, [cardId]: keys } : rest
  return Object.keys(cards).length ? { cards } : {}
}
