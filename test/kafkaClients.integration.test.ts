import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Partitioners, type Admin } from 'kafkajs'
import { connectAdmin, createKafkaClient } from '../pipeline/kafka/client.ts'
import { loadRdkafka } from '../pipeline/kafka/rdkafka.ts'
import { readToEnd, type GroupConsumer, type KafkaClient, type KafkaClientKind, type PartitionBatch, type TopicPartition } from '../pipeline/kafka/types.ts'
import { ConfigError } from '../core/errors.ts'
import { KAFKA_BROKERS, kafka, uniqueId, waitFor } from './helpers/services.ts'

/**
 * The Kafka client interface (pipeline/kafka/types.ts) on the real broker, the same cases for
 * each client: what the stages rely on. node-rdkafka is built by `npm run rdkafka`; CI builds it
 * and runs the rdkafka cases (CARDPULSE_RDKAFKA=required, or CI, makes a missing build fail them).
 */

function rdkafkaBuilt(): boolean {
  try {
    loadRdkafka()
    return true
  } catch {
    return false
  }
}
const rdkafkaRequired = process.env.CARDPULSE_RDKAFKA === 'required' || Boolean(process.env.CI)
const clients: KafkaClientKind[] = rdkafkaBuilt() || rdkafkaRequired ? ['kafkajs', 'rdkafka'] : ['kafkajs']
if (!clients.includes('rdkafka')) console.warn('kafkaClients: the rdkafka cases are skipped: node-rdkafka is not built here (npm run rdkafka builds it; CI runs them)')

const brokers = KAFKA_BROKERS.split(',')
let testAdmin: Admin

beforeAll(async () => {
  testAdmin = kafka().admin()
  await testAdmin.connect()
})
afterAll(async () => {
  await testAdmin?.disconnect()
})

