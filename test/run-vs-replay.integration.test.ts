import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Admin, Producer } from 'kafkajs'
import type { RunningPipeline } from '../commands/run.ts'
import { createTopics, freshTopics, kafka, uniqueId, waitFor, webhookReceiver } from './helpers/services.ts'
import { bankEvents, counted, endOfInput, expectSameAsReplay, produce, replayed, startLive } from './helpers/liveVsReplay.ts'

/**
 * The same events through `cardpulse run` (real Kafka, Redis, ClickHouse engine) and through the
 * embedded replay must give the same decisions and alerts, with the same ids. The events arrive
 * at the live pipeline out of order (three topics, several partitions, an extra re-keying hop);
 * each partition of the state stage waits for the slowest input partition (source watermarks),
 * so none is late and the results are those of sorted input. Two feeds: a day of event time at a
 * time, and the whole history waiting in the topics before the pipeline starts (catching up on a
 * backlog). test/sourceWatermarks.integration.test.ts has a lagging source, two ingest processes
 * and a SIGKILL.
 */

const DAY = 86_400_000
const events = bankEvents()
const lastEventTime = Date.parse(events[events.length - 1].occurredAt)

let admin: Admin
let producer: Producer
let receiver: Awaited<ReturnType<typeof webhookReceiver>>
let pipeline: RunningPipeline | undefined
let second: RunningPipeline | undefined

beforeAll(async () => {
  admin = kafka().admin()
  await admin.connect()
  producer = kafka().producer()
  await producer.connect()
  receiver = await webhookReceiver()
})

afterAll(async () => {
  await pipeline?.stop()
  await second?.stop()
  await producer?.disconnect()
  await admin?.disconnect()
  await receiver?.close()
})

describe('cardpulse run and cardpulse replay', () => {
  it('make the same decisions and alerts, with the same ids, on a feed that arrives a day at a time', async () => {
    const expected = await replayed(events)
    expect(expected.decisions.length).toBeGreaterThan(20)
    const id = uniqueId()
    const topics = freshTopics(`v-${id}`)
    await createTopics(admin, Object.values(topics), 3)
    // The feed pauses between days, longer than the default idleness: sources stay live here.
    pipeline = await startLive(id, topics, `${receiver.url}/hooks`, { sourceIdleness: '10m' })
    const live = pipeline

    let sent = 0
    while (sent < events.length) {
      const dayEnd = Date.parse(events[sent].occurredAt) + DAY
      let end = sent
      while (end < events.length && Date.parse(events[end].occurredAt) < dayEnd) end++
      await produce(producer, topics, events.slice(sent, end))
      sent = end
      await waitFor(`events up to ${sent} taken in`, async () => (await counted(live, 'applied')) + (await counted(live, 'late')) >= sent, 60_000, 50)
    }
    await endOfInput(producer, topics, lastEventTime)
    await expectSameAsReplay(live, expected, lastEventTime)
    expect(await counted(live, 'late')).toBe(0)
    expect(await counted(live, 'late_applied')).toBe(0)
  }, 240_000)

  it('make the same decisions and alerts when catching up on 45 days waiting in the topics', { timeout: 240_000 }, async () => {
    // Fetched as it comes, the sparse lifecycle stream would run weeks ahead of the transactions;
    // the state stage waits for the slowest source, and ingest aligns the streams to bound what waits.
    const expected = await replayed(events)
    const id = uniqueId()
    const topics = freshTopics(`b-${id}`)
    await createTopics(admin, Object.values(topics), 3)
    await produce(producer, topics, events)
    await endOfInput(producer, topics, lastEventTime)
    await pipeline?.stop()
    pipeline = await startLive(id, topics, `${receiver.url}/hooks`)
    const live = pipeline

    await waitFor('every event taken in', async () => (await counted(live, 'applied')) + (await counted(live, 'late')) >= events.length + 9, 120_000, 200)
    await expectSameAsReplay(live, expected, lastEventTime)
    expect(await counted(live, 'late')).toBe(0)
    expect(await counted(live, 'late_applied')).toBe(0)
  })

  it('make the same decisions and alerts when two processes share the partitions, one stepping them on its main thread, one on two threads', { timeout: 240_000 }, async () => {
    // Three members of the state stage's group (the main thread of one, two threads of the
    // other) on three partitions, and both ingest stages in one group on the nine input partitions.
    const expected = await replayed(events)
    const id = uniqueId()
    const topics = freshTopics(`s-${id}`)
    await createTopics(admin, Object.values(topics), 3)
    await pipeline?.stop()
    // The history arrives at once after both started: sources that went idle first would let
    // the first stream to arrive run the watermark past the others.
    const settings = { sourceIdleness: '10m' }
    ;[pipeline, second] = await Promise.all([
      startLive(id, topics, `${receiver.url}/hooks`, { ...settings, stateThreads: '0' }),
      startLive(id, topics, `${receiver.url}/hooks`, { ...settings, stateThreads: '2' }),
    ])
    const pair = [pipeline, second]
    const total = async (result: string) => (await Promise.all(pair.map((p) => counted(p, result)))).reduce((a, b) => a + b, 0)
    await waitFor('the partitions shared', async () => pair.every((p) => p.partitions().length > 0) && pair.flatMap((p) => p.partitions()).length === 3, 60_000, 100)
    await produce(producer, topics, events)
    await endOfInput(producer, topics, lastEventTime)

    await waitFor('every event taken in', async () => (await total('applied')) + (await total('late')) >= events.length + 9, 120_000, 200)
    await expectSameAsReplay(pipeline, expected, lastEventTime)
    expect(await total('late')).toBe(0)
    // Both did part of the work.
    for (const p of pair) expect(await counted(p, 'applied')).toBeGreaterThan(0)
  })
})
