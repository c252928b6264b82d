import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import type { Admin, Producer } from 'kafkajs'
import type { RunningPipeline } from '../commands/run.ts'
import { IngestStage } from '../pipeline/kafka/ingest.ts'
import { Instrumentation } from '../core/instrumentation.ts'
import { createLogger } from '../core/log.ts'
import type { RiskAlert } from '../schemas/alert.ts'
import { KAFKA_BROKERS, KAFKA_CLIENT, cancelledAmong, cancelledSoFar, createTopics, freshTopics, kafka, spawnRun, uniqueId, waitFor, webhookReceiver } from './helpers/services.ts'
import { createKafkaClient } from '../pipeline/kafka/client.ts'
import { bankEvents, catalogFile, counted, dir, endOfInput, expectSameAsReplay, feedWithLaggingLifecycle, replayed, startLive, type Topics } from './helpers/liveVsReplay.ts'

/**
 * Watermarks from the sources, on the real Kafka: the three streams produced live, the lifecycle
 * stream uploaded in batches and running behind the others in event time, give the decisions and
 * alerts `replay` gives for the same events, with no event late — the lagging source holds the
 * state stage's watermark back instead of having its events dropped. The same with the input
 * partitions shared by two ingest processes, and with the pipeline killed (SIGKILL) mid-stream.
 * SOURCE_IDLENESS is longer than the feed's pauses: the lifecycle system is live, only behind.
 */

const HOUR = 3_600_000
const MIN = 60_000
const events = bankEvents()
const lastEventTime = Date.parse(events[events.length - 1].occurredAt)
const FEED = { step: 6 * HOUR, lag: 20 * MIN, uploadEvery: 2 }
const LIVE_SOURCES = { sourceIdleness: '10m' }

let admin: Admin
let producer: Producer
let receiver: Awaited<ReturnType<typeof webhookReceiver>>
let expected: Awaited<ReturnType<typeof replayed>>
const cleanup: (() => Promise<unknown>)[] = []

beforeAll(async () => {
  admin = kafka().admin()
  await admin.connect()
  producer = kafka().producer()
  await producer.connect()
  receiver = await webhookReceiver()
  expected = await replayed(events)
})

afterAll(async () => {
  for (const fn of cleanup.reverse()) await fn().catch(() => {})
  await producer?.disconnect()
  await admin?.disconnect()
  await receiver?.close()
})

async function freshLive(name: string) {
  const id = uniqueId()
  const topics = freshTopics(`${name}-${id}`)
  await createTopics(admin, Object.values(topics), 3)
  return { id, topics }
}

const takenIn = (live: RunningPipeline) => async () => (await counted(live, 'applied')) + (await counted(live, 'late')) + (await counted(live, 'duplicate'))

async function feedAndCompare(live: RunningPipeline, topics: Topics) {
  await feedWithLaggingLifecycle(producer, topics, events, {
    ...FEED,
    afterStep: (_, sent) => waitFor(`${sent} events taken in`, async () => (await takenIn(live)()) >= sent, 60_000, 20).then(() => {}),
  })
  await endOfInput(producer, topics, lastEventTime)
  await expectSameAsReplay(live, expected, lastEventTime)
  expect(await counted(live, 'late')).toBe(0)
  expect(await counted(live, 'late_applied')).toBe(0)
}

describe('a lifecycle stream running minutes behind the others in event time', () => {
  it('holds decisions back until it has caught up: the same decisions and alerts as replay, none late', { timeout: 240_000 }, async () => {
    expect(expected.decisions.length).toBeGreaterThan(20)
    expect(expected.alerts.length).toBeGreaterThan(3)
    const { id, topics } = await freshLive('sw')
    const live = await startLive(id, topics, `${receiver.url}/hooks`, LIVE_SOURCES)
    cleanup.push(() => live.stop())
    await feedAndCompare(live, topics)
  })

  it('gives the same with the input partitions shared by two ingest processes', { timeout: 240_000 }, async () => {
    const { id, topics } = await freshLive('sw2')
    const live = await startLive(id, topics, `${receiver.url}/hooks`, LIVE_SOURCES)
    cleanup.push(() => live.stop())
    // A second ingest process in the same group: it takes part of the nine input partitions.
    const k = createKafkaClient({ kind: KAFKA_CLIENT, clientId: 'cardpulse-test', brokers: KAFKA_BROKERS.split(',') })
    const secondAdmin = await k.admin()
    const secondProducer = await k.producer({ idempotent: true })
    const second = new IngestStage({
      kafka: k,
      admin: secondAdmin,
      producer: secondProducer,
      topics,
      groupId: `g-${id}-ingest`,
      sessionTimeout: 30_000,
      maxDisorder: 0,
      sourceIdleness: 600_000,
      instrumentation: new Instrumentation(createLogger('warn')),
    })
    await second.start()
    cleanup.push(() => secondAdmin.close(), () => secondProducer.close(), () => second.stop())
    await waitFor('two ingest members with partitions', async () => {
      const { groups } = await admin.describeGroups([`g-${id}-ingest`])
      return groups[0].state === 'Stable' && groups[0].members.length === 2
    }, 60_000, 200)
    await feedAndCompare(live, topics)
  })
})

