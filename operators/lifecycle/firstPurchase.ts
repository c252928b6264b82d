import { z } from 'zod'
import type { TransactionEvent } from '../../schemas/events.ts'
import type { CustomerFacts } from '../facts.ts'
import type { Operator } from '../types.ts'

/**
 * first_purchase_reward: once per customer, the first approved transaction at or after the
 * customer's earliest card activation. A purchase before the activation neither counts nor uses
 * up the reward.
 *
 * "First" is decided in event time, not arrival order: the earliest qualifying purchase waits for
 * a timer at its own time, which fires once the watermark has passed it — by then every purchase
 * that occurred earlier has arrived. With no allowed lateness the timer fires in the same step as
 * the purchase. The decision's event time is the purchase's.
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
   * Purchases seen before any activation while one may still arrive late (up to the allowed lateness
   * after a purchase that followed it). The newest EARLY_KEPT only.
   */
  early?: Purchase[]
  /** Rewarded: nothing more is kept. */
  done?: true
}

const EARLY_KEPT = 3
/** Far longer than any allowed lateness (minutes). */
const EARLY_HORIZON = 86_400_000
const AWAITING = new Set(['applied', 'approved', 'issued'])
const TIMER = 'first'

const Params = z.object({})
type Params = z.infer<typeof Params>

export const firstPurchase: Operator<FirstPurchaseState, Params> = {
  name: 'first_purchase',
  uses: 'first_purchase_reward',
  initial: () => ({}),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at, { facts }) {
    if (state.done) return { state }

    if (event.type === 'transaction') {
      if (event.status !== 'approved') return { state }
      const p = purchase(event, at)
      if (state.activatedAt === undefined) {
        if (!mayStillActivate(facts, event.cardId, at)) return state.early ? { state: without(state, 'early') } : { state }
        const early = [...(state.early ?? []), p].sort(byTime).slice(-EARLY_KEPT)
        return { state: { ...state, early } }
      }
      if (at < state.activatedAt || (state.candidate && !byTimeBefore(p, state.candidate))) return { state }
      return { state: { ...state, candidate: p }, effects: [{ kind: 'setTimer', key: TIMER, at }] }
    }

    if (event.type === 'lifecycle' && event.stage === 'activated') {
      const activatedAt = Math.min(state.activatedAt ?? at, at)
      // Purchases that arrived before this (late) activation may be the first after it.
      const eligible = [...(state.early ?? []), ...(state.candidate ? [state.candidate] : [])].filter((p) => p.at >= activatedAt).sort(byTime)
      const candidate = eligible[0]
      const next: FirstPurchaseState = { activatedAt, ...(candidate ? { candidate } : {}) }
      const moved = candidate && candidate !== state.candidate
      return { state: next, effects: moved ? [{ kind: 'setTimer', key: TIMER, at: candidate.at }] : [] }
    }
    return { state }
  },

  onTimer(state, timer) {
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

/**
 * Whether an `activated` event that occurred before this purchase may still arrive: some card is on
 * its way to activation; or the purchase is on a card with no lifecycle event yet while the
 * customer's other cards are known, or from a customer new to the pipeline (first approved
 * transaction within EARLY_HORIZON) — as when a card issued and activated in seconds has its
 * lifecycle events arrive after its first purchase. A customer known only from long-standing
 * transactions (cards activated before the pipeline saw them) keeps nothing.
 */
function mayStillActivate(facts: CustomerFacts, cardId: string, at: number): boolean {
  if (facts.firstApprovedAt !== undefined && at - facts.firstApprovedAt < EARLY_HORIZON) return true
  const cards = Object.values(facts.cards)
  if (cards.length && !(cardId in facts.cards)) return true
  return cards.some((c) => AWAITING.has(c.stage))
}

/** Event time, then event id: a total order, so ties resolve the same way in every run. */
const byTime = (a: Purchase, b: Purchase) => a.at - b.at || (a.eventId < b.eventId ? -1 : a.eventId > b.eventId ? 1 : 0)
const byTimeBefore = (a: Purchase, b: Purchase) => byTime(a, b) < 0

function without<K extends keyof FirstPurchaseState>(state: FirstPurchaseState, key: K): FirstPurchaseState {
  const { [key]: _, ...rest } = state
  return rest
}
