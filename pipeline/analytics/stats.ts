/**
 * The statistics behind the ROI views, as pure functions of counts, sums and sums of squares (the
 * aggregates ClickHouse returns). No I/O. Formulas and references: docs/analytics.md.
 */

/** The two-sided 95% normal quantile. */
export const Z95 = 1.959963984540054

export type Interval = [low: number, high: number]

/**
 * Wilson's score interval for a proportion x/n (Wilson 1927; Newcombe 1998, method 3).
 * 0/n gives [0, …] and n/n gives […, 1]; n = 0 gives the uninformative [0, 1].
 */
export function wilson(x: number, n: number, z = Z95): Interval {
  if (!(n >= 0) || !(x >= 0) || x > n) throw new RangeError(`wilson: need 0 ≤ x ≤ n, got ${x}/${n}`)
  if (n === 0) return [0, 1]
  const p = x / n
  const z2 = z * z
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n)
  const half = (z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))
  // At the edges the bound is exactly 0 or 1 (x = 0 → low 0; x = n → high 1), not a rounding of it.
  return [x === 0 ? 0 : Math.max(0, centre - half), x === n ? 1 : Math.min(1, centre + half)]
}

/**
 * Newcombe's hybrid score interval for the difference of two independent proportions
 * p1 − p2 = x1/n1 − x2/n2 (Newcombe 1998, method 10): from the Wilson intervals (l1, u1), (l2, u2),
 *   low  = d − √((p1 − l1)² + (u2 − p2)²)
 *   high = d + √((u1 − p1)² + (p2 − l2)²).
 * Returns null when either group is empty (no estimate).
 */
export function newcombeHybrid(x1: number, n1: number, x2: number, n2: number, z = Z95): { diff: number; ci: Interval } | null {
  if (n1 === 0 || n2 === 0) return null
  const p1 = x1 / n1
  const p2 = x2 / n2
  const [l1, u1] = wilson(x1, n1, z)
  const [l2, u2] = wilson(x2, n2, z)
  const d = p1 - p2
  const low = d - Math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
  const high = d + Math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
  return { diff: d, ci: [Math.max(-1, low), Math.min(1, high)] }
}

/** A sample summarised by its size, sum and sum of squares. */
export interface Moments {
  n: number
  sum: number
  sumSq: number
}

export const mean = (m: Moments) => (m.n > 0 ? m.sum / m.n : 0)

/** The unbiased sample variance from moments (0 with fewer than 2 values; never negative). */
export function variance(m: Moments): number {
  if (m.n < 2) return 0
  return Math.max(0, (m.sumSq - (m.sum * m.sum) / m.n) / (m.n - 1))
}

/**
 * The difference of two means, treated − control, with a Welch-style normal interval:
 * se = √(s1²/n1 + s2²/n2), interval = diff ± z·se. Null when either group is empty.
 */
export function diffOfMeans(treated: Moments, control: Moments, z = Z95): { diff: number; se: number; ci: Interval } | null {
  if (treated.n === 0 || control.n === 0) return null
  const diff = mean(treated) - mean(control)
  const se = Math.sqrt(variance(treated) / treated.n + variance(control) / control.n)
  return { diff, se, ci: [diff - z * se, diff + z * se] }
}

/** A group's moments of spend (x) and the pre-period covariate (y), for CUPED. */
export interface CupedMoments {
  n: number
  sumX: number
  sumXX: number
  sumY: number
  sumYY: number
  sumXY: number
}

/**
 * CUPED (Deng et al. 2013): spend adjusted by its pre-decision spend, x' = x − θ(y − ȳ), with
 * θ = cov(x, y)/var(y) over both groups pooled. Randomisation makes E[y] equal in both groups, so
 * the difference of adjusted means estimates the same lift with less variance. Falls back to θ = 0
 * when y does not vary. Null when either group is empty.
 */
export function cuped(treated: CupedMoments, control: CupedMoments, z = Z95): { diff: number; se: number; ci: Interval; theta: number } | null {
  if (treated.n === 0 || control.n === 0) return null
  const n = treated.n + control.n
  const sx = treated.sumX + control.sumX
  const sy = treated.sumY + control.sumY
  const sxy = treated.sumXY + control.sumXY
  const syy = treated.sumYY + control.sumYY
  const covXY = n > 1 ? (sxy - (sx * sy) / n) / (n - 1) : 0
  const varY = n > 1 ? (syy - (sy * sy) / n) / (n - 1) : 0
  const theta = varY > 1e-12 ? covXY / varY : 0
  const yBar = sy / n
  const adjusted = (g: CupedMoments) => {
    const mx = g.sumX / g.n
    const my = g.sumY / g.n
    const m = mx - theta * (my - yBar)
    // var(x − θy) = var(x) − 2θ cov(x, y) + θ² var(y), within the group.
    const vx = variance({ n: g.n, sum: g.sumX, sumSq: g.sumXX })
    const vy = variance({ n: g.n, sum: g.sumY, sumSq: g.sumYY })
    const cxy = g.n > 1 ? (g.sumXY - (g.sumX * g.sumY) / g.n) / (g.n - 1) : 0
    return { m, v: Math.max(0, vx - 2 * theta * cxy + theta * theta * vy) }
  }
  const t = adjusted(treated)
  const c = adjusted(control)
  const diff = t.m - c.m
  const se = Math.sqrt(t.v / treated.n + c.v / control.n)
  return { diff, se, ci: [diff - z * se, diff + z * se], theta }
}

/**
 * Below this many decisions in either group no verdict is given, whatever the interval says. The
 * score intervals keep their coverage for small groups (the reason to use them), so the floor only
 * guards against a verdict on a handful of customers; a 10% holdout reaches it at 300 treated.
 */
export const MIN_PER_GROUP = 30

export type Verdict = 'lift credible' | 'negative' | 'not yet'

/** A plain-words reading of a lift interval. */
export function verdict(ci: Interval | null, treated: number, control: number, minPerGroup = MIN_PER_GROUP): { verdict: Verdict; text: string } {
  if (!ci || treated < minPerGroup || control < minPerGroup) {
    const short = [treated < minPerGroup ? `${treated} treated` : '', control < minPerGroup ? `${control} control` : ''].filter(Boolean).join(' and ')
    return { verdict: 'not yet', text: `not yet: too few decisions (${short}); at least ${minPerGroup} in each group are needed` }
  }
  const pct = (v: number) => `${(v * 100).toFixed(1)} pts`
  if (ci[0] > 0) return { verdict: 'lift credible', text: `lift credible: sending raises conversion by ${pct(ci[0])} to ${pct(ci[1])} (95%)` }
  if (ci[1] < 0) return { verdict: 'negative', text: `negative: sending lowers conversion by ${pct(-ci[1])} to ${pct(-ci[0])} (95%)` }
  return { verdict: 'not yet', text: `not yet: the 95% interval (${pct(ci[0])} to ${pct(ci[1])}) still includes no effect` }
}
