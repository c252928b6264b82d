import { it, expect } from 'vitest'
import { PipelineHarness, defaultCatalogForTests } from './helpers/harness.ts'
import { OPERATORS } from '../operators/index.ts'
import { LIFECYCLE_OPERATORS } from '../operators/lifecycle/index.ts'
import { simulateBank, fraudScenarios } from '../simulator/bank.ts'
const DAY = 86400000, L = 2 * DAY
const byId = (ds: any[]) => [...ds].sort((a, b) => (a.id < b.id ? -1 : 1))
function rng(seed: number) { let a = seed; return () => { a = (a + 0x6d2b79f5) >>> 0; let t = a; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296 } }
it('bank', async () => {
  const sorted = [...simulateBank({ customers: 80, days: 45, start: new Date(0), seed: 11 }), ...fraudScenarios(new Date(30 * DAY), 6)].sort((a, b) => (a.occurredAt < b.occurredAt ? -1 : a.occurredAt > b.occurredAt ? 1 : 0)) as any[]
  const ops = process.env.ALLOPS ? OPERATORS : LIFECYCLE_OPERATORS
  for (const seed of [1, 2, 3]) {
    const r = rng(seed)
    // A day of event time at a time per topic, topics read in a random order per day.
    const readAt = new Map<string, number>()
    const arrival = sorted.map((e, i) => {
      const t = Date.parse(e.occurredAt)
      const key = `${e.customerId}/${e.type}`
      const k = Math.max(t + r() * (L - 1), readAt.get(key) ?? -Infinity)
      readAt.set(key, k)
      return { e, k, i }
    }).sort((x, y) => x.k - y.k || x.i - y.i).map((x) => x.e)
    const end = Date.parse(sorted[sorted.length - 1].occurredAt) + 40 * DAY
    const run = async (evs: any[]) => { const h = new PipelineHarness(defaultCatalogForTests(), { allowedLateness: L, operators: ops }); for (const e of evs) await h.send(e); await h.advanceTo(end); return h }
    const a = await run(sorted), b = await run(arrival)
    expect(b.deadLetters.length).toBe(0)
    const A = byId(a.decisions), B = byId(b.decisions)
    const ida = new Set(A.map((d) => d.id + JSON.stringify(d))), idb = new Set(B.map((d) => d.id + JSON.stringify(d)))
    const onlyA = A.filter((d) => !idb.has(d.id + JSON.stringify(d))), onlyB = B.filter((d) => !ida.has(d.id + JSON.stringify(d)))
    console.log(seed, A.length, B.length, 'onlySorted', onlyA.map((d) => [d.trigger, d.customerId, d.eventTime, d.outcome, d.suppressedBy]), 'onlyArrival', onlyB.map((d) => [d.trigger, d.customerId, d.eventTime, d.outcome, d.suppressedBy]))
  }
}, 300000)
