/**
 * Seeded random streams. Every customer draws from its own streams, one per purpose, keyed by a
 * hash of (seed, customer, purpose): what one customer does, or how they react to a touchpoint,
 * never moves another customer's draws, and the output does not depend on the order of work.
 */

export type Random = () => number

/** mulberry32: small, fast, good enough for simulation. */
export function mulberry32(seed: number): Random {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A 32-bit hash of the parts (FNV-1a over their text, then a final mix). */
export function hash32(...parts: (string | number)[]): number {
  let h = 0x811c9dc5
  for (let p = 0; p < parts.length; p++) {
    const s = String(parts[p])
    for (let i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i)
      h = Math.imul(h, 0x01000193)
    }
    h ^= 0x1f // separator, so ("ab","c") differs from ("a","bc")
    h = Math.imul(h, 0x01000193)
  }
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** A stream for (seed, ...purpose). */
export const stream = (...parts: (string | number)[]): Random => mulberry32(hash32(...parts))

/** A uniform number in [0, 1) for (seed, ...purpose), without a stream. */
export const unit = (...parts: (string | number)[]): number => hash32(...parts) / 4294967296

export const uniform = (r: Random, lo: number, hi: number) => lo + r() * (hi - lo)
export const between = (r: Random, [lo, hi]: readonly [number, number]) => lo + r() * (hi - lo)
export const pick = <T>(r: Random, list: readonly T[]): T => list[Math.floor(r() * list.length)]
export const exponential = (r: Random, mean: number) => -Math.log(1 - r()) * mean

/** A standard normal variate (Box–Muller; uses two draws). */
export function normal(r: Random): number {
  const u = 1 - r()
  const v = r()
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
}

/** Poisson-distributed count (Knuth for small means, normal approximation above 30). */
export function poisson(r: Random, mean: number): number {
  if (mean <= 0) return 0
  if (mean > 30) return Math.max(0, Math.round(mean + Math.sqrt(mean) * normal(r)))
  const limit = Math.exp(-mean)
  let k = 0
  let p = r()
  while (p > limit) {
    k++
    p *= r()
  }
  return k
}

/** Picks a key by weight. */
export class Weighted<K> {
  private readonly keys: K[]
  private readonly cumulative: number[]
  constructor(weights: Iterable<[K, number]>) {
    this.keys = []
    this.cumulative = []
    let total = 0
    for (const [k, w] of weights) {
      if (!(w > 0)) continue
      total += w
      this.keys.push(k)
      this.cumulative.push(total)
    }
    for (let i = 0; i < this.cumulative.length; i++) this.cumulative[i] /= total
  }
  /** The key for a uniform draw u in [0, 1). */
  at(u: number): K {
    const c = this.cumulative
    let lo = 0
    let hi = c.length - 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (u < c[mid]) hi = mid
      else lo = mid + 1
    }
    return this.keys[lo]
  }
  pick(r: Random): K {
    return this.at(r())
  }
}
