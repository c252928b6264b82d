import { z } from 'zod'
import type { Operator } from '../types.ts'
import { Window, clamp01, round } from './window.ts'

/**
 * amount_anomaly: an approved purchase strictly above mean + `stdDevs` × standard deviation of the
 * customer's approved purchases in the last `window`, when there are at least `minPurchases` of
 * them. The purchase itself is not part of its own baseline (it is added after the check). The
 * standard deviation is the sample one (n − 1). Every approved transaction is a purchase, as in
 * the spend ledger. Each anomalous purchase is its own occurrence (its event id).
 *
 * Compact and incremental: purchases are summed (count, sum in cents, sum of squares in yuan²) in
 * BUCKETS buckets of window / BUCKETS, aligned to epoch time, so the state is at most 6 small
 * triples however many purchases there are. The mean is exact; each square is rounded to a whole
 * yuan² to keep the numbers short, which adds under 0.5 yuan² per purchase to the variance sum:
 * the standard deviation moves by a few fen at a spread of 10 yuan, and by up to about 0.7 yuan
 * only when the baseline amounts are all but identical (a customer paying exactly 12.71 every time
 * is then not alerted by 12.72, which an exact zero deviation would do). Approximation at the
 * window's far edge: the baseline is the current
 * bucket and the BUCKETS − 1 before it, whole, so it reaches back between (BUCKETS − 1) / BUCKETS
 * of the window and the whole window (75 to 90 days by default): purchases in the oldest bucket
 * leave the baseline together, up to window / BUCKETS before they are `window` old, never after.
 * The runtime hands events over in event-time order, so a purchase always falls in the newest bucket.
 */

/** One bucket: purchases, their sum in cents, and the sum of their squares in whole yuan². */
export type Bucket = [n: number, sumCents: number, sumSqYuan: number]

export interface AnomalyState {
  /** Bucket width (ms) the buckets were summed with; a different window in the catalogue starts afresh. */
  w: number
  /** Epoch index (floor(time / w)) of k[0]. */
  b: number
  /** Buckets, newest first: k[i] is bucket b − i. Trailing empty buckets are dropped. */
  k: Bucket[]
}

export const BUCKETS = 6

const Params = z.strictObject({
  window: Window.prefault('90d'),
  minPurchases: z.number().int().min(2).default(10),
  stdDevs: z.number().nonnegative().default(4),
})
type Params = z.infer<typeof Params>

export const amountAnomaly: Operator<AnomalyState, Params> = {
  name: 'amount_anomaly',
  uses: 'amount_anomaly',
  formerNames: ['risk.amount_anomaly'],
  initial: () => ({ w: 0, b: 0, k: [] }),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at, { params }) {
    const width = Math.ceil(params.window / BUCKETS)
    const s = advance(state.w === width ? state : { w: width, b: 0, k: [] }, Math.floor(at / width))
    if (event.type !== 'transaction' || event.status !== 'approved') return { state: s }
    let n = 0
    let cents = 0
    let squares = 0
    for (const bucket of s.k) {
      n += bucket[0]
      cents += bucket[1]
      squares += bucket[2]
    }
    const next = addToNewest(s, event.amount)
    if (n < params.minPurchases) return { state: next }
    const sum = cents / 100
    const mean = sum / n
    const stdDev = Math.sqrt(Math.max(0, (squares - (sum * sum) / n) / (n - 1)))
    const threshold = mean + params.stdDevs * stdDev
    if (!(event.amount > threshold)) return { state: next }
    return {
      state: next,
      effects: [
        {
          kind: 'alert',
          alertKind: 'amount_anomaly',
          severity: 'low',
          // 0.5 just above the threshold, 1 at twice it or more.
          score: round(clamp01(0.5 + 0.5 * ((event.amount - threshold) / threshold)), 3),
          occurrence: event.eventId,
          eventTime: at,
          cardId: event.cardId,
          evidence: {
            eventIds: [event.eventId],
            amount: event.amount,
            mean: round(mean),
            stdDev: round(stdDev),
            threshold: round(threshold),
            stdDevs: params.stdDevs,
            purchases: n,
            minPurchases: params.minPurchases,
            // From the start of the oldest bucket counted to the purchase.
            baselineDays: round((at - (s.b - (BUCKETS - 1)) * width) / 86_400_000, 1),
            windowMs: params.window,
          },
        },
      ],
    }
  },
}

/** Moves the newest bucket forward to `idx`, dropping buckets that fall out of the window. */
function advance(s: AnomalyState, idx: number): AnomalyState {
  if (!s.k.length) return s.b === idx ? s : { ...s, b: idx }
  if (idx <= s.b) return s
  const gap = idx - s.b
  const k = gap >= BUCKETS ? [] : [...Array.from({ length: gap }, (): Bucket => [0, 0, 0]), ...s.k].slice(0, BUCKETS)
  return { ...s, b: idx, k: trim(k) }
}

function addToNewest(s: AnomalyState, amount: number): AnomalyState {
  const newest = s.k[0] ?? [0, 0, 0]
  const k = s.k.slice()
  k[0] = [newest[0] + 1, newest[1] + Math.round(amount * 100), newest[2] + Math.round(amount * amount)]
  return { ...s, k }
}

function trim(k: Bucket[]): Bucket[] {
  let end = k.length
  while (end > 0 && k[end - 1][0] === 0) end--
  return end === k.length ? k : k.slice(0, end)
}
