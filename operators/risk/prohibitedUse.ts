import { z } from 'zod'
import type { Operator } from '../types.ts'

/**
 * prohibited_use: an approved transaction at a merchant whose category (MCC) is barred for card
 * funds. Besides the alert it emits a `compliance_notice` moment (a service message the decision
 * step exempts from cooldowns, caps, quiet hours, holdouts and the risk hold). One alert and one
 * notice per transaction: the occurrence is the event id. Stateless.
 */

export type ProhibitedState = Record<string, never>

const Params = z.strictObject({
  mccs: z.array(z.string().regex(/^\d{4}$/, 'must be a 4-digit merchant category code')).default(['6211', '6513', '6051', '7995']),
})
type Params = z.infer<typeof Params>

export const prohibitedUse: Operator<ProhibitedState, Params> = {
  name: 'prohibited_use',
  uses: 'prohibited_use',
  eventTypes: ['transaction'],
  formerNames: ['risk.prohibited_use'],
  initial: () => ({}),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at, { params }) {
    if (event.type !== 'transaction' || event.status !== 'approved') return { state }
    const mcc = event.merchant.mcc
    if (mcc === undefined || !params.mccs.includes(mcc)) return { state }
    const figures = { mcc, merchantId: event.merchant.id, amount: event.amount, currency: event.currency }
    return {
      state,
      effects: [
        {
          kind: 'alert',
          alertKind: 'prohibited_use',
          severity: 'medium',
          // A category match is certain, not a matter of degree.
          score: 1,
          occurrence: event.eventId,
          eventTime: at,
          cardId: event.cardId,
          evidence: { eventIds: [event.eventId], ...figures, ...(event.merchant.name ? { merchantName: event.merchant.name } : {}) },
        },
        { kind: 'moment', trigger: 'compliance_notice', occurrence: event.eventId, eventTime: at, cardId: event.cardId, reason: figures },
      ],
    }
  },
}
