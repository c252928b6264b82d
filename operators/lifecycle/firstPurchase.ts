import { z } from 'zod'
import type { TransactionEvent } from '../../schemas/events.ts'
import type { Effect, Operator } from '../types.ts'

/**
 * first_purchase_reward: once per customer, the first approved transaction at or after the
 * customer's earliest card activation. A purchase before the activation neither counts nor uses
 * up the reward.
 *
 * "First" is decided in event time, not arrival order: the earliest qualifying purchase waits for
 * a timer at its own time, which fires once the watermark has passed it — by then every purchase
 * that occurred earlier has arrived. With no allowed lateness the timer fires in the same step as
 * the purchase. The decision's event time is the purchase's.
 *
 * The transaction and lifecycle topics interleave within the allowed lateness, so a purchase made
 * after an activation may arrive before it. Until an activation is seen, purchases are therefore
 * kept in `early` while one may still arrive: an activation that arrives later is not late, so it
 * occurred at or after the watermark; once the watermark has passed a purchase (a timer just after
 * it), no activation at or before it can come, and it is dropped. This needs no knowledge of the
 * lateness and no guess from the facts (which are folded in arrival order).
 */

export interface Purchase {
  at: number
  eventId: string
  cardId: string
  amount: number
  currency: string
  merchantId: string
  mcc?: string
}

export interface FirstPurchaseState {
  /** Earliest activation of any of the customer's cards. */
  activatedAt?: number
  /** The earliest purchase at or after `activatedAt`, waiting for the watermark. */
  candidate?: Purchase
  /**
   * Before any activation is seen: approved purchases the watermark has not yet passed, in time
   * order, the newest EARLY_KEPT only. Left out when empty.
   */
  early?: Purchase[]
  /** Rewarded: nothing more is kept. */
  done?: true
}

/**
 * Early purchases kept at most: those not yet passed by the watermark, so with a lateness of
 * seconds rarely more than one; a longer burst before the activation arrives keeps its newest.
 */
const EARLY_KEPT = 16
/** Fires once the watermark has passed the earliest pending purchase. */
const EARLY = 'early'
const TIMER = 'first'

const Params = z.object({})
type Params = z.infer<typeof Params>

export const firstPurchase: Operator<FirstPurchaseState, Params> = {
  name: 'first_purchase',
  uses: 'first_purchase_reward',
  initial: () => ({}),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at) {
    if (state.done) return { state }

    if (event.type === 'transaction') {
      if (event.status !== 'approved') return { state }
      const p = purchase(event, at)
      if (state.activatedAt === undefined) {
        const early = [...(state.early ?? []), p].sort(byTime).slice(-EARLY_KEPT)
        return { state: { ...state, early }, effects: pruneTimer(early) }
      }
      if (at < state.activatedAt || (state.candidate && !byTimeBefore(p, state.candidate))) return { state }
      return { state: { ...state, candidate: p }, effects: [{ kind: 'setTimer', key: TIMER, at }] }
    }

    if (event.type === 'lifecycle' && event.stage === 'activated') {
      const activatedAt = Math.min(state.activatedAt ?? at, at)
      // Purchases that arrived before this activation may be the first after it.
      const eligible = [...(state.early ?? []), ...(state.candidate ? [state.candidate] : [])].filter((p) => p.at >= activatedAt).sort(byTime)
      const candidate = eligible[0]
      const next: FirstPurchaseState = { activatedAt, ...(candidate ? { candidate } : {}) }
      const effects: Effect[] = state.early ? [{ kind: 'cancelTimer', key: EARLY }] : []
      if (candidate && candidate !== state.candidate) effects.push({ kind: 'setTimer', key: TIMER, at: candidate.at })
      return { state: next, effects }
    }
    return { state }
  },

  onTimer(state, timer) {
    if (timer.key === EARLY) {
      // Every event before timer.at has arrived: an activation still to come is at or after it.
      if (state.done || !state.early) return { state }
      const early = state.early.filter((p) => p.at >= timer.at)
      return { state: early.length ? { ...state, early } : without(state, 'early'), effects: pruneTimer(early) }
    }
    const c = state.candidate
    if (state.done || !c || c.at > timer.at) return { state }
    return {
      state: { done: true },
      effects: [
        {
          kind: 'moment',
          trigger: 'first_purchase_reward',
          // Once per customer: the same id whichever purchase turns out to be the first.
          occurrence: 'first',
          eventTime: c.at,
          cardId: c.cardId,
          causeEventId: c.eventId,
          reason: {
            activatedAt: new Date(state.activatedAt!).toISOString(),
            transactionId: c.eventId,
            amount: c.amount,
            currency: c.currency,
            merchantId: c.merchantId,
            ...(c.mcc ? { mcc: c.mcc } : {}),
          },
        },
      ],
    }
  },
}

/**
 * The timer that drops the earliest early purchase once the watermark is past it: 1 ms after it,
 * since an activation at exactly the purchase time may still arrive (an event at the watermark is
 * not late) and would count it. Set on every change, so an `early` list never lacks its timer.
 */
function pruneTimer(early: Purchase[]): Effect[] {
  return early.length ? [{ kind: 'setTimer', key: EARLY, at: early[0].at + 1 }] : []
}

function purchase(e: TransactionEvent, at: number): Purchase {
  return {
    at,
    eventId: e.eventId,
    cardId: e.cardId,
    amount: e.amount,
    currency: e.currency,
    merchantId: e.merchant.id,
    ...(e.merchant.mcc ? { mcc: e.merchant.mcc } : {}),
  }
}

/** Event time, then event id: a total order, so ties resolve the same way in every run. */
const byTime = (a: Purchase, b: Purchase) => a.at - b.at || (a.eventId < b.eventId ? -1 : a.eventId > b.eventId ? 1 : 0)
const byTimeBefore = (a: Purchase, b: Purchase) => byTime(a, b) < 0

function without<K extends keyof FirstPurchaseState>(state: FirstPurchaseState, key: K): FirstPurchaseState {
  const { [key]: _, ...rest } = state
  return rest
}
