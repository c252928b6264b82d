import { z } from 'zod'
import type { Operator } from '../types.ts'
import { Count, Window, addHit, burstAlert, isEmptyWindow, newestIn, pruneWindow, type HitWindow } from './window.ts'

/**
 * cashout_pattern: ≥ `count` approved round amounts (a multiple of `roundTo`, at least
 * `minAmount`) at one merchant within `window`; round amounts spread over several merchants do not
 * add up. The window bound is inclusive, as for every count rule. One alert per burst and merchant.
 *
 * State: one hit window per merchant that has recent round amounts, at most MAX_MERCHANTS of them
 * (the ones with the most recent activity); an ordinary customer has none.
 */

const Params = z.strictObject({
  count: Count.default(3),
  roundTo: z.number().positive().default(1000),
  minAmount: z.number().nonnegative().default(1000),
  window: Window.prefault('24h'),
})
type Params = z.infer<typeof Params>

export type CashoutState = Record<string, HitWindow>

const MAX_MERCHANTS = 8

export const cashoutPattern: Operator<CashoutState, Params> = {
  name: 'cashout_pattern',
  uses: 'cashout_pattern',
  formerNames: ['risk.cashout_pattern'],
  initial: () => ({}),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at, { params }) {
    const pruned = prune(state, at, params)
    if (event.type !== 'transaction' || event.status !== 'approved' || event.amount < params.minAmount || !isMultiple(event.amount, params.roundTo))
      return { state: pruned }
    const merchantId = event.merchant.id
    // Own properties only: a merchant id is outside input and may be any string, "__proto__" included.
    const current = Object.hasOwn(pruned, merchantId) ? pruned[merchantId] : {}
    const { state: window, burst } = addHit(current, { t: at, id: event.eventId, a: event.amount }, params.count, params.window)
    const next = capMerchants(Object.fromEntries([...Object.entries(pruned).filter(([m]) => m !== merchantId), [merchantId, window]]))
    if (!burst) return { state: next }
    const figures = { merchantId, amounts: burst.map((x) => x.a), roundTo: params.roundTo, minAmount: params.minAmount }
    return { state: next, effects: [burstAlert('cashout_pattern', 'high', burst, params.window, event.cardId, figures)] }
  },
}

/** Exact on amounts of at most 2 decimals: compared in cents, so 3000.00 is a multiple of 1000 and 3000.01 is not. */
function isMultiple(amount: number, roundTo: number): boolean {
  const step = Math.round(roundTo * 100)
  return step > 0 && Math.round(amount * 100) % step === 0
}

function prune(state: CashoutState, at: number, params: Params): CashoutState {
  let changed = false
  const kept: [string, HitWindow][] = []
  for (const [m, w] of Object.entries(state)) {
    const p = pruneWindow(w, at, params.window, params.count)
    if (p !== w) changed = true
    if (!isEmptyWindow(p)) kept.push([m, p])
  }
  return changed ? Object.fromEntries(kept) : state
}

function capMerchants(state: CashoutState): CashoutState {
  const entries = Object.entries(state)
  if (entries.length <= MAX_MERCHANTS) return state
  entries.sort(([, a], [, b]) => newestIn(b) - newestIn(a))
  return Object.fromEntries(entries.slice(0, MAX_MERCHANTS))
}