describe.each(clients)('the %s client', (kind) => {
  let client: KafkaClient
  const stops: (() => Promise<unknown>)[] = []
  const topics: string[] = []

  beforeAll(() => {
    client = createKafkaClient({ kind, clientId: `cardpulse-test-${kind}`, brokers })
  })
  afterAll(async () => {
    for (const stop of stops.reverse()) await stop().catch(() => {})
    await testAdmin.deleteTopics({ topics }).catch(() => {})
  })

  /** A fresh topic made through the client's admin, and that admin. */
  async function freshTopic(partitions: number) {
    const topic = `clients-${kind}-${uniqueId()}`
    topics.push(topic)
    const admin = await connectAdmin(client, [topic], partitions)
    stops.push(() => admin.close())
    return { topic, admin }
  }

  /** A group member that records its batches; `fail` decides, per batch, whether taking it fails. */
  function member(groupId: string, topic: string, fail: (b: PartitionBatch) => boolean = () => false) {
    const batches: PartitionBatch[] = []
    const assignments: TopicPartition[][] = []
    let rebalancing = 0
    const consumer: GroupConsumer = client.groupConsumer({
      groupId,
      topics: [topic],
      sessionTimeout: 10_000,
      eachBatch: async (b) => {
        if (fail(b)) throw new Error('taking the batch failed')
        batches.push(b)
      },
      onAssigned: (a) => void assignments.push(a),
      onRebalancing: () => void rebalancing++,
    })
    stops.push(() => consumer.stop())
    const offsets = (partition: number) => batches.filter((b) => b.partition === partition).flatMap((b) => b.messages.map((m) => Number(m.offset)))
    return { consumer, batches, assignments, offsets, rebalancing: () => rebalancing }
  }

  const messages = (n: number, partition?: number) => Array.from({ length: n }, (_, i) => ({ key: `c${i}`, value: JSON.stringify({ i }), ...(partition === undefined ? {} : { partition }) }))

  it('creates topics, and tells their partitions and offsets', async () => {
    const { topic, admin } = await freshTopic(3)
    expect(await admin.partitions(topic)).toEqual([0, 1, 2])
    await admin.ensureTopics([topic], 5) // exists already: left as it is
    expect(await admin.partitions(topic)).toEqual([0, 1, 2])
    expect(await admin.topicOffsets(topic)).toEqual([0, 1, 2].map((partition) => ({ partition, low: '0', high: '0' })))
    expect(await admin.committedOffsets(`none-${uniqueId()}`, [topic])).toEqual([0, 1, 2].map((partition) => ({ topic, partition, offset: '-1' })))
  })

  it('resolves a send only once the broker has every message, keyed by murmur2 as KafkaJS and Java key them', async () => {
    const { topic, admin } = await freshTopic(6)
    const producer = await client.producer({ idempotent: true })
    stops.push(() => producer.close())
    await producer.send([{ topic, messages: messages(300) }, { topic, messages: [] }])
    const ends = await admin.topicOffsets(topic)
    expect(ends.reduce((n, o) => n + Number(o.high), 0)).toBe(300)
    // Each key on the partition KafkaJS's default partitioner chooses.
    const partitioner = Partitioners.DefaultPartitioner()
    const partitionMetadata = [0, 1, 2, 3, 4, 5].map((partitionId) => ({ partitionId, leader: 1, replicas: [1], isr: [1], partitionErrorCode: 0, offlineReplicas: [] }))
    const expected = new Map<number, number>()
    for (const m of messages(300)) {
      const p = partitioner({ topic, partitionMetadata, message: { key: m.key, value: m.value } })
      expected.set(p, (expected.get(p) ?? 0) + 1)
    }
    expect(new Map(ends.map((o) => [o.partition, Number(o.high)]))).toEqual(new Map([0, 1, 2, 3, 4, 5].map((p) => [p, expected.get(p) ?? 0])))
    // An explicit partition is kept.
    await producer.send([{ topic, messages: messages(7, 4) }])
    expect(Number((await admin.topicOffsets(topic)).find((o) => o.partition === 4)!.high)).toBe((expected.get(4) ?? 0) + 7)
  })

  it('delivers every message once, in order per partition, and a new member of the group starts after the committed offsets', async () => {
    const { topic, admin } = await freshTopic(3)
    const producer = await client.producer()
    stops.push(() => producer.close())
    await producer.send([0, 1, 2].map((p) => ({ topic, messages: messages(50, p) })))
    const groupId = `g-${uniqueId()}`
    const first = member(groupId, topic)
    await first.consumer.start()
    await waitFor('150 messages', () => first.batches.reduce((n, b) => n + b.messages.length, 0) >= 150, 30_000, 50)
    expect(first.assignments.at(-1)?.map((tp) => tp.partition).sort()).toEqual([0, 1, 2])
    for (const p of [0, 1, 2]) expect(first.offsets(p)).toEqual(Array.from({ length: 50 }, (_, i) => i))
    for (const b of first.batches) {
      expect(b.lastOffset).toBe(b.messages.at(-1)!.offset)
      expect(JSON.parse(b.messages[0].value!.toString()).i).toBe(Number(b.messages[0].offset))
    }
    // The last batch of each partition knows it reached the end.
    for (const p of [0, 1, 2]) expect(readToEnd(first.batches.filter((b) => b.partition === p).at(-1)!)).toBe(true)
    await first.consumer.commit([0, 1, 2].map((partition) => ({ topic, partition, offset: '30' })))
    await waitFor('the commit', async () => (await admin.committedOffsets(groupId, [topic])).every((c) => c.offset === '30'), 10_000, 50)
    await first.consumer.stop()

    const second = member(groupId, topic)
    await second.consumer.start()
    await waitFor('the 60 uncommitted messages again', () => second.batches.reduce((n, b) => n + b.messages.length, 0) >= 60, 30_000, 50)
    for (const p of [0, 1, 2]) expect(second.offsets(p)).toEqual(Array.from({ length: 20 }, (_, i) => 30 + i))
  })

  it('delivers a batch again from its first offset when taking it failed', async () => {
    const { topic } = await freshTopic(1)
    const producer = await client.producer()
    stops.push(() => producer.close())
    await producer.send([{ topic, messages: messages(20, 0) }])
    let failures = 0
    const m = member(`g-${uniqueId()}`, topic, () => failures++ < 2)
    await m.consumer.start()
    await waitFor('20 messages', () => m.offsets(0).length >= 20, 30_000, 50)
    expect(failures).toBeGreaterThanOrEqual(2)
    expect(m.offsets(0)).toEqual(Array.from({ length: 20 }, (_, i) => i))
  })

  it('fetches nothing from a paused partition, and on resume goes on from after the last batch, the others unaffected', async () => {
    const { topic } = await freshTopic(2)
    const producer = await client.producer()
    stops.push(() => producer.close())
    const m = member(`g-${uniqueId()}`, topic)
    await m.consumer.start()
    await waitFor('the assignment', () => m.assignments.at(-1)?.length === 2, 30_000, 50)
    await producer.send([0, 1].map((p) => ({ topic, messages: messages(10, p) })))
    await waitFor('20 messages', () => m.offsets(0).length + m.offsets(1).length >= 20, 30_000, 50)
    m.consumer.pause([{ topic, partition: 0 }])
    await producer.send([0, 1].map((p) => ({ topic, messages: messages(10, p) })))
    await waitFor('partition 1 goes on', () => m.offsets(1).length >= 20, 30_000, 50)
    await new Promise((r) => setTimeout(r, 500))
    expect(m.offsets(0)).toHaveLength(10)
    m.consumer.resume([{ topic, partition: 0 }])
    await waitFor('partition 0 again', () => m.offsets(0).length >= 20, 30_000, 50)
    await new Promise((r) => setTimeout(r, 200))
    expect(m.offsets(0)).toEqual(Array.from({ length: 20 }, (_, i) => i))
  })

  it('shares the partitions with a second member: each told its whole assignment, the first told of the rebalance', { timeout: 90_000 }, async () => {
    const { topic } = await freshTopic(4)
    const groupId = `g-${uniqueId()}`
    const a = member(groupId, topic)
    await a.consumer.start()
    await waitFor('the first assignment', () => a.assignments.at(-1)?.length === 4, 30_000, 50)
    const b = member(groupId, topic)
    await b.consumer.start()
    await waitFor('both assigned', () => (a.assignments.at(-1)?.length ?? 0) + (b.assignments.at(-1)?.length ?? 0) === 4 && (b.assignments.at(-1)?.length ?? 0) > 0, 60_000, 100)
    expect(a.rebalancing()).toBeGreaterThan(0)
    const owned = [...a.assignments.at(-1)!, ...b.assignments.at(-1)!].map((tp) => tp.partition).sort()
    expect(owned).toEqual([0, 1, 2, 3])
  })
})

describe('choosing the rdkafka client without node-rdkafka built', () => {
  it('is a one-line ConfigError that says how to install it', () => {
    let error: unknown
    try {
      loadRdkafka('node-rdkafka-that-is-not-installed')
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(ConfigError)
    const { oneLine, exitCode } = error as ConfigError
    expect(exitCode).toBe(2)
    expect(oneLine).not.toContain('\n')
    expect(oneLine).toMatch(/^KAFKA_CLIENT \(--kafka-client\) is rdkafka, but node-rdkafka is not installed or not built .*: run `npm run rdkafka`/)
  })
})
