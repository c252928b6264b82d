import { CompressionTypes, Kafka, logLevel, type Admin, type Consumer, type KafkaConfig, type LogEntry, type Producer, type RetryOptions, type SASLOptions } from 'kafkajs'
import { RECONNECT_POLICY, type BackoffOptions } from '../../core/backoff.ts'
import type { Instrumentation } from '../../core/instrumentation.ts'
import { reaching } from './reaching.ts'
import type {
  GroupConsumer,
  GroupConsumerOptions,
  KafkaAdmin,
  KafkaClient,
  KafkaProducer,
  KafkaSecurity,
  PartitionOffsets,
  ProducerOptions,
  TopicMessages,
  TopicPartition,
  TopicPartitionOffset,
} from './types.ts'

/**
 * The KafkaJS client (the default): its retries from the project's backoff policy, its log lines
 * as instrumentation events.
 */

/**
 * How both stages' consumers fetch: the broker answers a fetch as soon as one byte is there
 * (`minBytes`), and an empty fetch comes back after 100 ms instead of KafkaJS's 5 s, so a
 * partition resumed is fetched again soon (10 ms cost an idle process a third of a core). `maxBytesPerPartition`
 * bounds a batch (a batch is cut by size, or by what has arrived when the fetch returns).
 * Measured with `npm run bench -- --latency` (docs/performance.md).
 */
export const STAGE_FETCH = { minBytes: 1, maxWaitTimeInMs: 100, maxBytesPerPartition: 1 << 20 } as const

/**
 * How both stages run their consumers: the batches of one fetch are taken concurrently, not one
 * partition after the other, so one partition's produce or Redis round trip does not hold up the
 * next's. Each stage still steps one partition at a time (ingest forwards in turn; the state
 * stage locks per partition), and KafkaJS never hands over two batches of one partition at once.
 */
export const STAGE_RUN = { partitionsConsumedConcurrently: 32 } as const

export interface KafkajsOptions {
  clientId: string
  brokers: string[]
  /** SASL and TLS; absent: plaintext. */
  security?: KafkaSecurity
  /** How long to keep trying to reach a broker before giving up (default 30 s). */
  connectTimeoutMs?: number
  /** Where KafkaJS's warnings and errors go; without it the client is silent. */
  instrumentation?: Instrumentation
}

/** KafkaJS's `ssl` and `sasl` settings for the security asked for. */
export function kafkajsSecurity(security: KafkaSecurity | undefined): Pick<KafkaConfig, 'ssl' | 'sasl'> {
  if (!security) return {}
  const { sasl, tls } = security
  return {
    ...(tls ? { ssl: tls.ca ? { ca: [tls.ca] } : true } : {}),
    ...(sasl ? { sasl: { mechanism: sasl.mechanism, username: sasl.username, password: sasl.password } as SASLOptions } : {}),
  }
}

export class KafkajsClient implements KafkaClient {
  readonly kind = 'kafkajs'
  readonly brokers: string[]
  private readonly kafka: Kafka

  constructor(opts: KafkajsOptions) {
    this.brokers = opts.brokers
    const events = opts.instrumentation
    this.kafka = new Kafka({
      clientId: opts.clientId,
      brokers: opts.brokers,
      ...kafkajsSecurity(opts.security),
      connectionTimeout: 3000,
      retry: kafkaRetry(RECONNECT_POLICY, opts.connectTimeoutMs ?? 30_000),
      logLevel: events ? logLevel.WARN : logLevel.NOTHING,
      logCreator: () => (entry: LogEntry) => events && kafkaLog(events, entry),
    })
  }

  async admin(): Promise<KafkaAdmin> {
    const admin = this.kafka.admin()
    await reaching(this.brokers, () => admin.connect())
    return new KafkajsAdmin(admin)
  }

  async producer(opts: ProducerOptions = {}): Promise<KafkaProducer> {
    const producer = this.kafka.producer({
      ...(opts.idempotent ? { idempotent: true, maxInFlightRequests: 1 } : {}),
      ...(opts.allowAutoTopicCreation === false ? { allowAutoTopicCreation: false } : {}),
    })
    await reaching(this.brokers, () => producer.connect())
    return new KafkajsProducer(producer)
  }

  groupConsumer(opts: GroupConsumerOptions): GroupConsumer {
    return new KafkajsGroupConsumer(this.kafka, opts)
  }
}

/**
 * KafkaJS's retry settings for a backoff policy: as many tries as fit in the connect timeout at
 * the longest wait. KafkaJS randomises each wait itself (±20 %); a policy without jitter turns that off.
 */
export function kafkaRetry(policy: BackoffOptions, connectTimeoutMs: number): RetryOptions {
  return {
    initialRetryTime: policy.initialMs,
    maxRetryTime: policy.maxMs,
    multiplier: policy.factor,
    retries: Math.max(3, Math.ceil(connectTimeoutMs / policy.maxMs)),
    ...(policy.jitter === 'none' ? { factor: 0 } : {}),
  }
}

