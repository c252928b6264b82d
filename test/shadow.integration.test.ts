import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Admin, Producer } from 'kafkajs'
import type { RunningPipeline } from '../commands/run.ts'
import { createTopics, freshTopics, kafka, testCatalogYaml, uniqueId, waitFor, webhookReceiver, startTestPipeline } from './helpers/services.ts'

/**
 * A shadow catalogue on the live pipeline (real Kafka, Redis, embedded ClickHouse, an HTTP
 * receiver): its decisions land in shadow_decisions, none reaches the receiver or the outbox, and
 * a changed draft file is reloaded.
 */

const HOUR = 3_600_000
const id = uniqueId()
const topics = freshTopics(`sh-${id}`)
const dir = mkdtempSync(join(tmpdir(), 'cardpulse-shadow-'))
const catalogFile = join(dir, 'catalog.yaml')
const shadowFile = join(dir, 'draft.yaml')
writeFileSync(catalogFile, testCatalogYaml())
// The draft sends the reminder by SMS only, at a price: the live catalogue's channels are [sms, push].
const draft = (version: string) => testCatalogYaml({ version }).replace('channels: [sms, push]', 'channels: [sms]') + 'economics: { channelCost: { sms: 0.5 } }\n'
writeFileSync(shadowFile, draft('draft-1'))

let admin: Admin
let producer: Producer
let receiver: Awaited<ReturnType<typeof webhookReceiver>>
let startedAt: number
let pipeline: RunningPipeline

const iso = (ms: number) => new Date(ms).toISOString()
const approved = (customerId: string, at: number) => ({
  type: 'lifecycle',
  eventId: `${customerId}-approved-${(at / 1000).toString(36)}`,
  occurredAt: iso(at),
  customerId,
  cardId: `tok_${customerId}`,
  stage: 'approved',
})

beforeAll(async () => {
  const k = kafka()
  admin = k.admin()
  await admin.connect()
  await createTopics(admin, Object.values(topics))
  producer = k.producer()
  await producer.connect()
  receiver = await webhookReceiver()
  // Waiting in the topic when the pipeline starts: sent later, once its sources are idle and its
  // clock is the wall clock, an event that old would be late.
  startedAt = Date.now()
  await producer.send({ topic: topics.lifecycleTopic, messages: ['cust_s1', 'cust_s2'].map((c) => ({ key: c, value: JSON.stringify(approved(c, startedAt - 80 * HOUR)) })) })
  pipeline = await startTestPipeline({
    redisPrefix: `cp-sh-${id}`,
    groupId: `g-sh-${id}`,
    ...topics,
    partitions: '2',
    catalogFile,
    shadowCatalog: shadowFile,
    webhookUrl: `${receiver.url}/hooks`,
    clickhouseDatabase: `cp_sh_${id}`,
    dataDir: join(dir, 'data'),
  })
})

afterAll(async () => {
  await pipeline?.stop()
  await producer?.disconnect()
  await admin?.disconnect()
  await receiver?.close()
})

describe('a shadow catalogue on the live pipeline', () => {
  it('records the draft\'s decisions beside the live ones and sends only the live ones', async () => {
    const now = startedAt
    const db = pipeline.clickhouse.database
    const rows = await waitFor('live and shadow decisions', async () => {
      const live = await pipeline.clickhouse.query<{ id: string; channel: string; catalog_version: string }>(`SELECT id, channel, catalog_version FROM ${db}.decisions FINAL ORDER BY id`)
      const shadow = await pipeline.clickhouse.query<{ id: string; channel: string; catalog_version: string; channel_cost: number }>(
        `SELECT id, channel, catalog_version, channel_cost FROM ${db}.shadow_decisions FINAL ORDER BY id`,
      )
      return live.length === 2 && shadow.length === 2 && { live, shadow }
    })
    expect(rows.shadow.map((r) => r.id)).toEqual(rows.live.map((r) => r.id))
    expect(rows.live.map((r) => [r.channel, r.catalog_version])).toEqual([['push', 'test-1'], ['push', 'test-1']])
    expect(rows.shadow.map((r) => [r.channel, r.catalog_version, r.channel_cost])).toEqual([['sms', 'draft-1', 0.5], ['sms', 'draft-1', 0.5]])

    await waitFor('two webhooks', () => receiver.received.length >= 2)
    await new Promise((r) => setTimeout(r, 1500)) // nothing else may follow
    expect(receiver.received.map((h) => [h.body.channel, h.path])).toEqual([['push', '/hooks'], ['push', '/hooks']])
    const deliveries = await waitFor('deliveries', async () => {
      const d = await pipeline.clickhouse.query<{ decision_id: string }>(`SELECT decision_id FROM ${db}.deliveries FINAL`)
      return d.length === 2 && d
    })
    expect(deliveries).toHaveLength(2)
    const pending = (await Promise.all(pipeline.partitions().map((p) => pipeline.store.dueWebhooks(p, Infinity, 100)))).flat()
    expect(pending).toEqual([])

    const metrics = await (await fetch(`http://127.0.0.1:${pipeline.port}/metrics`)).text()
    expect(metrics).toMatch(/cardpulse_shadow_decisions_total\{trigger="activation_reminder",outcome="send",suppressed_by=""\} 2/)
    expect(metrics).toMatch(/cardpulse_decisions_total\{trigger="activation_reminder",outcome="send",suppressed_by=""\} 2/)
    const comparison = await (await fetch(`http://127.0.0.1:${pipeline.port}/api/analytics/shadow`)).json()
    expect(comparison).toEqual([
      { variant: 'live', catalogVersion: 'test-1', trigger: 'activation_reminder', outcome: 'send', suppressedBy: '', decisions: 2, predictedChannelCost: 0 },
      { variant: 'shadow', catalogVersion: 'draft-1', trigger: 'activation_reminder', outcome: 'send', suppressedBy: '', decisions: 2, predictedChannelCost: 1 },
    ])
  })

  it('reloads a changed draft file', async () => {
    // A live event (an 80-hour-old one would now be behind the watermark): the live catalogue reminds after 2 s.
    writeFileSync(catalogFile, testCatalogYaml({ version: 'test-2' }).replace('delay: 72h', 'delay: 2s'))
    writeFileSync(shadowFile, draft('draft-2'))
    await new Promise((r) => setTimeout(r, 2500)) // both files are polled every second
    await producer.send({ topic: topics.lifecycleTopic, messages: [{ key: 'cust_r', value: JSON.stringify(approved('cust_r', Date.now())) }] })
    const db = pipeline.clickhouse.database
    const [row] = await waitFor('the shadow decision under the reloaded draft', async () => {
      const rows = await pipeline.clickhouse.query<{ catalog_version: string }>(`SELECT catalog_version FROM ${db}.shadow_decisions FINAL WHERE customer_id = 'cust_r'`)
      return rows.length > 0 && rows
    })
    expect(row.catalog_version).toBe('draft-2')
  })
})
