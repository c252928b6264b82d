import { z } from 'zod'

/** Public output contract (CONTRACT.md §2.2): risk alerts on the alert topic. */

export const AlertKind = z.enum([
  'impossible_travel',
  'night_burst',
  'card_testing',
  'cashout_pattern',
  'new_device_large_amount',
  'velocity',
  'amount_anomaly',
  'prohibited_use',
])
export type AlertKind = z.infer<typeof AlertKind>

export const Severity = z.enum(['low', 'medium', 'high', 'critical'])
export type Severity = z.infer<typeof Severity>

export const RiskAlert = z.object({
  id: z.string(),
  kind: AlertKind,
  severity: Severity,
  score: z.number().min(0).max(1),
  customerId: z.string(),
  cardId: z.string().optional(),
  eventTime: z.iso.datetime({ offset: true }),
  detectedAt: z.iso.datetime({ offset: true }),
  evidence: z.looseObject({ eventIds: z.array(z.string()).min(1) }),
  ruleVersion: z.string(),
})
export type RiskAlert = z.infer<typeof RiskAlert>