/** `cardpulse run` as its own process on these topics, waiting for the lagging source (SOURCE_IDLENESS 10 min). */
function startRun(topics: Topics, id: string): Promise<{ child: ChildProcess; port: number }> {
  return spawnRun(
    {
      TRANSACTIONS_TOPIC: topics.transactionsTopic,
      APP_EVENTS_TOPIC: topics.appEventsTopic,
      LIFECYCLE_TOPIC: topics.lifecycleTopic,
      DLQ_TOPIC: topics.dlqTopic,
      ALERT_TOPIC: topics.alertTopic,
      EVENTS_TOPIC: topics.eventsTopic,
      REDIS_PREFIX: `cp-swk-${id}`,
      GROUP_ID: `g-${id}`,
      CATALOG_FILE: catalogFile,
      WEBHOOK_URL: `${receiver.url}/hooks`,
      SOURCE_IDLENESS: '10m',
      IDLE_ADVANCE: '1000d',
      SESSION_TIMEOUT: '6s',
      CLICKHOUSE_DATABASE: `cp_swk_${id}`,
      DATA_DIR: join(dir, `data-${id}`),
    },
    (child) => cleanup.push(async () => child.exitCode === null && child.kill('SIGKILL')),
  )
}

const metric = async (port: number, result: string) => {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  return Number(new RegExp(`cardpulse_events_total\\{type="all",result="${result}"\\} (\\d+)`).exec(text)?.[1] ?? 0)
}

describe('the pipeline killed with SIGKILL mid-stream, the lifecycle stream behind', () => {
  it('ends with the decisions and alerts replay makes, none late', { timeout: 300_000 }, async () => {
    const { id, topics } = await freshLive('swk')
    // Alerts, and dead letters of either process (a late event's would be on the topic even if the process that found it was killed).
    const alerts = new Map<string, RiskAlert>()
    const deadLetterCodes: string[] = []
    const consumer = kafka().consumer({ groupId: `alerts-${id}` })
    await consumer.connect()
    await consumer.subscribe({ topics: [topics.alertTopic, topics.dlqTopic], fromBeginning: true })
    await consumer.run({
      eachMessage: async ({ topic, message }) => {
        const value = JSON.parse(message.value!.toString())
        if (topic === topics.alertTopic) alerts.set(value.id, value)
        else deadLetterCodes.push(value.error.code)
      },
    })
    cleanup.push(() => consumer.disconnect())

    const received = receiver.received.length
    let run = await startRun(topics, id)
    let killed = false
    await feedWithLaggingLifecycle(producer, topics, events, {
      ...FEED,
      afterStep: async (step) => {
        await new Promise((r) => setTimeout(r, 30))
        if (killed || step < 60) return
        // A third of the way in: killed with whatever it has fetched, held and half-committed.
        run.child.kill('SIGKILL')
        await new Promise((r) => run.child.once('exit', r))
        killed = true
        run = await startRun(topics, id)
      },
    })
    expect(killed).toBe(true)
    await endOfInput(producer, topics, lastEventTime)

    const sends = expected.decisions.filter((d) => d.outcome === 'send').map((d) => d.id)
    const ours = () => new Set(receiver.received.slice(received).filter((w) => Date.parse(w.body.eventTime as string) <= lastEventTime).map((w) => w.body.id as string))
    // A touchpoint still waiting when the goal is reached (or consent withdrawn, or a high alert raised) is cancelled, not sent.
    await waitFor('every webhook the replay sends, delivered or cancelled', async () => ours().size + (await cancelledSoFar(run.port, lastEventTime)) >= sends.length, 180_000, 500)
    await waitFor('every alert the replay raises', () => alerts.size >= expected.alerts.length, 60_000, 500)
    await new Promise((r) => setTimeout(r, 3000)) // anything extra would arrive now
    const ticks = (a: RiskAlert) => a.customerId.startsWith('tick_')
    expect([...alerts.values()].filter((a) => !ticks(a)).map((a) => a.id).sort()).toEqual(expected.alerts.map((a) => a.id).sort())
    expect(deadLetterCodes).toEqual([])
    expect(await metric(run.port, 'late')).toBe(0)
    expect(await metric(run.port, 'late_applied')).toBe(0)
    // Each send ends once: delivered, or cancelled as the pipeline records it.
    const delivered = ours()
    const missing = expected.decisions.filter((d) => d.outcome === 'send' && !delivered.has(d.id))
    expect((await cancelledAmong(run.port, missing)).sort()).toEqual(missing.map((d) => d.id).sort())
    expect(delivered.size + (await cancelledSoFar(run.port, lastEventTime))).toBe(sends.length)
    expect([...delivered].every((id) => sends.includes(id))).toBe(true)
    run.child.kill('SIGTERM')
    expect(await new Promise((r) => run.child.once('exit', r))).toBe(0)
  })
})
