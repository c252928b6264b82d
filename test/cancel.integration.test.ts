import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Admin, Producer } from 'kafkajs'
import type { RunningPipeline } from '../commands/run.ts'
import { createTopics, freshTopics, kafka, testCatalogYaml, uniqueId, waitFor, webhookReceiver, startTestPipeline } from './helpers/services.ts'

/**
 * A touchpoint waiting for the end of quiet hours is cancelled when its goal is reached, on the
 * live pipeline: real Kafka, Redis (the commit script), embedded ClickHouse and an HTTP receiver.
 */

const HOUR = 3_600_000
const id = uniqueId()
const topics = freshTopics(`cx-${id}`)
const dir = mkdtempSync(join(tmpdir(), 'cardpulse-cancel-'))
const catalogFile = join(dir, 'catalog.yaml')
// Quiet hours from the start of the current hour in Shanghai for two hours: a decision now waits.
const localHour = (new Date().getUTCHours() + 8) % 24
const hh = (h: number) => `"${String(h % 24).padStart(2, '0')}:00"`
writeFileSync(catalogFile, testCatalogYaml({ quietHours: `{ start: ${hh(localHour)}, end: ${hh(localHour + 2)} }` }))

let admin: Admin
let producer: Producer
let receiver: Awaited<ReturnType<typeof webhookReceiver>>
let startedAt: number
let pipeline: RunningPipeline

const iso = (ms: number) => new Date(ms).toISOString()
const lifecycle = (customerId: string, stage: string, at: number) => ({
  type: 'lifecycle',
  eventId: `${customerId}-${stage}-${(at / 1000).toString(36)}`,
  occurredAt: iso(at),
  customerId,
  cardId: `tok_${customerId}`,
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
  // Approved 80 h ago: the reminder is decided at the start, in quiet hours, and waits in Redis.
  // Waiting in the topic when the pipeline starts: sent later, once its sources are idle and its
  // clock is the wall clock, an event that old would be late.
  startedAt = Date.now()
  await producer.send({ topic: topics.lifecycleTopic, messages: [{ key: 'cust_wait', value: JSON.stringify(lifecycle('cust_wait', 'approved', startedAt - 80 * HOUR)) }] })
  pipeline = await startTestPipeline({
    redisPrefix: `cp-cx-${id}`,
    groupId: `g-cx-${id}`,
    ...topics,
    partitions: '2',
    catalogFile,
    webhookUrl: `${receiver.url}/hooks`,
    clickhouseDatabase: `cp_cx_${id}`,
    dataDir: join(dir, 'data'),
  })
})

afterAll(async () => {
  await pipeline?.stop()
  await producer?.disconnect()
  await admin?.disconnect()
  await receiver?.close()
})

describe('cancelling a waiting touchpoint on the live pipeline', () => {
  it('cancels a quiet-hours reminder once the card is activated: no webhook, a cancelled delivery row, counted', async () => {
    const now = startedAt
    const db = pipeline.clickhouse.database
    const [decision] = await waitFor('the reminder decision', async () => {
      const d = await pipeline.clickhouse.query<{ id: string; outcome: string; send_at: string }>(`SELECT id, outcome, toUnixTimestamp64Milli(send_at) AS send_at FROM ${db}.decisions FINAL WHERE customer_id = 'cust_wait'`)
      return d.length === 1 && d
    })
    expect(decision.outcome).toBe('send')
    expect(Number(decision.send_at)).toBeGreaterThan(Date.now())
    const waiting = async () => (await Promise.all(pipeline.partitions().map((p) => pipeline.store.dueWebhooks(p, Infinity, 100)))).flat().map((w) => w.decision.id)
    expect(await waiting()).toEqual([decision.id])

    // Activated now: the goal is reached while the reminder waits.
    const activated = lifecycle('cust_wait', 'activated', Date.now())
    await producer.send({ topic: topics.lifecycleTopic, messages: [{ key: 'cust_wait', value: JSON.stringify(activated) }] })
    const [row] = await waitFor('the cancelled delivery row', async () => {
      const r = await pipeline.clickhouse.query<{ decision_id: string; status: string; cancel_reason: string; cancelled_by: string; attempts: number; channel: string }>(
        `SELECT decision_id, status, cancel_reason, cancelled_by, attempts, channel FROM ${db}.deliveries FINAL WHERE customer_id = 'cust_wait'`,
      )
      return r.length === 1 && r
    })
    expect(row).toMatchObject({ decision_id: decision.id, status: 'cancelled', cancel_reason: 'goal_reached', cancelled_by: activated.eventId, channel: 'push' })
    expect(await waiting()).toEqual([])
    expect(receiver.received).toEqual([])

    const metrics = await (await fetch(`http://127.0.0.1:${pipeline.port}/metrics`)).text()
    expect(metrics).toMatch(/cardpulse_webhook_deliveries_total\{status="cancelled",channel="push"\} 1/)
    const health = await (await fetch(`http://127.0.0.1:${pipeline.port}/api/analytics/deliveryHealth`)).json()
    expect(health).toEqual([expect.objectContaining({ channel: 'push', deliveries: 1, delivered: 0, cancelled: 1 })])
    // `explain` says why it never went out.
    const explained = await (await fetch(`http://127.0.0.1:${pipeline.port}/api/customers/cust_wait/explain`)).json()
    expect(JSON.stringify(explained)).toContain(`goal reached (${activated.eventId})`)
  })
})
