import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Admin, Producer } from 'kafkajs'
import type { RunningPipeline } from '../commands/run.ts'
import { kafka, createTopics, freshTopics, testCatalogYaml, uniqueId, waitFor, webhookReceiver, startTestPipeline } from './helpers/services.ts'

/** The live pipeline on the real Kafka broker, Redis and embedded ClickHouse, end to end. */

const HOUR = 3_600_000
const id = uniqueId()
const topics = freshTopics(`t-${id}`)
const dir = mkdtempSync(join(tmpdir(), 'cardpulse-it-'))
const catalogFile = join(dir, 'catalog.yaml')
writeFileSync(catalogFile, testCatalogYaml())

let admin: Admin
let producer: Producer
let receiver: Awaited<ReturnType<typeof webhookReceiver>>
let pipeline: RunningPipeline
const now = Date.now()

const iso = (ms: number) => new Date(ms).toISOString()
// Event ids carry no bare 13+ digit numbers: the edge would take such a run for a card number.
const lifecycle = (customerId: string, cardId: string, stage: string, at: number, eventId = `${customerId}-${stage}-${(at / 1000).toString(36)}`) => ({
  type: 'lifecycle',
  eventId,
  occurredAt: iso(at),
  customerId,
  cardId,
  stage,
})

beforeAll(async () => {
  const k = kafka()
  admin = k.admin()
  await admin.connect()
  await createTopics(admin, Object.values(topics))
  producer = k.producer()
  await producer.connect()
  receiver = await webhookReceiver()
  // A backlog from before the start: once every input partition is read to its end and idle, event
  // time follows the wall clock, and an 80-hour-old event sent after that would be late.
  await producer.send({
    topic: topics.lifecycleTopic,
    messages: [
      // Not activated 72 h after approval: a reminder is due 8 h ago.
      { key: 'cust_late', value: JSON.stringify({ ...lifecycle('cust_late', 'tok_late', 'approved', now - 80 * HOUR), profile: { preferredChannel: 'sms' } }) },
      // Activated in time: no reminder.
      { key: 'cust_ok', value: JSON.stringify(lifecycle('cust_ok', 'tok_ok', 'approved', now - 80 * HOUR)) },
      { key: 'cust_ok', value: JSON.stringify(lifecycle('cust_ok', 'tok_ok', 'activated', now - 79 * HOUR)) },
      // Unkeyed input is still processed per customer.
      { value: JSON.stringify(lifecycle('cust_unkeyed', 'tok_u', 'issued', now - 75 * HOUR)) },
      // Bad input of several kinds.
      { key: 'x', value: '{"type":"lifecycle",' },
      { key: 'x', value: JSON.stringify({ ...lifecycle('cust_pan', '4111111111111111', 'approved', now) }) },
      { key: 'x', value: JSON.stringify({ ...lifecycle('cust_bad', 'tok', 'exploded', now) }) },
    ],
  })
  pipeline = await startTestPipeline({
    redisPrefix: `cp-it-${id}`,
    groupId: `g-${id}`,
    ...topics,
    partitions: '3',
    // On threads whatever the machine: a catalogue reloaded on the main thread must reach them.
    stateThreads: '2',
    catalogFile,
    webhookUrl: `${receiver.url}/hooks`,
    webhookUrlSms: `${receiver.url}/sms`,
    clickhouseDatabase: `cp_it_${id}`,
    dataDir: join(dir, 'data'),
  })
})

afterAll(async () => {
  await pipeline?.stop()
  await producer?.disconnect()
  await admin?.disconnect()
  await receiver?.close()
})

