import { simulateBank } from '../simulator/bank.ts'
import { EmbeddedPipeline } from '../pipeline/embedded.ts'
import { loadCatalogFile } from '../pipeline/catalog/index.ts'
import { RedisStore } from '../pipeline/store/redis.ts'
import type { CustomerRecord } from '../pipeline/store/types.ts'
import { decodeRecord, encodeRecord, encodeRecordDeflated } from '../pipeline/store/codec.ts'

/**
 * Per-customer state after a simulated period: JSON bytes of each active customer's record (as
 * stored in Redis), and, with a Redis, the memory Redis reports for them.
 */
export async function benchStateSize(opts: { customers: number; days: number; seed: number; redisUrl?: string }) {
  const catalog = loadCatalogFile()
  const engine = new EmbeddedPipeline({
    catalog: () => catalog,
    maxDisorder: 300_000,
    outbox: { webhooks: false, alerts: false, rows: false },
    onOutput: () => {},
    onDeadLetter: () => {},
  })
  const events = simulateBank({ customers: opts.customers, days: opts.days, start: new Date(Date.UTC(2025, 9, 1)), seed: opts.seed })
  for (const event of events) await engine.push({ ok: true, event, at: Date.parse(event.occurredAt), source: { topic: 'bench', partition: 0, offset: '0' } })
  await engine.finish()
  const ids = [...new Set(events.map((e) => e.customerId))]
  const loaded = await engine.store.load(0, ids, -Infinity)
  const active = [...loaded.customers.values()].filter((r: CustomerRecord) => r.facts?.approved > 0)
  const stats = (sizes: number[]) => {
    sizes.sort((a, b) => a - b)
    const pct = (p: number) => sizes[Math.min(sizes.length - 1, Math.floor(p * sizes.length))] ?? 0
    return { median: pct(0.5), p90: pct(0.9), max: sizes[sizes.length - 1] ?? 0, customers: sizes.length }
  }
  const json = stats(active.map((r) => Buffer.byteLength(JSON.stringify(r))))
  const stored = stats(active.map((r) => encodeRecord(r).length))
  const deflated = stats(active.map((r) => encodeRecordDeflated(r).length))
  const codec = { compact: codecCost(active, encodeRecord), deflated: codecCost(active, encodeRecordDeflated) }

  let redis: { perCustomer: number } | undefined
  if (opts.redisUrl) {
    const prefix = `cardpulse-bench-${process.pid}`
    const store = await RedisStore.connect(opts.redisUrl, { prefix, readyTimeoutMs: 3000 }).catch(() => undefined)
    if (store) {
      const customers = new Map(active.map((r, i) => [`cust_${i}`, r]))
      await store.commit({ partition: 0, expectedOffset: null, offset: '1', watermark: 0, customers, timersSet: [], timersRemoved: [], webhooks: [], alerts: [], deadLetters: [], rows: [] })
      const client = store.redis as import('ioredis').Redis
      const key = `${prefix}:{${prefix}:p0}:customers`
      const usage = Number(await client.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'))
      redis = { perCustomer: Math.round(usage / Math.max(1, customers.size)) }
      await client.del(key, `${prefix}:{${prefix}:p0}:meta`)
      await store.close()
    }
  }
  return { json, stored, deflated, codec, redis }
}

/** Median µs to encode and to decode one record (each record timed over a few rounds, after a warm-up). */
function codecCost(records: CustomerRecord[], encode: (r: CustomerRecord) => Buffer) {
  for (const r of records) decodeRecord(encode(r))
  const enc: number[] = []
  const dec: number[] = []
  for (const r of records) {
    let t = process.hrtime.bigint()
    let b = encode(r)
    for (let i = 0; i < 4; i++) b = encode(r)
    enc.push(Number(process.hrtime.bigint() - t) / 5000)
    t = process.hrtime.bigint()
    for (let i = 0; i < 5; i++) decodeRecord(b)
    dec.push(Number(process.hrtime.bigint() - t) / 5000)
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0
  return { encodeUs: median(enc), decodeUs: median(dec) }
}
