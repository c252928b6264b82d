import { z } from 'zod'
import type { Operator } from '../types.ts'

/**
 * first_purchase_reward: once per customer, the first approved transaction at or after the
 * customer's earliest card activation. A purchase before the activation neither counts nor uses
 * up the reward; one at the activation instant counts (the runtime applies a lifecycle change
 * before a transaction of the same instant).
 *
 * The runtime hands each customer's events over in event-time order, so the first purchase after
 * an activation is the first one seen after it, whatever order the streams arrived in.
 */

export interface FirstPurchaseState {
  /** Earliest activation of any of the customer's cards. */
  activatedAt?: number
  /** Rewarded: nothing more is kept. */
  done?: true
}

const Params = z.object({})
type Params = z.infer<typeof Params>

export const firstPurchase: Operator<FirstPurchaseState, Params> = {
  name: 'first_purchase_reward',
  uses: 'first_purchase_reward',
  eventTypes: ['lifecycle', 'transaction'],
  formerNames: ['first_purchase'],
  initial: () => ({}),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at) {
    if (state.done) return { state }
    if (event.type === 'lifecycle' && event.stage === 'activated') {
      return state.activatedAt === undefined ? { state: { activatedAt: at } } : { state }
    }
    if (event.type !== 'transaction' || event.status !== 'approved' || state.activatedAt === undefined || at < state.activatedAt) return { state }
    return {
      state: { done: true },
      effects: [
        {
          kind: 'moment',
          trigger: 'first_purchase_reward',
          occurrence: 'first',
          eventTime: at,
          cardId: event.cardId,
          reason: {
            activatedAt: new Date(state.activatedAt).toISOString(),
            transactionId: event.eventId,
            amount: event.amount,
            currency: event.currency,
            merchantId: event.merchant.id,
            ...(event.merchant.mcc ? { mcc: event.merchant.mcc } : {}),
          },
        },
      ],
    }
  },
}