/**
 * KafkaJS's admin, its calls one at a time: calls on one admin share its cluster's list of target
 * topics and metadata, and with both stages asking at an assignment an offsets query sometimes
 * found no partitions for its topic ("Cannot destructure property 'partitions' of 'low.pop(...)'",
 * then ingest counted every input partition as behind).
 */
class KafkajsAdmin implements KafkaAdmin {
  private last: Promise<unknown> = Promise.resolve()

  constructor(private readonly admin: Admin) {}

  private inTurn<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.last.catch(() => {}).then(fn)
    this.last = next
    return next
  }

  ensureTopics(topics: string[], partitions: number): Promise<void> {
    return this.inTurn(async () => {
      const existing = new Set(await this.admin.listTopics())
      const missing = [...new Set(topics)].filter((t) => !existing.has(t))
      if (missing.length) await this.admin.createTopics({ waitForLeaders: true, topics: missing.map((topic) => ({ topic, numPartitions: partitions })) })
    })
  }

  partitions(topic: string): Promise<number[]> {
    return this.inTurn(async () => {
      const { topics } = await this.admin.fetchTopicMetadata({ topics: [topic] })
      return topics[0].partitions.map((p) => p.partitionId).sort((a, b) => a - b)
    })
  }

  committedOffsets(groupId: string, topics: string[]): Promise<TopicPartitionOffset[]> {
    return this.inTurn(async () => {
      const offsets = await this.admin.fetchOffsets({ groupId, topics })
      return offsets.flatMap(({ topic, partitions }) => partitions.map((p) => ({ topic, partition: p.partition, offset: p.offset })).sort((a, b) => a.partition - b.partition))
    })
  }

  topicOffsets(topic: string): Promise<PartitionOffsets[]> {
    return this.inTurn(async () =>
      (await this.admin.fetchTopicOffsets(topic)).map((o) => ({ partition: o.partition, low: o.low, high: o.high })).sort((a, b) => a.partition - b.partition),
    )
  }

  deleteTopics(topics: string[]): Promise<void> {
    return this.inTurn(() => this.admin.deleteTopics({ topics }))
  }

  close(): Promise<void> {
    return this.inTurn(() => this.admin.disconnect())
  }
}

class KafkajsProducer implements KafkaProducer {
  constructor(private readonly producer: Producer) {}

  async send(batch: TopicMessages[]): Promise<void> {
    const topicMessages = batch.filter((t) => t.messages.length)
    if (topicMessages.length) await this.producer.sendBatch({ acks: -1, compression: CompressionTypes.None, topicMessages })
  }

  close(): Promise<void> {
    return this.producer.disconnect()
  }
}

class KafkajsGroupConsumer implements GroupConsumer {
  private readonly consumer: Consumer

  constructor(
    kafka: Kafka,
    private readonly opts: GroupConsumerOptions,
  ) {
    this.consumer = kafka.consumer({
      groupId: opts.groupId,
      allowAutoTopicCreation: false,
      ...STAGE_FETCH,
      ...(opts.sessionTimeout ? { sessionTimeout: opts.sessionTimeout } : {}),
    })
  }

  async start(): Promise<void> {
    const { consumer, opts } = this
    const { onAssigned, onRebalancing } = opts
    if (onAssigned) {
      consumer.on(consumer.events.GROUP_JOIN, (e) =>
        onAssigned(Object.entries(e.payload.memberAssignment as Record<string, number[]>).flatMap(([topic, partitions]) => partitions.map((partition) => ({ topic, partition })))),
      )
    }
    if (onRebalancing) consumer.on(consumer.events.REBALANCING, () => onRebalancing())
    await consumer.connect()
    await consumer.subscribe({ topics: opts.topics, fromBeginning: true })
    await consumer.run({
      ...STAGE_RUN,
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
        if (!isRunning() || isStale() || !batch.messages.length) return
        await opts.eachBatch({
          topic: batch.topic,
          partition: batch.partition,
          messages: batch.messages.map((m) => ({ offset: m.offset, key: m.key, value: m.value })),
          lastOffset: batch.lastOffset(),
          highWatermark: batch.highWatermark,
        })
        // Fetching goes on from after this batch only once it was taken; a batch that failed is fetched again.
        resolveOffset(batch.lastOffset())
        await heartbeat()
      },
    })
  }

  pause(partitions: TopicPartition[]): void {
    if (partitions.length) this.consumer.pause(partitions.map(({ topic, partition }) => ({ topic, partitions: [partition] })))
  }

  resume(partitions: TopicPartition[]): void {
    if (partitions.length) this.consumer.resume(partitions.map(({ topic, partition }) => ({ topic, partitions: [partition] })))
  }

  async commit(offsets: TopicPartitionOffset[]): Promise<void> {
    if (offsets.length) await this.consumer.commitOffsets(offsets)
  }

  stop(): Promise<void> {
    return this.consumer.disconnect()
  }
}

function kafkaLog(events: Instrumentation, { level, log: entry }: LogEntry) {
  if (level > logLevel.WARN) return
  const { message, logger, error } = entry as typeof entry & { logger?: string; error?: string }
  events.emit('kafka.log', { level: level <= logLevel.ERROR ? 'error' : 'warn', logger: logger ?? 'kafkajs', message, err: error })
}
