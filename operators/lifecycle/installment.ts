import { z } from 'zod'
import type { Operator } from '../types.ts'

/**
 * installment_offer: one approved purchase of at least `minAmount` (in the transaction's currency).
 * Each such purchase is its own occurrence; cash withdrawals (channel `atm`) are not purchases.
 * Stateless: the event carries everything the moment needs.
 */

export type InstallmentState = Record<string, never>

const Params = z.object({ minAmount: z.number().positive().default(5000) })
type Params = z.infer<typeof Params>

export const installmentOffer: Operator<InstallmentState, Params> = {
  name: 'installment_offer',
  uses: 'installment_offer',
  eventTypes: ['transaction'],
  formerNames: ['installment'],
  initial: () => ({}),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at, { params }) {
    if (event.type !== 'transaction' || event.status !== 'approved' || event.channel === 'atm') return { state }
    if (event.amount < params.minAmount) return { state }
    const { merchant } = event
    return {
      state,
      effects: [
        {
          kind: 'moment',
          trigger: 'installment_offer',
          occurrence: event.eventId,
          eventTime: at,
          cardId: event.cardId,
          reason: {
            transactionId: event.eventId,
            amount: event.amount,
            currency: event.currency,
            minAmount: params.minAmount,
            merchantId: merchant.id,
            ...(merchant.name ? { merchantName: merchant.name } : {}),
            ...(merchant.mcc ? { mcc: merchant.mcc } : {}),
          },
        },
      ],
    }
  },
}
