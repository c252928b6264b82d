import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import YAML from 'yaml'
import type { Admin, Producer } from 'kafkajs'
import { startPipeline, type RunningPipeline } from '../pipeline/run.ts'
import { RunConfig, parseConfig } from '../pipeline/config.ts'
import { createLogger } from '../pipeline/log.ts'
import { DEFAULT_CATALOG_FILE, loadCatalogFile } from '../pipeline/catalog/index.ts'
import { EmbeddedPipeline } from '../pipeline/embedded.ts'
import { simulateBank, fraudScenarios } from '../simulator/bank.ts'
import type { Decision } from '../schemas/decision.ts'
import type { RiskAlert } from '../schemas/alert.ts'
import type { InputEvent } from '../schemas/events.ts'
import { KAFKA_BROKERS, REDIS_URL, WEBHOOK_SECRET, createTopics, kafka, uniqueId, waitFor, webhookReceiver } from './helpers/services.ts'

/**
 * The same events through `cardpulse run` (real Kafka, Redis, ClickHouse engine) and through the
 * embedded replay must give the same decisions and alerts, with the same ids. The events arrive
 * at the live pipeline out of order (three topics, several partitions, an extra re-keying hop),
 * so this is also the proof that order within the allowed lateness does not change results.
 */

const DAY = 86_400_000
const LATENESS = '40d'
const id = uniqueId()
const topics = {
  transactionsTopic: `v-${id}.transactions`,
  appEventsTopic: `v-${id}.app-events`,
  lifecycleTopic: `v-${id}.lifecycle`,
  dlqTopic: `v-${id}.dlq`,
  alertTopic: `v-${id}.alerts`,
  eventsTopic: `v-${id}.events`,
}
const dir = mkdtempSync(join(tmpdir(), 'cardpulse-vs-'))
const catalogFile = join(dir, 'catalog.yaml')

// Live decisions are dated by the wall clock: a TTL longer than the scenario keeps them from
// expiring, and no quiet hours keeps sendAt out of the comparison.
const raw = YAML.parse(readFileSync(DEFAULT_CATALOG_FILE, 'utf8'))
raw.policy = { ...raw.policy, ttl: '1000d', quietHours: null }
writeFileSync(catalogFile, YAML.stringify(raw))
const catalog = loadCatalogFile(catalogFile)

// 45 days of a small bank, ending 41 days ago: the live watermark (wall clock − lateness) passes
// every event, so every timer due by the last event fires in both pipelines.
const simulated = simulateBank({ customers: 80, days: 45, start: new Date(0), seed: 11 })
const scenarioEvents = [...simulated, ...fraudScenarios(new Date(30 * DAY), 6)].sort((a, b) => (a.occurredAt < b.occurredAt ? -1 : a.occurredAt > b.occurredAt ? 1 : 0))
const shift = Date.now() - 41 * DAY - Date.parse(scenarioEvents[scenarioEvents.length - 1].occurredAt)
const events: InputEvent[] = scenarioEvents.map((e) => ({ ...e, occurredAt: new Date(Date.parse(e.occurredAt) + shift).toISOString() }))
const lastEventTime = Date.parse(events[events.length - 1].occurredAt)

let admin: Admin
let producer: Producer
let receiver: Awaited<ReturnType<typeof webhookReceiver>>
let pipeline: RunningPipeline

beforeAll(async () => {
  admin = kafka().admin()
  await admin.connect()
  await createTopics(admin, Object.values(topics), 3)
  producer = kafka().producer()
  await producer.connect()
  receiver = await webhookReceiver()
  pipeline = await startPipeline(
    parseConfig(RunConfig, {
      kafkaBrokers: KAFKA_BROKERS,
      redisUrl: REDIS_URL,
      redisPrefix: `cp-vs-${id}`,
      groupId: `g-${id}`,
      ...topics,
      httpPort: '0',
      catalogFile,
      webhookUrl: `${receiver.url}/hooks`,
      webhookSecret: WEBHOOK_SECRET,
      allowedLateness: LATENESS,
      idleAdvance: '1s',
      clickhouseDatabase: `cp_vs_${id}`,
      dataDir: join(dir, 'data'),
    }),
    createLogger('warn'),
  )
})

