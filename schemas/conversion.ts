import { z } from 'zod'

/**
 * What a send or control decision earned: its trigger's goal watched over the attribution window,
 * in event time. One row per decision, in successive states (goal reached, window ended), each with
 * a higher `version`, so that ClickHouse's ReplacingMergeTree(version) keeps the latest.
 * Written to the `conversions` table and, by `replay`, to conversions.ndjson.
 */

const timestamp = z.iso.datetime({ offset: true })

export const Conversion = z.object({
  decisionId: z.string(),
  trigger: z.string(),
  customerId: z.string(),
  cardId: z.string().optional(),
  outcome: z.enum(['send', 'control']),
  /** The decision's eventTime: the window starts strictly after it. */
  decisionTime: timestamp,
  /** End of the attribution window (exclusive). */
  windowEnd: timestamp,
  converted: z.boolean(),
  convertedAt: timestamp.optional(),
  convertingEventId: z.string().optional(),
  /** An offer_clicked or offer_redeemed app event in the window (not a conversion by itself). */
  engaged: z.boolean(),
  /** Approved spend in the window so far (sum of approved transaction amounts), 2 decimals. */
  spend: z.number(),
  /** Approved spend in the 30 days up to the decision (whole days of the spend ledger), for CUPED; 0 if unknown. */
  preSpend: z.number(),
  /** True once the window has ended: the row is then final. */
  final: z.boolean(),
  version: z.number().int().nonnegative(),
})
export type Conversion = z.infer<typeof Conversion>
