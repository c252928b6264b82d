import { z } from 'zod'
import { Duration } from '../../schemas/duration.ts'
import type { Operator } from '../types.ts'

/**
 * cross_border_offer: an approved transaction outside the customer's home country
 * (merchant.country ≠ profile.homeCountry) with no other approved cross-border transaction in the
 * `window` before it. A previous one exactly `window` earlier is outside the window, so the new one
 * fires. The window runs from the last cross-border transaction, whether it fired or not.
 *
 * Decided in event time, not arrival order: a cross-border transaction waits in `pending` until a
 * timer at its own time fires, i.e. until the watermark has passed it and every earlier one has
 * arrived; pending ones are then settled in time order against `last`. With no allowed lateness
 * this happens in the same step, and between steps the state is just the last cross-border time.
 */

export interface CrossBorderTx {
  at: number
  eventId: string
  /** Absent on a transaction that cannot fire (an earlier pending one lies within the window before it). */
  detail?: {
    cardId: string
    country: string
    /** The home country it was compared with. */
    homeCountry: string
    merchantId: string
    amount: number
    currency: string
  }
}

export interface CrossBorderState {
  /** The latest settled cross-border transaction time. */
  last?: number
  /** Cross-border transactions not yet passed by the watermark, in (at, eventId) order. */
  pending?: CrossBorderTx[]
}

const Params = z.object({ window: Duration.prefault('30d') })
type Params = z.infer<typeof Params>

const DAY = 86_400_000
const TIMER = 'settle'

export const crossBorderOffer: Operator<CrossBorderState, Params> = {
  name: 'cross_border',
  uses: 'cross_border_offer',
  initial: () => ({}),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at, { params, profile }) {
    if (event.type !== 'transaction' || event.status !== 'approved') return { state }
    const country = event.merchant.country
    if (!country || country === profile.homeCountry) return { state }
    const tx: CrossBorderTx = {
      at,
      eventId: event.eventId,
      detail: { cardId: event.cardId, country, homeCountry: profile.homeCountry, merchantId: event.merchant.id, amount: event.amount, currency: event.currency },
    }
    const pending = trim([...(state.pending ?? []), tx].sort(byTime), params.window)
    const effects = pending[0] === tx ? [{ kind: 'setTimer' as const, key: TIMER, at }] : []
    return { state: { ...state, pending }, effects }
  },

  onTimer(state, timer, { params }) {
    const pending = state.pending ?? []
    let last = state.last
    const moments = []
    let i = 0
    for (; i < pending.length && pending[i].at <= timer.at; i++) {
      const tx = pending[i]
      const prev = last
      last = Math.max(last ?? tx.at, tx.at)
      if (!tx.detail || (prev !== undefined && tx.at - prev < params.window)) continue
      const d = tx.detail
      moments.push({
        kind: 'moment' as const,
        trigger: 'cross_border_offer',
        occurrence: tx.eventId,
        eventTime: tx.at,
        cardId: d.cardId,
        causeEventId: tx.eventId,
        reason: {
          transactionId: tx.eventId,
          country: d.country,
          homeCountry: d.homeCountry,
          merchantId: d.merchantId,
          amount: d.amount,
          currency: d.currency,
          ...(prev !== undefined ? { previousCrossBorderAt: new Date(prev).toISOString(), daysSincePrevious: Math.floor((tx.at - prev) / DAY) } : {}),
        },
      })
    }
    const rest = pending.slice(i)
    const next: CrossBorderState = { ...(last !== undefined ? { last } : {}), ...(rest.length ? { pending: rest } : {}) }
    return { state: next, effects: [...moments, ...(rest.length ? [{ kind: 'setTimer' as const, key: TIMER, at: rest[0].at }] : [])] }
  },
}

/** Drops the detail of pending transactions that an earlier pending one rules out: they can never fire. */
function trim(pending: CrossBorderTx[], window: number): CrossBorderTx[] {
  return pending.map((tx, i) => (i > 0 && tx.detail && tx.at - pending[i - 1].at < window ? { at: tx.at, eventId: tx.eventId } : tx))
}

/** Event time, then event id: ties settle the same way in every run. */
const byTime = (a: CrossBorderTx, b: CrossBorderTx) => a.at - b.at || (a.eventId < b.eventId ? -1 : a.eventId > b.eventId ? 1 : 0)