afterAll(async () => {
  await pipeline?.stop()
  await producer?.disconnect()
  await admin?.disconnect()
  await receiver?.close()
})

const comparable = (d: Decision) => ({ id: d.id, trigger: d.trigger, customerId: d.customerId, cardId: d.cardId, outcome: d.outcome, suppressedBy: d.suppressedBy, channel: d.channel, eventTime: d.eventTime, reason: d.reason })
const byId = <T extends { id: string }>(list: T[]) => [...list].sort((a, b) => (a.id < b.id ? -1 : 1))

describe('cardpulse run and cardpulse replay', () => {
  it('make the same decisions and alerts, with the same ids', async () => {
    // Replay, in process.
    const replayed = { decisions: [] as Decision[], alerts: [] as RiskAlert[] }
    const engine = new EmbeddedPipeline({
      catalog: () => catalog,
      allowedLateness: 40 * DAY,
      outbox: { webhooks: false, alerts: false, rows: false },
      onOutput: (o) => {
        replayed.decisions.push(...o.decisions)
        replayed.alerts.push(...o.alerts)
      },
      onDeadLetter: () => {},
    })
    for (const event of events) await engine.push({ ok: true, event, at: Date.parse(event.occurredAt), source: { topic: 'replay', partition: 0, offset: '0' } })
    await engine.finish()
    expect(replayed.decisions.length).toBeGreaterThan(20)

    // Live, through Kafka: each stream on its own topic, keyed by customer.
    const topicOf = { transaction: topics.transactionsTopic, app: topics.appEventsTopic, lifecycle: topics.lifecycleTopic }
    for (let i = 0; i < events.length; i += 500) {
      const chunk = events.slice(i, i + 500)
      await producer.sendBatch({
        topicMessages: (['transaction', 'app', 'lifecycle'] as const).map((type) => ({
          topic: topicOf[type],
          messages: chunk.filter((e) => e.type === type).map((e) => ({ key: e.customerId, value: JSON.stringify(e) })),
        })),
      })
    }

    const db = pipeline.clickhouse.database
    const expectedDecisions = replayed.decisions.length
    const live = await waitFor(
      'the live decisions',
      async () => {
        const rows = await pipeline.clickhouse.query<{ n: string }>(`SELECT count() AS n FROM ${db}.decisions FINAL WHERE event_time <= fromUnixTimestamp64Milli(${lastEventTime})`)
        return Number(rows[0].n) >= expectedDecisions && rows
      },
      120_000,
      1000,
    )
    expect(live).toBeTruthy()
    await new Promise((r) => setTimeout(r, 2000)) // anything extra would land now

    const liveDecisions = (await pipeline.clickhouse.query<Record<string, string>>(`SELECT * FROM ${db}.decisions FINAL WHERE event_time <= fromUnixTimestamp64Milli(${lastEventTime})`)).map((r) => ({
      id: r.id,
      trigger: r.trigger,
      customerId: r.customer_id,
      cardId: r.card_id || undefined,
      outcome: r.outcome,
      suppressedBy: r.suppressed_by || undefined,
      channel: r.channel || undefined,
      eventTime: new Date(r.event_time.replace(' ', 'T') + 'Z').toISOString(),
      reason: JSON.parse(r.reason),
    }))
    expect(byId(liveDecisions)).toEqual(byId(replayed.decisions.map(comparable)))

    const liveAlerts = await pipeline.clickhouse.query<{ id: string; kind: string; customer_id: string; evidence: string }>(`SELECT id, kind, customer_id, evidence FROM ${db}.alerts FINAL`)
    expect(byId(liveAlerts.map((a) => ({ id: a.id, kind: a.kind, customerId: a.customer_id, evidence: JSON.parse(a.evidence) })))).toEqual(
      byId(replayed.alerts.map((a) => ({ id: a.id, kind: a.kind, customerId: a.customerId, evidence: a.evidence }))),
    )
  })
})
