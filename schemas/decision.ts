import { z } from 'zod'
import { Channel } from './events.ts'

/** Public output contract (CONTRACT.md §2.1): trigger decisions and the webhook body. */

export const Outcome = z.enum(['send', 'control', 'suppressed'])
export type Outcome = z.infer<typeof Outcome>

export const SuppressedBy = z.enum(['cooldown', 'weekly_cap', 'consent', 'risk_hold', 'lower_priority', 'expired'])
export type SuppressedBy = z.infer<typeof SuppressedBy>

export const Holdout = z.enum(['trigger', 'global'])
export type Holdout = z.infer<typeof Holdout>

const timestamp = z.iso.datetime({ offset: true })
const evidence = z.record(z.string(), z.unknown())

export const Offer = z.object({ code: z.string(), value: z.number().nonnegative(), currency: z.string() })
export type Offer = z.infer<typeof Offer>

export const Decision = z.object({
  id: z.string(),
  trigger: z.string(),
  customerId: z.string(),
  cardId: z.string().optional(),
  outcome: Outcome,
  suppressedBy: SuppressedBy.optional(),
  /** On a control: the trigger's holdout, or the programme-wide (global) control group. */
  holdout: Holdout.optional(),
  /** The customer's profile segment when decided, for ROI by segment. */
  segment: z.string().optional(),
  channel: Channel.optional(),
  eventTime: timestamp,
  decidedAt: timestamp,
  sendAt: timestamp.optional(),
  expiresAt: timestamp,
  offer: Offer.optional(),
  reason: evidence,
  catalogVersion: z.string(),
  attributionWindowDays: z.number().int().positive(),
})
export type Decision = z.infer<typeof Decision>

export const WebhookBody = z.object({
  id: z.string(),
  trigger: z.string(),
  customerId: z.string(),
  cardId: z.string().optional(),
  channel: Channel,
  eventTime: timestamp,
  decidedAt: timestamp,
  sendAt: timestamp,
  expiresAt: timestamp,
  offer: Offer.optional(),
  reason: evidence,
  group: z.literal('treatment'),
  attributionWindowDays: z.number().int().positive(),
})
export type WebhookBody = z.infer<typeof WebhookBody>

export function webhookBodyOf(d: Decision): WebhookBody {
  if (d.outcome !== 'send' || !d.channel || !d.sendAt) throw new Error(`decision ${d.id} is not a send`)
  return {
    id: d.id,
    trigger: d.trigger,
    customerId: d.customerId,
    ...(d.cardId ? { cardId: d.cardId } : {}),
    channel: d.channel,
    eventTime: d.eventTime,
    decidedAt: d.decidedAt,
    sendAt: d.sendAt,
    expiresAt: d.expiresAt,
    ...(d.offer ? { offer: d.offer } : {}),
    reason: d.reason,
    group: 'treatment',
    attributionWindowDays: d.attributionWindowDays,
  }
}
