import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { InputAlignment } from '../pipeline/alignment.ts'

const DAY = 86_400_000
const batch = (...times: (number | undefined)[]) => times.map((at, i) => ({ at, item: at ?? `bad${i}` }))
const items = (released: { item: unknown }[]) => released.map((r) => r.item)

describe('InputAlignment', () => {
  it('holds a sparse stream that runs ahead until the dense one catches up, and releases in event-time order', () => {
    const a = new InputAlignment<number | string>(15_000)
    a.assign([
      { key: 'tx', backlog: true },
      { key: 'life', backlog: true },
    ])
    // The dense stream reports first: the sparse one has not said where it is, so nothing goes yet.
    a.add('tx', batch(0, 1000, 2000), false)
    expect(a.release()).toEqual([])
    // The sparse stream's batch spans days: what the dense one has reached goes, merged by time.
    a.add('life', batch(500, 10_000, DAY, 2 * DAY), true)
    expect(a.heldCount()).toBe(7)
    expect(items(a.release())).toEqual([0, 500, 1000, 2000, 10_000])
    expect(a.heldCount()).toBe(2)
    expect([a.holding('tx'), a.holding('life')]).toEqual([false, true])
    // The dense stream's next batch reaches the sparse stream's next event, less the drift.
    a.add('tx', batch(DAY - 20_000, DAY - 10_000), false)
    expect(items(a.release())).toEqual([DAY - 20_000, DAY - 10_000, DAY])
    expect(a.caughtUp()).toBe(false)
  })

  it('lets a partition with no backlog hold nobody back, and releases bad input as soon as it is first in line', () => {
    const a = new InputAlignment<number | string>(0)
    a.assign([
      { key: 'tx', backlog: true },
      { key: 'app', backlog: false },
    ])
    a.add('tx', batch(5, undefined, 7), true)
    expect(items(a.release())).toEqual([5, 'bad1', 7])
    expect(a.caughtUp()).toBe(true)
    // Both drained: the live pipeline forwards everything as it comes.
    a.add('app', batch(DAY), true)
    a.add('tx', batch(2 * DAY), true)
    expect(items(a.release())).toEqual([DAY, 2 * DAY])
  })

  it('gives back what could not be forwarded, to go first next time', () => {
    const a = new InputAlignment<number | string>(0)
    a.assign([
      { key: 'tx', backlog: false },
      { key: 'app', backlog: false },
    ])
    a.add('tx', batch(1, 3), true)
    a.add('app', batch(2), true)
    const released = a.release()
    expect(items(released)).toEqual([1, 2, 3])
    a.restore(released)
    expect([a.holding('tx'), a.holding('app')]).toEqual([true, true])
    a.add('app', batch(4), true)
    expect(items(a.release())).toEqual([1, 2, 3, 4])
  })

  it('stops waiting for a partition that never reports after the grace period', () => {
    let now = 0
    const a = new InputAlignment<number | string>(0, () => now, 10_000)
    a.assign([
      { key: 'tx', backlog: true },
      { key: 'silent', backlog: true },
    ])
    a.add('tx', batch(1, 2), false)
    expect(a.release()).toEqual([])
    now = 10_001
    expect(items(a.release())).toEqual([1, 2])
  })

  it('forwards every event, in each partition’s order and none more than the drift behind one forwarded before it', () => {
    const partition = fc.array(fc.integer({ min: 0, max: 3 * DAY }), { minLength: 1, maxLength: 40 }).map((ts) => ts.sort((x, y) => x - y))
    fc.assert(
      fc.property(
        fc.array(partition, { minLength: 1, maxLength: 5 }),
        fc.integer({ min: 0, max: DAY }),
        fc.infiniteStream(fc.integer({ min: 1, max: 12 })),
        fc.infiniteStream(fc.nat()),
        (partitions, drift, batchSizes, picks) => {
          const a = new InputAlignment<[number, number]>(drift)
          a.assign(partitions.map((_, i) => ({ key: String(i), backlog: true })))
          const fetched = partitions.map(() => 0)
          const forwarded: [number, number][] = []
          const sizes = batchSizes[Symbol.iterator]()
          const order = picks[Symbol.iterator]()
          const total = partitions.flat().length
          for (let round = 0; round < 10_000 && forwarded.length < total; round++) {
            // One fetch: every partition holding nothing and not drained returns a batch, taken in some order.
            const due = partitions.map((_, i) => i).filter((i) => !a.holding(String(i)) && fetched[i] < partitions[i].length)
            expect(due.length).toBeGreaterThan(0) // otherwise nothing would ever move again
            while (due.length) {
              const i = due.splice(order.next().value % due.length, 1)[0]
              const times = partitions[i].slice(fetched[i], fetched[i] + sizes.next().value)
              fetched[i] += times.length
              a.add(String(i), times.map((at, k) => ({ at, item: [i, fetched[i] - times.length + k] })), fetched[i] === partitions[i].length)
              forwarded.push(...a.release().map((r) => r.item))
            }
          }
          expect(forwarded.length).toBe(total)
          partitions.forEach((_, i) => expect(forwarded.filter(([p]) => p === i).map(([, k]) => k)).toEqual(partitions[i].map((_, k) => k)))
          let newest = -Infinity
          for (const [i, k] of forwarded) {
            const t = partitions[i][k]
            expect(t).toBeGreaterThanOrEqual(newest - drift)
            newest = Math.max(newest, t)
          }
        },
      ),
      { numRuns: 300 },
    )
  })
})
