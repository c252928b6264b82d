import { Kafka, logLevel, type Admin, type LogEntry, type Producer, type ProducerConfig, type RetryOptions } from 'kafkajs'
import { RECONNECT_POLICY, type BackoffOptions } from '../../core/backoff.ts'
import { UnavailableError } from '../../core/errors.ts'
import { errText, type Instrumentation } from '../../core/instrumentation.ts'

/**
 * The Kafka client as every command that talks to the broker makes it (run, simulate, the live
 * benchmark): its retries from the project's backoff policy, its log lines as instrumentation
 * events, and a broker it cannot reach reported as one line that says what to do.
 */

/**
 * How both stages' consumers fetch: the broker answers a fetch as soon as one byte is there
 * (`minBytes`), and an empty fetch comes back after a few milliseconds instead of KafkaJS's 5 s,
 * so a partition resumed or newly written to is fetched again at once. `maxBytesPerPartition`
 * bounds a batch (a batch is cut by size, or by what has arrived when the fetch returns).
 * Measured with `npm run bench -- --latency` (docs/performance.md).
 */
export const STAGE_FETCH = { minBytes: 1, maxWaitTimeInMs: 10, maxBytesPerPartition: 1 << 20 } as const

/**
 * How both stages run their consumers: the batches of one fetch are taken concurrently, not one
 * partition after the other, so one partition's produce or Redis round trip does not hold up the
 * next's. Each stage still steps one partition at a time (ingest forwards in turn; the state
 * stage locks per partition), and KafkaJS never hands over two batches of one partition at once.
 */
export const STAGE_RUN = { partitionsConsumedConcurrently: 32 } as const

/** The topics of the live pipeline; `RunConfig` has them under these names. */
export interface PipelineTopics {
  transactionsTopic: string
  appEventsTopic: string
  lifecycleTopic: string
  /** The internal topic: validated events keyed by customer. */
  eventsTopic: string
  dlqTopic: string
  alertTopic: string
}

export interface KafkaClientOptions {
  clientId: string
  brokers: string[]
  /** How long to keep trying to reach a broker before giving up (default 30 s). */
  connectTimeoutMs?: number
  /** Where KafkaJS's warnings and errors go; without it the client is silent. */
  instrumentation?: Instrumentation
}

export function createKafka(opts: KafkaClientOptions): Kafka {
  const events = opts.instrumentation
  return new Kafka({
    clientId: opts.clientId,
    brokers: opts.brokers,
    connectionTimeout: 3000,
    retry: kafkaRetry(RECONNECT_POLICY, opts.connectTimeoutMs ?? 30_000),
    logLevel: events ? logLevel.WARN : logLevel.NOTHING,
    logCreator: () => (entry: LogEntry) => events && kafkaLog(events, entry),
  })
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

/** Runs a first call to the broker; failing, it becomes the error a person can act on. */
export async function reaching<T>(brokers: string[], fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (e) {
    throw new UnavailableError('kafka', `cannot reach Kafka at ${brokers.join(',')} (${errText(e)})`, 'start Kafka or set KAFKA_BROKERS', { cause: e })
  }
}

/** A connected admin client with the given topics created where missing. */
export async function connectAdmin(kafka: Kafka, brokers: string[], topics: string[], partitions: number): Promise<Admin> {
  const admin = kafka.admin()
  try {
    await reaching(brokers, async () => {
      await admin.connect()
      await ensureTopics(admin, topics, partitions)
    })
  } catch (e) {
    await admin.disconnect().catch(() => {})
    throw e
  }
  return admin
}

/** Creates the topics that do not exist yet, with `partitions` partitions each. */
export async function ensureTopics(admin: Admin, topics: string[], partitions: number): Promise<void> {
  const existing = new Set(await admin.listTopics())
  const missing = [...new Set(topics)].filter((t) => !existing.has(t))
  if (missing.length) await admin.createTopics({ waitForLeaders: true, topics: missing.map((topic) => ({ topic, numPartitions: partitions })) })
}

/** A connected producer. */
export async function connectProducer(kafka: Kafka, brokers: string[], config: ProducerConfig = {}): Promise<Producer> {
  const producer = kafka.producer(config)
  await reaching(brokers, () => producer.connect())
  return producer
}

function kafkaLog(events: Instrumentation, { level, log: entry }: LogEntry) {
  if (level > logLevel.WARN) return
  const { message, logger, error } = entry as typeof entry & { logger?: string; error?: string }
  events.emit('kafka.log', { level: level <= logLevel.ERROR ? 'error' : 'warn', logger: logger ?? 'kafkajs', message, err: error })
}
