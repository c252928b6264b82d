import { z } from 'zod'
import { Duration, DAY } from '../../schemas/duration.ts'
import type { CustomerFacts } from '../facts.ts'
import { spendInLastDays } from '../ledger.ts'
import type { Operator } from '../types.ts'

/**
 * limit_upgrade_offer: approved spend in the last `window` at or above `share` of the credit limit,
 * and no alert in the last `noAlertWithin`.
 *
 * The credit limit is the sum of the known limits of the customer's cards that are not closed or
 * declined (facts.cards). Evaluated on approved transactions, the only events that raise spend;
 * spend in the window is at day granularity (the shared ledger's UTC days, including the current
 * one). Fires when spend crosses the share, once per episode: not again until spend has fallen
 * back below the share (seen at a later purchase as spend before it being below) or the limit
 * changes. An episode lasts at least one `window`: spend dipping under the share within a window of
 * the firing is the crossing's own spend rolling out day by day, and counting that as a new low
 * would offer a customer who hovers at the share an upgrade every few days. A crossing held back
 * by a recent alert does not use the episode up.
 */

export interface LimitUpgradeState {
  /** The total limit of the open episode (yuan); absent when there is none. */
  firedLimit?: number
  /** When the open episode fired. */
  firedAt?: number
}

const Params = z.object({
  // The shared ledger holds about 125 days; a longer window would silently read less.
  window: Duration.refine((w) => w <= 125 * DAY, 'must be at most 125d, the spend history kept per customer').prefault('30d'),
  share: z.number().positive().default(0.8),
  // facts.alerts keeps 90 days of alerts; a longer look-back would silently see less.
  noAlertWithin: Duration.refine((w) => w <= 90 * DAY, 'must be at most 90d, the alert history kept per customer').prefault('90d'),
})
type Params = z.infer<typeof Params>

/** Tolerance (yuan) so that spend of exactly the share counts despite floating point. */
const EPSILON = 1e-6

export const limitUpgradeOffer: Operator<LimitUpgradeState, Params> = {
  name: 'limit_upgrade_offer',
  uses: 'limit_upgrade_offer',
  eventTypes: ['transaction'],
  formerNames: ['limitUpgrade'],
  initial: () => ({}),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at, { params, facts }) {
    if (event.type !== 'transaction' || event.status !== 'approved') return { state }
    const { limit, cardId } = creditLimit(facts)
    if (!(limit > 0)) return { state: state.firedLimit === undefined ? state : {} }
    const days = Math.max(1, Math.round(params.window / DAY))
    // facts.spend already holds this purchase (the ledger keeps whole yuan, each transaction
    // rounded); spend before it tells whether spend had fallen back below since the last one.
    const spend = spendInLastDays(facts.spend, at, days)
    const before = spend - Math.round(event.amount)
    const need = params.share * limit
    const above = spend + EPSILON >= need
    const wasAbove = before + EPSILON >= need

    let s = state
    const fellBack = !wasAbove && at - (s.firedAt ?? -Infinity) >= params.window
    if (s.firedLimit !== undefined && (s.firedLimit !== limit || fellBack)) s = {}
    if (s.firedLimit !== undefined || !above || hasRecentAlert(facts, at, params.noAlertWithin)) return { state: s }
    return {
      state: { firedLimit: limit, firedAt: at },
      effects: [
        {
          kind: 'moment',
          trigger: 'limit_upgrade_offer',
          occurrence: `${at}`,
          eventTime: at,
          ...(cardId ? { cardId } : {}),
          reason: { spend30d: spend, creditLimit: limit, share: Math.round((spend / limit) * 10_000) / 10_000 },
        },
      ],
    }
  },
}

/** Sum of the known limits of open cards; the card id when a single card carries it. */
export function creditLimit(facts: CustomerFacts): { limit: number; cardId?: string } {
  let limit = 0
  const cards: string[] = []
  for (const [id, card] of Object.entries(facts.cards)) {
    if (card.creditLimit === undefined || card.stage === 'closed' || card.stage === 'declined') continue
    limit += card.creditLimit
    cards.push(id)
  }
  return cards.length === 1 ? { limit, cardId: cards[0] } : { limit }
}

/** An alert of any severity in the `within` before `at` (an alert exactly `within` ago no longer counts). */
function hasRecentAlert(facts: CustomerFacts, at: number, within: number): boolean {
  return facts.alerts.some((a) => a.at <= at && at - a.at < within)
}