describe('cardpulse run on Kafka + Redis + ClickHouse', () => {
  it('fires activation_reminder as a signed webhook, records it in ClickHouse, and dead-letters bad input', async () => {
    const hooks = await waitFor('two webhooks', () => receiver.received.length >= 2 && receiver.received)
    await new Promise((r) => setTimeout(r, 1500)) // nothing else may follow
    expect(receiver.received).toHaveLength(2)
    const byCustomer = Object.fromEntries(hooks.map((h) => [h.body.customerId, h]))
    expect(Object.keys(byCustomer).sort()).toEqual(['cust_late', 'cust_unkeyed'])

    const late = byCustomer.cust_late
    expect(late.verified).toBe(true)
    expect(late.path).toBe('/sms')
    expect(late.headers['content-type']).toBe('application/json')
    expect(late.headers['idempotency-key']).toBe(late.body.id)
    expect(late.headers['x-cardpulse-signature']).toMatch(/^v1=[0-9a-f]{64}$/)
    expect(late.body).toMatchObject({
      trigger: 'activation_reminder',
      customerId: 'cust_late',
      cardId: 'tok_late',
      channel: 'sms',
      eventTime: iso(now - 8 * HOUR),
      group: 'treatment',
      attributionWindowDays: 7,
      offer: { code: 'ACTIVATE50', value: 50, currency: 'CNY' },
      reason: { approvedAt: iso(now - 80 * HOUR), hoursWithoutActivation: 72 },
    })
    expect(byCustomer.cust_unkeyed.path).toBe('/hooks') // push has no URL of its own: the default one

    const db = pipeline.clickhouse.database
    const rows = await waitFor('decision and delivery rows', async () => {
      const d = await pipeline.clickhouse.query<{ id: string; outcome: string; customer_id: string }>(`SELECT id, outcome, customer_id FROM ${db}.decisions FINAL ORDER BY customer_id`)
      const del = await pipeline.clickhouse.query<{ decision_id: string; status: string }>(`SELECT decision_id, status FROM ${db}.deliveries FINAL`)
      return d.length === 2 && del.length === 2 && { d, del }
    })
    expect(rows.d.map((r) => [r.customer_id, r.outcome])).toEqual([
      ['cust_late', 'send'],
      ['cust_unkeyed', 'send'],
    ])
    expect(rows.d.find((r) => r.customer_id === 'cust_late')!.id).toBe(late.body.id)
    expect(rows.del.every((r) => r.status === 'delivered')).toBe(true)

    // Every bad message is on the dead-letter topic and in ClickHouse, PANs masked.
    const dead = await waitFor('dead letters in ClickHouse', async () => {
      const q = await pipeline.clickhouse.query<{ code: string; original: string }>(`SELECT code, original FROM ${db}.dead_letters FINAL ORDER BY code`)
      return q.length === 3 && q
    })
    expect(dead.map((q) => q.code)).toEqual(['invalid_json', 'pan_detected', 'schema_violation'])
    expect(JSON.stringify(dead)).not.toContain('4111111111111111')
    expect(dead.find((q) => q.code === 'pan_detected')!.original).toContain('************1111')

    const consumer = kafka().consumer({ groupId: `read-dlq-${id}` })
    await consumer.connect()
    await consumer.subscribe({ topic: topics.dlqTopic, fromBeginning: true })
    const onTopic: Record<string, unknown>[] = []
    await consumer.run({ eachMessage: async ({ message }) => void onTopic.push(JSON.parse(message.value!.toString())) })
    await waitFor('dead letters on the topic', () => onTopic.length >= 3)
    await consumer.disconnect()
    expect(onTopic.map((q: any) => q.error.code).sort()).toEqual(['invalid_json', 'pan_detected', 'schema_violation'])
    expect(onTopic.every((q: any) => q.source.topic === topics.lifecycleTopic && typeof q.source.offset === 'string')).toBe(true)
  })

  it('serves health, metrics and the dashboard summary', async () => {
    const base = `http://127.0.0.1:${pipeline.port}`
    expect((await fetch(`${base}/healthz`)).status).toBe(200)
    const metrics = await (await fetch(`${base}/metrics`)).text()
    expect(metrics).toMatch(/cardpulse_decisions_total\{trigger="activation_reminder",outcome="send",suppressed_by=""\} 2/)
    const summary = await (await fetch(`${base}/api/summary`)).json()
    expect(summary.mode).toBe('run')
    expect(summary.decisions).toContainEqual(expect.objectContaining({ trigger: 'activation_reminder', outcome: 'send', n: 2 }))
  })

  it('reloads the catalogue over HTTP, keeping the old one when the new one is bad', async () => {
    const base = `http://127.0.0.1:${pipeline.port}`
    writeFileSync(catalogFile, 'version: "broken"\ntriggers: { activation_reminder: { attributionWindow: soon } }')
    const bad = await fetch(`${base}/api/catalog/reload`, { method: 'POST' })
    expect(bad.status).toBe(422)
    expect((await bad.json()).error).toMatch(/attributionWindow: "soon" is not a duration/)

    writeFileSync(catalogFile, testCatalogYaml({ version: 'test-2' }).replace('delay: 72h', 'delay: 2s'))
    const good = await fetch(`${base}/api/catalog/reload`, { method: 'POST' })
    expect(await good.json()).toEqual({ ok: true, version: 'test-2' })

    // A live event (an 80-hour-old one would now be behind the watermark): reminded 2 s later.
    await producer.send({ topic: topics.lifecycleTopic, messages: [{ key: 'cust_v2', value: JSON.stringify(lifecycle('cust_v2', 'tok_v2', 'approved', Date.now())) }] })
    const db = pipeline.clickhouse.database
    const row = await waitFor('a decision under the new catalogue', async () => {
      const r = await pipeline.clickhouse.query<{ catalog_version: string }>(`SELECT catalog_version FROM ${db}.decisions FINAL WHERE customer_id = 'cust_v2'`)
      return r[0]
    })
    expect(row.catalog_version).toBe('test-2')
  })
})
