/**
 * A compact, incremental record of approved spend: per day (UTC) for the last 35 days, then per
 * 10-day block (aligned to epoch days) back to about 135 days. Amounts in whole yuan, each
 * transaction rounded: ample for thresholds of hundreds of yuan, and about 45 small numbers for
 * an active customer however many transactions they make.
 */

export const DAY = 86_400_000
const DAILY = 35
const BLOCK = 10
const BLOCKS = 10 // 35 + 100 days: covers a 30-day window and the 90 days before it

export interface SpendLedger {
  /** Epoch day of d[0]; d[i] is day − i. */
  day: number
  /** Spend per day, yuan, newest first. */
  d: number[]
  /** Epoch block (floor(day / BLOCK)) of b[0]; b[j] is block − j. */
  block: number
  /** Spend per block, yuan, newest first: days older than the daily window. */
  b: number[]
}

export const emptyLedger = (): SpendLedger => ({ day: 0, d: [], block: 0, b: [] })

export const epochDay = (ms: number) => Math.floor(ms / DAY)

/** Adds an approved amount at time `at`; older-than-window amounts go to their block. */
export function addSpend(ledger: SpendLedger, at: number, amount: number): SpendLedger {
  const yuan = Math.round(amount)
  const day = epochDay(at)
  let l = ledger.d.length ? ledger : { ...ledger, day, block: Math.floor(day / BLOCK) }
  if (day > l.day) l = shiftTo(l, day)
  const age = l.day - day
  if (age < DAILY) {
    const d = l.d.slice()
    while (d.length <= age) d.push(0)
    d[age] += yuan
    return { day: l.day, d, block: l.block, b: l.b }
  }
  return addToBlock(l, day, yuan)
}

/** Moves the newest day forward, folding days that leave the daily window into their blocks. */
function shiftTo(l: SpendLedger, day: number): SpendLedger {
  const shift = day - l.day
  const kept = Math.max(0, Math.min(l.d.length, DAILY - shift))
  let out: SpendLedger = l
  for (let i = l.d.length - 1; i >= kept; i--) if (l.d[i]) out = addToBlock(out, l.day - i, l.d[i])
  let last = kept - 1
  while (last >= 0 && l.d[last] === 0) last--
  const d: number[] = []
  if (last >= 0) {
    for (let i = 0; i < shift; i++) d.push(0)
    for (let i = 0; i <= last; i++) d.push(l.d[i])
  }
  return { day, d, block: out.block, b: out.b }
}

function addToBlock(l: SpendLedger, day: number, yuan: number): SpendLedger {
  const block = Math.floor(day / BLOCK)
  let head = l.b.length ? l.block : block
  let b: number[]
  if (block > head) {
    b = new Array<number>(block - head).fill(0)
    for (const x of l.b) b.push(x)
    head = block
  } else b = l.b.slice()
  const j = head - block
  if (j < BLOCKS) {
    while (b.length <= j) b.push(0)
    b[j] += yuan
  } // else beyond the horizon
  if (b.length > BLOCKS) b.length = BLOCKS
  return { day: l.day, d: l.d, block: head, b }
}

/**
 * Approved spend (yuan) on the epoch days [fromDay, toDay], inclusive. Exact inside the daily
 * window; a block partly inside the range counts in proportion to its days inside.
 */
export function spendBetween(l: SpendLedger, fromDay: number, toDay: number): number {
  let yuan = 0
  for (let i = 0; i < l.d.length; i++) {
    const day = l.day - i
    if (day >= fromDay && day <= toDay) yuan += l.d[i]
  }
  const dailyOldest = l.day - DAILY + 1
  for (let j = 0; j < l.b.length; j++) {
    const first = (l.block - j) * BLOCK
    const last = Math.min(first + BLOCK - 1, dailyOldest - 1)
    const lo = Math.max(first, fromDay)
    const hi = Math.min(last, toDay)
    if (hi >= lo && last >= first) yuan += (l.b[j] * (hi - lo + 1)) / (last - first + 1)
  }
  return Math.round(yuan)
}

/** Days with approved spend among the epoch days [fromDay, toDay] inside the daily window. */
export function activeDaysBetween(l: SpendLedger, fromDay: number, toDay: number): number {
  let count = 0
  for (let i = 0; i < l.d.length; i++) {
    const day = l.day - i
    if (day >= fromDay && day <= toDay && l.d[i] > 0) count++
  }
  return count
}

/** Spend (yuan) in the `days` days that end with the day of `at` (a rolling window at day granularity). */
export const spendInLastDays = (l: SpendLedger, at: number, days: number) => spendBetween(l, epochDay(at) - days + 1, epochDay(at))
