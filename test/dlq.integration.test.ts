import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Admin, Producer } from 'kafkajs'
import type { RunningPipeline } from '../commands/run.ts'
import { createLogger } from '../core/log.ts'
import { luhnValid } from '../pipeline/pan.ts'
import { MAX_ORIGINAL_BYTES } from '../pipeline/decode.ts'
import { DEFAULT_CATALOG_FILE } from '../pipeline/catalog/index.ts'
import { DeadLetter } from '../schemas/deadLetter.ts'
import { kafka, createTopics, freshTopics, testCatalogYaml, uniqueId, waitFor, webhookReceiver, startTestPipeline } from './helpers/services.ts'
import { leaksPan } from './helpers/leaks.ts'

/**
 * Dead letters of `cardpulse run` on the real Kafka broker and Redis: no card number in any of
 * them, none too large for the broker, each counted once.
 */

const id = uniqueId()
const topics = freshTopics(`dlq-${id}`)
const dir = mkdtempSync(join(tmpdir(), 'cardpulse-dlq-'))
const catalogFile = join(dir, 'catalog.yaml')
writeFileSync(catalogFile, testCatalogYaml())

/** The broker's default message limit (message.max.bytes); the dead-letter topic keeps it. */
const BROKER_LIMIT = 1_048_588
const PAN = '4539148803436467'
const written = [PAN, '4539 1488 0343 6467', 'ref 1234-4539-1488-0343-6467']

let admin: Admin
let producer: Producer
let receiver: Awaited<ReturnType<typeof webhookReceiver>>
let pipeline: RunningPipeline
const logs: string[] = []

const tx = (customerId: string, extra: Record<string, unknown> = {}) => ({
  type: 'transaction',
  eventId: `${customerId}-${uniqueId()}`,
  occurredAt: new Date().toISOString(),
  customerId,
  cardId: `tok_${customerId}`,
  amount: 42,
  status: 'approved',
  channel: 'pos',
  cardPresent: true,
  merchant: { id: 'm1', mcc: '5411', country: 'CN' },
  ...extra,
})
const notUtf8 = Buffer.from([0xff, 0xfe, 0xc3])

beforeAll(async () => {
  expect(luhnValid(PAN)).toBe(true)
  const k = kafka()
  admin = k.admin()
  await admin.connect()
  // One partition per input topic, so that later good events queue behind the bad ones. The
  // transactions topic takes messages larger than the broker's default limit, as a bank's may.
  await createTopics(admin, [topics.lifecycleTopic, topics.appEventsTopic], 1)
  await admin.createTopics({
    waitForLeaders: true,
    topics: [{ topic: topics.transactionsTopic, numPartitions: 1, configEntries: [{ name: 'max.message.bytes', value: String(4 << 20) }] }],
  })
  producer = k.producer()
  await producer.connect()
  receiver = await webhookReceiver()
  pipeline = await startTestPipeline(
    {
      redisPrefix: `cp-dlq-${id}`,
      groupId: `g-dlq-${id}`,
      ...topics,
      partitions: '3',
      catalogFile,
      webhookUrl: `${receiver.url}/hooks`,
      clickhouseDatabase: `cp_dlq_${id}`,
      dataDir: join(dir, 'data'),
      logLevel: 'info',
    },
    createLogger('info', 'json', { write: (line: string) => void logs.push(line) }),
  )
})

afterAll(async () => {
  await pipeline?.stop()
  await producer?.disconnect()
  await admin?.disconnect()
  await receiver?.close()
})

/** Every message of a topic, as stored. */
async function readAll(topic: string): Promise<Buffer[]> {
  const ends = await admin.fetchTopicOffsets(topic)
  const last = new Map(ends.filter((e) => BigInt(e.high) > BigInt(e.low)).map((e) => [e.partition, BigInt(e.high) - 1n]))
  const values: Buffer[] = []
  if (!last.size) return values
  const consumer = kafka().consumer({ groupId: `read-${uniqueId()}`, maxBytesPerPartition: 8 << 20 })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  const done = new Set<number>()
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      values.push(message.value ?? Buffer.alloc(0))
      if (BigInt(message.offset) >= last.get(partition)!) done.add(partition)
    },
  })
  await waitFor(`all of ${topic}`, () => done.size === last.size)
  await consumer.disconnect()
  return values
}

const db = () => pipeline.clickhouse.database
const deadLetterRows = () => pipeline.clickhouse.query<Record<string, unknown>>(`SELECT * FROM ${db()}.dead_letters FINAL ORDER BY topic, toUInt64(offset)`)
const applied = async (type: string) =>
  Number((await pipeline.clickhouse.query<{ n: string }>(`SELECT sum(events) AS n FROM ${db()}.event_volume FINAL WHERE type = {type:String}`, { type }))[0]?.n ?? 0)

