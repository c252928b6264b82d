import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { cuped, diffOfMeans, newcombeHybrid, variance, verdict, wilson } from '../pipeline/analytics/stats.ts'

/**
 * The interval arithmetic against published values: Newcombe RG (1998), "Two-sided confidence
 * intervals for the single proportion: comparison of seven methods", Stat Med 17:857–872, Table I
 * (method 3, Wilson's score); and "Interval estimation for the difference between independent
 * proportions: comparison of eleven methods", Stat Med 17:873–890, Table II (method 10, hybrid score).
 */

const close = (actual: readonly number[], expected: readonly number[]) => {
  expect(actual).toHaveLength(expected.length)
  actual.forEach((v, i) => expect(v).toBeCloseTo(expected[i], 4))
}

describe('Wilson score interval', () => {
  it.each([
    [81, 263, 0.2553, 0.3662],
    [15, 148, 0.0624, 0.1605],
    [0, 20, 0, 0.1611],
    [1, 29, 0.0061, 0.1718],
    [29, 29, 0.883, 1],
  ])('%i/%i is %f to %f (Newcombe 1998, Table I)', (x, n, low, high) => close(wilson(x, n), [low, high]))

  it('is exactly 0 or 1 at the edges, and [0, 1] for an empty group', () => {
    expect(wilson(0, 50)[0]).toBe(0)
    expect(wilson(50, 50)[1]).toBe(1)
    expect(wilson(0, 0)).toEqual([0, 1])
    expect(() => wilson(3, 2)).toThrow(RangeError)
  })

  it('contains the observed rate and stays within [0, 1]', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 100_000 }).chain((n) => fc.tuple(fc.integer({ min: 0, max: n }), fc.constant(n))), ([x, n]) => {
        const [low, high] = wilson(x, n)
        return low >= 0 && high <= 1 && low <= x / n + 1e-12 && x / n <= high + 1e-12
      }),
    )
  })
})

describe("Newcombe's hybrid score interval for a difference of proportions", () => {
  it.each([
    [56, 70, 48, 80, 0.0524, 0.3339],
    [9, 10, 3, 10, 0.1705, 0.809],
    [6, 7, 2, 7, 0.0582, 0.8062],
    [5, 56, 0, 29, -0.0381, 0.1926],
    [0, 10, 0, 20, -0.1611, 0.2775],
    [0, 10, 0, 10, -0.2775, 0.2775],
    [10, 10, 0, 20, 0.6791, 1],
    [10, 10, 0, 10, 0.6075, 1],
  ])('%i/%i − %i/%i is %f to %f (Newcombe 1998, Table II, method 10)', (x1, n1, x2, n2, low, high) => {
    const r = newcombeHybrid(x1, n1, x2, n2)!
    expect(r.diff).toBeCloseTo(x1 / n1 - x2 / n2, 12)
    close(r.ci, [low, high])
  })

  it('gives no estimate when a group is empty', () => {
    expect(newcombeHybrid(3, 10, 0, 0)).toBeNull()
    expect(newcombeHybrid(0, 0, 3, 10)).toBeNull()
  })

  it('contains the point estimate and lies in [-1, 1], for any counts', () => {
    const group = fc.integer({ min: 1, max: 50_000 }).chain((n) => fc.tuple(fc.integer({ min: 0, max: n }), fc.constant(n)))
    fc.assert(
      fc.property(group, group, ([x1, n1], [x2, n2]) => {
        const { diff, ci } = newcombeHybrid(x1, n1, x2, n2)!
        return ci[0] >= -1 && ci[1] <= 1 && ci[0] <= diff + 1e-12 && diff <= ci[1] + 1e-12
      }),
      { numRuns: 2000 },
    )
  })
})

describe('difference of means and CUPED', () => {
  const moments = (xs: number[]) => ({ n: xs.length, sum: xs.reduce((a, b) => a + b, 0), sumSq: xs.reduce((a, b) => a + b * b, 0) })

  it('computes the Welch normal interval from sums and sums of squares', () => {
    const t = [10, 12, 9, 14, 15]
    const c = [8, 9, 7, 10]
    const r = diffOfMeans(moments(t), moments(c))!
    const vt = variance(moments(t))
    const vc = variance(moments(c))
    expect(vt).toBeCloseTo(6.5, 10)
    expect(vc).toBeCloseTo(5 / 3, 10)
    expect(r.diff).toBeCloseTo(12 - 8.5, 10)
    expect(r.se).toBeCloseTo(Math.sqrt(6.5 / 5 + 5 / 3 / 4), 10)
    close(r.ci, [3.5 - 1.959963984540054 * r.se, 3.5 + 1.959963984540054 * r.se])
    expect(diffOfMeans(moments([]), moments(c))).toBeNull()
  })

  it('CUPED keeps the estimate and narrows the interval when pre-period spend predicts spend', () => {
    let seed = 7
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)
    const groups = { t: { n: 0, sumX: 0, sumXX: 0, sumY: 0, sumYY: 0, sumXY: 0 }, c: { n: 0, sumX: 0, sumXX: 0, sumY: 0, sumYY: 0, sumXY: 0 } }
    for (let i = 0; i < 4000; i++) {
      const g = i % 5 === 0 ? groups.c : groups.t
      const pre = 200 + 400 * rand()
      const spend = 0.9 * pre + (g === groups.t ? 20 : 0) + 40 * (rand() - 0.5)
      g.n++
      g.sumX += spend
      g.sumXX += spend * spend
      g.sumY += pre
      g.sumYY += pre * pre
      g.sumXY += spend * pre
    }
    const plain = diffOfMeans({ n: groups.t.n, sum: groups.t.sumX, sumSq: groups.t.sumXX }, { n: groups.c.n, sum: groups.c.sumX, sumSq: groups.c.sumXX })!
    const adjusted = cuped(groups.t, groups.c)!
    expect(adjusted.theta).toBeCloseTo(0.9, 1)
    expect(adjusted.diff).toBeGreaterThan(adjusted.ci[0])
    expect(adjusted.ci[0]).toBeLessThan(20)
    expect(adjusted.ci[1]).toBeGreaterThan(20)
    expect(adjusted.se).toBeLessThan(plain.se / 3)
    expect(cuped({ ...groups.t, n: 0 }, groups.c)).toBeNull()
  })
})

describe('verdict', () => {
  it('reads the interval in plain words, and waits for a minimum sample', () => {
    expect(verdict([0.02, 0.08], 500, 200).verdict).toBe('lift credible')
    expect(verdict([-0.08, -0.01], 500, 200).verdict).toBe('negative')
    expect(verdict([-0.01, 0.05], 500, 200)).toEqual({ verdict: 'not yet', text: 'not yet: the 95% interval (-1.0 pts to 5.0 pts) still includes no effect' })
    expect(verdict([0.2, 0.5], 500, 20)).toEqual({ verdict: 'not yet', text: 'not yet: too few decisions (20 control); at least 30 in each group are needed' })
    expect(verdict(null, 0, 0).text).toMatch(/0 treated and 0 control/)
  })
})