describe('dead letters of cardpulse run', () => {
  it('carry no card number: not on the dead-letter topic, not in ClickHouse, not in the logs', async () => {
    const bad = [
      // Not UTF-8: kept as base64, which the text masking never saw.
      ...written.map((pan) => Buffer.concat([Buffer.from(JSON.stringify(tx('cust_pan_bytes', { cardId: pan })).slice(0, -1) + ',"note":"'), notUtf8, Buffer.from('"}')])),
      // Over 64 KiB, in UTF-8 and not: the card number up front (kept) and at the end (cut away).
      Buffer.from(JSON.stringify(tx('cust_pan_big', { cardId: PAN, note: 'x'.repeat(100_000), last: written[1] }))),
      Buffer.concat([Buffer.from(`{"cardId":"${written[2]}","note":"`), Buffer.alloc(100_000, 0xff), Buffer.from(`${PAN}"}`)]),
      // Valid-looking events with a card number where a token belongs, or in a name.
      Buffer.from(JSON.stringify(tx('cust_pan_event', { cardId: PAN }))),
      Buffer.from(JSON.stringify(tx('cust_pan_event', { merchant: { id: 'm1', name: written[2], mcc: '5411', country: 'CN' } }))),
    ]
    await producer.send({ topic: topics.transactionsTopic, messages: [...bad.map((value) => ({ key: 'x', value })), { key: 'cust_good', value: JSON.stringify(tx('cust_good')) }] })

    const rows = await waitFor('the dead letters in ClickHouse', async () => {
      const q = await deadLetterRows()
      return q.length === bad.length && (await applied('transaction')) === 1 && q
    }, 40_000)
    expect(rows.map((q) => q.code)).toEqual(['pan_detected', 'pan_detected', 'pan_detected', 'too_large', 'too_large', 'pan_detected', 'pan_detected'])
    // The topic is partitioned by source coordinates: in source order again.
    const onTopic = (await readAll(topics.dlqTopic))
      .map((v) => DeadLetter.parse(JSON.parse(v.toString('utf8'))))
      .sort((a, b) => Number(a.source.offset) - Number(b.source.offset))
    expect(onTopic).toHaveLength(bad.length)
    // The dead letters are all there (else this test would prove nothing), masked (checked last).
    expect(onTopic.map((q) => q.originalEncoding)).toEqual(['base64', 'base64', 'base64', 'utf8', 'base64', 'utf8', 'utf8'])
    const originals = onTopic.map((q) => Buffer.from(q.original, q.originalEncoding).toString('latin1'))
    const outputs = {
      'dead-letter topic': (await readAll(topics.dlqTopic)).map((v) => v.toString('latin1')).join('\n'),
      'originals, decoded': originals.join('\n'),
      'internal events topic': (await readAll(topics.eventsTopic)).map((v) => v.toString('latin1')).join('\n'),
      'ClickHouse dead_letters': JSON.stringify(rows),
      'ClickHouse originals, decoded': rows.map((q) => Buffer.from(String(q.original), q.original_encoding === 'base64' ? 'base64' : 'utf8').toString('latin1')).join('\n'),
      logs: logs.join(''),
    }
    expect(logs.length).toBeGreaterThan(0)
    for (const [where, text] of Object.entries(outputs)) expect({ where, leaks: leaksPan(text, PAN) }).toEqual({ where, leaks: false })
    for (const original of originals) expect(original).toContain('************6467')
  }, 90_000)

  it('fit the broker even for a message at or over its limit, and the partition goes on', async () => {
    // Just under the limit, and all quotes: escaped whole in a dead letter, it would be half as
    // large again. Then one over the broker's default limit (its topic allows more), not UTF-8.
    const nearLimit = `{"type":"lifecycle","tags":[${'"a",'.repeat((BROKER_LIMIT - 2048 - 40) / 4)}"a"]}`
    expect(Buffer.byteLength(nearLimit)).toBeLessThan(BROKER_LIMIT - 1024)
    const overLimit = Buffer.concat([notUtf8, Buffer.alloc(1536 * 1024, 'z')])
    const lifecycle = { type: 'lifecycle', eventId: `after-${uniqueId()}`, occurredAt: new Date().toISOString(), customerId: 'cust_after', cardId: 'tok_after', stage: 'approved' }
    await producer.send({ topic: topics.lifecycleTopic, messages: [{ key: 'x', value: nearLimit }, { key: 'cust_after', value: JSON.stringify(lifecycle) }] })
    await producer.send({ topic: topics.transactionsTopic, messages: [{ key: 'x', value: overLimit }, { key: 'cust_after', value: JSON.stringify(tx('cust_after')) }] })

    // The good events behind the large ones are applied.
    await waitFor('the events after the large ones', async () => (await applied('lifecycle')) === 1 && (await applied('transaction')) === 2, 45_000)
    const big = (await readAll(topics.dlqTopic))
      .map((v) => DeadLetter.parse(JSON.parse(v.toString('utf8'))))
      .filter((q) => q.error.code === 'too_large' && q.originalBytes > 1 << 19)
      .sort((a, b) => a.source.topic.localeCompare(b.source.topic))
    expect(big.map((q) => [q.source.topic, q.originalBytes, q.originalTruncated, q.originalEncoding])).toEqual([
      [topics.lifecycleTopic, Buffer.byteLength(nearLimit), true, 'utf8'],
      [topics.transactionsTopic, overLimit.length, true, 'base64'],
    ])
    for (const q of big) {
      expect(Buffer.from(q.original, q.originalEncoding).length).toBeLessThanOrEqual(MAX_ORIGINAL_BYTES)
      expect(Buffer.byteLength(JSON.stringify(q))).toBeLessThan(BROKER_LIMIT / 8)
    }
    const rows = await waitFor('their rows in ClickHouse', async () => {
      const q = await pipeline.clickhouse.query<{ topic: string; original_bytes: string | number; original_truncated: number }>(
        `SELECT topic, original_bytes, original_truncated FROM ${db()}.dead_letters FINAL WHERE original_bytes > 524288 ORDER BY topic`,
      )
      return q.length === 2 && q
    })
    expect(rows.map((r) => [r.topic, Number(r.original_bytes), Boolean(r.original_truncated)])).toEqual([
      [topics.lifecycleTopic, Buffer.byteLength(nearLimit), true],
      [topics.transactionsTopic, overLimit.length, true],
    ])
  }, 120_000)

  it('are counted once each in /metrics', async () => {
    await producer.send({
      topic: topics.appEventsTopic,
      messages: [
        { key: 'x', value: '{"type":"app",' },
        { key: 'x', value: '{"type":"app",' },
        { key: 'x', value: JSON.stringify({ type: 'refund', eventId: 'r1', occurredAt: new Date().toISOString(), customerId: 'cust_m' }) },
      ],
    })
    const byCode = `SELECT code, count() AS n FROM ${db()}.dead_letters FINAL GROUP BY code ORDER BY code`
    await waitFor('the dead letters in ClickHouse', async () => {
      const q = await pipeline.clickhouse.query<{ n: string }>(`SELECT count() AS n FROM ${db()}.dead_letters FINAL WHERE topic = {topic:String}`, { topic: topics.appEventsTopic })
      return Number(q[0].n) === 3
    })
    // Both stages have seen them all by now; give the state stage's counting a moment all the same.
    await new Promise((r) => setTimeout(r, 1000))
    const rows = await pipeline.clickhouse.query<{ code: string; n: string }>(byCode)
    const total = rows.reduce((n, r) => n + Number(r.n), 0)
    const text = await (await fetch(`http://127.0.0.1:${pipeline.port}/metrics`)).text()
    const counted = Object.fromEntries([...text.matchAll(/^cardpulse_dead_letters_total\{code="(\w+)"\} (\d+)$/gm)].map((m) => [m[1], Number(m[2])]))
    expect(counted).toEqual(Object.fromEntries(rows.map((r) => [r.code, Number(r.n)])))
    expect(counted).toMatchObject({ invalid_json: 2, unknown_type: 1 })
    expect(text).toContain(`cardpulse_events_total{type="all",result="dead_letter"} ${total}\n`)
    expect(await readAll(topics.dlqTopic)).toHaveLength(total)
  })

  it('let no card number out anywhere, wherever it is planted: webhooks, alert topic, dead letters, ClickHouse, logs, metrics, explain', async () => {
    // The shipped catalogue, for its risk rules and the compliance notice.
    writeFileSync(catalogFile, readFileSync(DEFAULT_CATALOG_FILE, 'utf8'))
    expect((await (await fetch(`http://127.0.0.1:${pipeline.port}/api/catalog/reload`, { method: 'POST' })).json()).ok).toBe(true)
    const now = new Date().toISOString()
    const bases: Record<string, Record<string, unknown>> = {
      [topics.transactionsTopic]: { ...tx('cust_plant'), deviceId: 'd1', merchant: { id: 'm1', name: 'shop', mcc: '5411', city: 'Shanghai', country: 'CN', lat: 31.2, lon: 121.5 } },
      [topics.appEventsTopic]: { type: 'app', eventId: 'a1', occurredAt: now, customerId: 'cust_plant', name: 'login', deviceId: 'd1', attributes: { page: 'home' } },
      [topics.lifecycleTopic]: { type: 'lifecycle', eventId: 'l1', occurredAt: now, customerId: 'cust_plant', cardId: 'tok_plant', stage: 'approved', product: 'gold', attributes: { wallet: 'apple' }, profile: { homeCity: 'Shanghai', segment: 'young', tags: ['a'], timezone: 'Asia/Shanghai' } },
    }
    // Every field of every stream, one at a time: the card number as a string in each way it is
    // written, as a number, and as a key; and as the Kafka key of the message.
    const planted: { topic: string; key: string; value: string }[] = []
    const leaves = (v: unknown, path: string[]): string[][] => (v && typeof v === 'object' && !Array.isArray(v) ? Object.entries(v).flatMap(([k, c]) => leaves(c, [...path, k])) : [path])
    let n = 0
    for (const [topic, base] of Object.entries(bases)) {
      for (const path of leaves(base, [])) {
        for (const value of [...written, Number(PAN)]) {
          const event = structuredClone(base)
          let target = event as Record<string, unknown>
          for (const k of path.slice(0, -1)) target = target[k] as Record<string, unknown>
          target[path[path.length - 1]] = value
          planted.push({ topic, key: `plant-${n++}`, value: JSON.stringify({ ...event, eventId: path.join('.') === 'eventId' ? event.eventId : `plant-${n}` }) })
        }
      }
      planted.push({ topic, key: `plant-${n++}`, value: JSON.stringify({ ...base, eventId: `plant-${n}`, [PAN]: 1 }) })
      planted.push({ topic, key: PAN, value: JSON.stringify({ ...base, eventId: `plant-${n++}`, note: written[1] }) })
    }
    // A valid event beside them, so that the outputs are not empty: a barred merchant category
    // raises an alert and sends a compliance notice.
    const barred = tx('cust_plain', { merchant: { id: 'm_bet', mcc: '7995', country: 'CN' } })
    const byTopic = new Map<string, { key: string; value: string }[]>()
    for (const m of planted) byTopic.set(m.topic, [...(byTopic.get(m.topic) ?? []), { key: m.key, value: m.value }])
    await producer.sendBatch({ topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) })
    await producer.send({ topic: topics.transactionsTopic, messages: [{ key: 'cust_plain', value: JSON.stringify(barred) }] })

    await waitFor('every planted message dead-lettered', async () => {
      const q = await pipeline.clickhouse.query<{ n: string }>(`SELECT count() AS n FROM ${db()}.dead_letters FINAL WHERE startsWith(original, '{') AND position(original, '6467') > 0`)
      return Number(q[0].n) >= planted.length
    }, 60_000)
    const hook = await waitFor('the compliance notice', () => receiver.received.find((h) => h.body.customerId === 'cust_plain'))
    const alerts = await waitFor('the alert on its topic', async () => {
      const all = (await readAll(topics.alertTopic)).map((v) => v.toString('latin1'))
      return all.some((a) => a.includes('cust_plain')) && all
    })
    const tables = await pipeline.clickhouse.query<{ name: string }>(`SELECT name FROM system.tables WHERE database = {db:String}`, { db: db() })
    const clickhouse: string[] = []
    for (const { name } of tables) clickhouse.push(JSON.stringify(await pipeline.clickhouse.query(`SELECT * FROM ${db()}.\`${name}\``)))
    const base = `http://127.0.0.1:${pipeline.port}`
    const outputs = {
      webhooks: receiver.received.map((h) => JSON.stringify(h.headers) + h.raw).join('\n'),
      'alert topic': alerts.join('\n'),
      'dead-letter topic': (await readAll(topics.dlqTopic)).map((v) => v.toString('latin1')).join('\n'),
      'internal events topic': (await readAll(topics.eventsTopic)).map((v) => v.toString('latin1')).join('\n'),
      ClickHouse: clickhouse.join('\n'),
      logs: logs.join(''),
      metrics: await (await fetch(`${base}/metrics`)).text(),
      explain: (await Promise.all(['cust_plain', 'cust_plant'].map(async (c) => (await fetch(`${base}/api/customers/${c}/explain`)).text()))).join('\n'),
      'explain, asked with a card number': await (await fetch(`${base}/api/customers/${PAN}/explain`)).text(),
      summary: await (await fetch(`${base}/api/summary`)).text(),
    }
    expect(hook.body.trigger).toBe('compliance_notice')
    expect(clickhouse.join('').length).toBeGreaterThan(1000)
    for (const [where, text] of Object.entries(outputs)) expect({ where, leaks: leaksPan(text, PAN) }).toEqual({ where, leaks: false })
  }, 120_000)
})
