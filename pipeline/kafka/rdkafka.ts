import { createRequire } from 'node:module'
import { RECONNECT_POLICY, backoffDelay } from '../../core/backoff.ts'
import { ConfigError } from '../../core/errors.ts'
import { errText, type Instrumentation } from '../../core/instrumentation.ts'
import { reaching } from './reaching.ts'
import type {
  ConsumedMessage,
  GroupConsumer,
  GroupConsumerOptions,
  KafkaAdmin,
  KafkaClient,
  KafkaSecurity,
  KafkaProducer,
  PartitionOffsets,
  ProducerOptions,
  TopicMessages,
  TopicPartition,
  TopicPartitionOffset,
} from './types.ts'

/**
 * The librdkafka client, through node-rdkafka (an optional dependency built from source:
 * `npm run rdkafka`). It is loaded only when KAFKA_CLIENT=rdkafka, so nothing else needs it
 * installed; the few calls used are typed here, not from its own declarations, so the project
 * type-checks without it.
 */

// ---- the part of node-rdkafka this file uses ----

type Callback<T> = (err: RdError | null | undefined, value: T) => void
interface RdError extends Error {
  code: number
}
interface RdMessage {
  value: Buffer | null
  key?: Buffer | string | null
  topic: string
  partition: number
  offset: number
}
interface RdTopicPartition {
  topic: string
  partition: number
  offset?: number
}
interface RdMetadata {
  topics: { name: string; partitions: { id: number; leader: number }[] }[]
}
interface RdClient {
  connect(opts: { timeout?: number; allTopics?: boolean }, cb: Callback<unknown>): void
  disconnect(cb: Callback<unknown>): void
  getMetadata(opts: { topic?: string; allTopics?: boolean; timeout?: number }, cb: Callback<RdMetadata>): void
  queryWatermarkOffsets(topic: string, partition: number, timeout: number, cb: Callback<{ highOffset: number; lowOffset: number }>): void
  on(event: string, fn: (...args: never[]) => void): unknown
}
interface RdConsumer extends RdClient {
  subscribe(topics: string[]): void
  consume(count: number, cb: Callback<RdMessage[]>): void
  setDefaultConsumeTimeout(ms: number): void
  assign(assignment: RdTopicPartition[]): void
  unassign(): void
  pause(partitions: RdTopicPartition[]): void
  resume(partitions: RdTopicPartition[]): void
  seek(position: Required<RdTopicPartition>, timeout: number, cb: (err: RdError | null | undefined) => void): void
  commit(positions: Required<RdTopicPartition>[]): void
  committed(partitions: RdTopicPartition[], timeout: number, cb: Callback<Required<RdTopicPartition>[]>): void
  getWatermarkOffsets(topic: string, partition: number): { highOffset: number; lowOffset: number }
}
interface RdProducer extends RdClient {
  produce(topic: string, partition: number | null, value: Buffer, key: string, timestamp: number | null, opaque: unknown): void
  poll(): void
}
interface RdAdmin {
  connect(): void
  disconnect(): void
  createTopic(topic: { topic: string; num_partitions: number; replication_factor: number }, timeout: number, cb: (err?: RdError | null) => void): void
  deleteTopic(topic: string, timeout: number, cb: (err?: RdError | null) => void): void
}
type Config = Record<string, string | number | boolean | ((...args: never[]) => void)>
interface Rdkafka {
  KafkaConsumer: new (conf: Config, topicConf: Config) => RdConsumer
  Producer: new (conf: Config, topicConf?: Config) => RdProducer
  AdminClient: { create(conf: Config): RdAdmin }
  librdkafkaVersion: string
}

const ERR = {
  QUEUE_FULL: -184,
  ASSIGN_PARTITIONS: -175,
  REVOKE_PARTITIONS: -174,
  TOPIC_ALREADY_EXISTS: 36,
  UNKNOWN_TOPIC_OR_PART: 3,
} as const
/** librdkafka's "no offset" (RD_KAFKA_OFFSET_INVALID) in committed and watermark answers. */
const OFFSET_INVALID = -1001

/** node-rdkafka (`specifier` only for tests), or a ConfigError that says how to install it. */
export function loadRdkafka(specifier = 'node-rdkafka'): Rdkafka {
  try {
    return createRequire(import.meta.url)(specifier) as Rdkafka
  } catch (e) {
    throw new ConfigError(
      `KAFKA_CLIENT (--kafka-client) is rdkafka, but node-rdkafka is not installed or not built (${errText(e).split('\n')[0]})`,
      'run `npm run rdkafka` in the cardpulse folder (compiles librdkafka, a few minutes), or use KAFKA_CLIENT=kafkajs',
    )
  }
}

// ---- settings ----

/** librdkafka's `security.protocol`, SASL and CA settings for the security asked for. */
export function rdkafkaSecurity(security: KafkaSecurity | undefined): Config {
  if (!security) return {}
  const { sasl, tls } = security
  return {
    'security.protocol': sasl ? (tls ? 'sasl_ssl' : 'sasl_plaintext') : tls ? 'ssl' : 'plaintext',
    ...(sasl ? { 'sasl.mechanisms': sasl.mechanism.toUpperCase(), 'sasl.username': sasl.username, 'sasl.password': sasl.password } : {}),
    ...(tls?.ca ? { 'ssl.ca.pem': tls.ca } : {}),
  }
}

/**
 * What every client of this process sets. Reconnects follow the project's backoff policy
 * (core/backoff.ts); Nagle is off, as a batch is one write and waiting to fill a segment only
 * adds latency. Warnings and errors come back as `kafka.log` events.
 */
function commonConfig(clientId: string, brokers: string[], security: KafkaSecurity | undefined): Config {
  return {
    'client.id': clientId,
    'metadata.broker.list': brokers.join(','),
    ...rdkafkaSecurity(security),
    'reconnect.backoff.ms': RECONNECT_POLICY.initialMs,
    'reconnect.backoff.max.ms': RECONNECT_POLICY.maxMs,
    'retry.backoff.ms': RECONNECT_POLICY.initialMs,
    'retry.backoff.max.ms': RECONNECT_POLICY.maxMs,
    'socket.nagle.disable': true,
    log_level: 4,
  }
}

/**
 * How both stages' consumers fetch, as KafkaJS's STAGE_FETCH does (kafkajs.ts): the broker
 * answers as soon as one byte is there and an empty fetch comes back after 10 ms (librdkafka's
 * default is 500 ms), so a partition resumed or newly written to is read again at once; at most
 * 1 MiB per partition per fetch. librdkafka fetches ahead into one local queue while the stages
 * work, bounded in kilobytes for all partitions together: 32 MiB keeps a catch-up of eighteen
 * input partitions fed (at 4 MiB the raw read ran at a third of the speed: fetches waited for room)
 * and is half of librdkafka's default. `enable.partition.eof` lets a batch end as soon as its
 * partitions are read to their end instead of waiting for more.
 */
const STAGE_CONSUMER: Config = {
  'fetch.min.bytes': 1,
  'fetch.wait.max.ms': 10,
  'max.partition.fetch.bytes': 1 << 20,
  'queued.max.messages.kbytes': 32768,
  'enable.partition.eof': true,
  // Offsets are committed by the stages only, after what they cover is done (see the stages).
  'enable.auto.commit': false,
  'enable.auto.offset.store': false,
  'allow.auto.create.topics': false,
  // Eager rebalancing: every assignment is whole, as the stages expect (and as KafkaJS gives it).
  'partition.assignment.strategy': 'roundrobin',
}

/**
 * Messages asked for per consume: a batch per partition is what one consume returned of it, so
 * this bounds the work between two consumes (about 3 MiB of the simulated bank's events). A
 * consume waits at most CONSUME_WAIT_MS for its first message and returns as soon as its
 * partitions are read to their end.
 */
const CONSUME_MESSAGES = 10_000
const CONSUME_WAIT_MS = 100

/**
 * The producer waits for every in-sync replica (acks=all) and is idempotent where asked, so a
 * retry neither duplicates nor reorders. `linger.ms` 1: a send is produced as a whole, and the
 * stages wait for it, so there is nothing to gain from waiting for more (librdkafka's default is
 * 5 ms, added to every publish). The key picks the partition with murmur2, as KafkaJS's default
 * partitioner and the Java client do, so a customer's events land on the same partition whichever
 * client produced them (librdkafka's own default, CRC32, would move them). Whether producing may
 * create a topic is the broker's `auto.create.topics.enable` alone: librdkafka has no producer
 * setting for it.
 */
function producerConfig(opts: ProducerOptions): Config {
  return {
    acks: 'all',
    'enable.idempotence': opts.idempotent === true,
    'linger.ms': 1,
    'compression.type': 'none',
    dr_cb: true,
  }
}

/** Topic settings of every producer: `partitioner` is one (see producerConfig). */
const PRODUCER_TOPICS: Config = { partitioner: 'murmur2_random' }

/** How long a delivery report is polled for at most, between polls, while a send waits. */
const POLL_MS = 1

// ---- the client ----

export interface RdkafkaOptions {
  clientId: string
  brokers: string[]
  /** SASL and TLS; absent: plaintext. */
  security?: KafkaSecurity
  /** How long to keep trying to reach a broker before giving up (default 30 s). */
  connectTimeoutMs?: number
  instrumentation?: Instrumentation
}

export class RdkafkaClient implements KafkaClient {
  readonly kind = 'rdkafka'
  readonly brokers: string[]
  private readonly rd: Rdkafka

  constructor(private readonly opts: RdkafkaOptions) {
    this.brokers = opts.brokers
    this.rd = loadRdkafka()
  }

  private get connectTimeoutMs() {
    return this.opts.connectTimeoutMs ?? 30_000
  }

  /** The settings every client of this one starts from (connection, security, reconnects). */
  config(): Config {
    return commonConfig(this.opts.clientId, this.brokers, this.opts.security)
  }

  async admin(): Promise<KafkaAdmin> {
    // Metadata and topic ends come from a producer's connection; topic creation from the admin API.
    const metadata = new this.rd.Producer(this.config())
    listen(metadata, this.opts.instrumentation)
    await reaching(this.brokers, () => connect(metadata, this.connectTimeoutMs))
    const admin = this.rd.AdminClient.create(this.config())
    admin.connect()
    return new RdkafkaAdmin(this.rd, this.config(), metadata, admin, this.connectTimeoutMs)
  }

  async producer(opts: ProducerOptions = {}): Promise<KafkaProducer> {
    const producer = new this.rd.Producer({ ...this.config(), ...producerConfig(opts) }, PRODUCER_TOPICS)
    listen(producer, this.opts.instrumentation)
    await reaching(this.brokers, () => connect(producer, this.connectTimeoutMs))
    return new RdkafkaProducer(producer)
  }

  groupConsumer(opts: GroupConsumerOptions): GroupConsumer {
    return new RdkafkaGroupConsumer(this.rd, this.config(), this.brokers, this.connectTimeoutMs, opts, this.opts.instrumentation)
  }
}

function connect(client: RdClient, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => client.connect({ timeout: timeoutMs, allTopics: false }, (err) => (err ? reject(err) : resolve())))
}

function disconnect(client: RdClient): Promise<void> {
  return new Promise((resolve) => client.disconnect(() => resolve()))
}

/** librdkafka's warnings and errors as `kafka.log` events. */
function listen(client: RdClient, events: Instrumentation | undefined) {
  if (!events) {
    // Without a listener node-rdkafka would print them; the caller asked for silence.
    client.on('event.error', () => {})
    return
  }
  client.on('event.error', (err: RdError) => events.emit('kafka.log', { level: 'error', logger: 'rdkafka', message: err.message }))
  client.on('event.log', (entry: { severity: number; fac: string; message: string }) => {
    if (entry.severity <= 4) events.emit('kafka.log', { level: entry.severity <= 3 ? 'error' : 'warn', logger: `rdkafka.${entry.fac}`, message: entry.message })
  })
}

// ---- admin ----

class RdkafkaAdmin implements KafkaAdmin {
  /** One offsets-only consumer per group asked about: committed offsets are read through a member of the group's coordinator. */
  private readonly groups = new Map<string, Promise<RdConsumer>>()

  constructor(
    private readonly rd: Rdkafka,
    private readonly config: Config,
    private readonly metadata: RdProducer,
    private readonly admin: RdAdmin,
    private readonly timeoutMs: number,
  ) {}

  private async topics(): Promise<RdMetadata['topics']> {
    const md = await new Promise<RdMetadata>((resolve, reject) => this.metadata.getMetadata({ allTopics: true, timeout: 5000 }, (err, m) => (err ? reject(err) : resolve(m))))
    return md.topics
  }

  async ensureTopics(topics: string[], partitions: number): Promise<void> {
    const existing = new Set((await this.topics()).map((t) => t.name))
    const missing = [...new Set(topics)].filter((t) => !existing.has(t))
    await Promise.all(
      missing.map(
        (topic) =>
          new Promise<void>((resolve, reject) =>
            // replication_factor -1: the broker's default, as KafkaJS asks for it.
            this.admin.createTopic({ topic, num_partitions: partitions, replication_factor: -1 }, 10_000, (err) => (err && err.code !== ERR.TOPIC_ALREADY_EXISTS ? reject(err) : resolve())),
          ),
      ),
    )
    if (!missing.length) return
    // As KafkaJS's waitForLeaders: the topics are ready once every partition has a leader.
    const deadline = Date.now() + this.timeoutMs
    for (;;) {
      const known = new Map((await this.topics()).map((t) => [t.name, t]))
      if (missing.every((t) => known.get(t)?.partitions.length && known.get(t)!.partitions.every((p) => p.leader >= 0))) return
      if (Date.now() > deadline) throw new Error(`topics ${missing.join(', ')} have no leader after ${this.timeoutMs} ms`)
      await sleep(50)
    }
  }

  async partitions(topic: string): Promise<number[]> {
    const found = (await this.topics()).find((t) => t.name === topic)
    if (!found) throw new Error(`topic ${topic} does not exist`)
    return found.partitions.map((p) => p.id).sort((a, b) => a - b)
  }

  async committedOffsets(groupId: string, topics: string[]): Promise<TopicPartitionOffset[]> {
    let member = this.groups.get(groupId)
    if (!member) {
      const consumer = new this.rd.KafkaConsumer({ ...this.config, 'group.id': groupId, 'enable.auto.commit': false }, {})
      consumer.on('event.error', () => {})
      const connecting: Promise<RdConsumer> = connect(consumer, this.timeoutMs).then(
        () => consumer,
        (err: unknown) => {
          // node-rdkafka tears a failed connect down itself; not kept, the next lookup tries again.
          if (this.groups.get(groupId) === connecting) this.groups.delete(groupId)
          throw err
        },
      )
      this.groups.set(groupId, (member = connecting))
    }
    const consumer = await member
    const partitions: RdTopicPartition[] = []
    for (const topic of topics) for (const partition of await this.partitions(topic)) partitions.push({ topic, partition })
    const committed = await new Promise<Required<RdTopicPartition>[]>((resolve, reject) => consumer.committed(partitions, 5000, (err, tps) => (err ? reject(err) : resolve(tps))))
    // librdkafka leaves the offset out where the group has none.
    return committed.map((c) => ({ topic: c.topic, partition: c.partition, offset: typeof c.offset === 'number' && c.offset >= 0 ? String(c.offset) : '-1' }))
  }

  async topicOffsets(topic: string): Promise<PartitionOffsets[]> {
    return Promise.all(
      (await this.partitions(topic)).map(
        (partition) =>
          new Promise<PartitionOffsets>((resolve, reject) =>
            this.metadata.queryWatermarkOffsets(topic, partition, 5000, (err, o) => (err ? reject(err) : resolve({ partition, low: String(o.lowOffset), high: String(o.highOffset) }))),
          ),
      ),
    )
  }

  async deleteTopics(topics: string[]): Promise<void> {
    await Promise.all(
      topics.map((topic) => new Promise<void>((resolve, reject) => this.admin.deleteTopic(topic, 10_000, (err) => (err && err.code !== ERR.UNKNOWN_TOPIC_OR_PART ? reject(err) : resolve())))),
    )
  }

  async close(): Promise<void> {
    this.admin.disconnect()
    const members = await Promise.allSettled(this.groups.values())
    await Promise.all(members.flatMap((m) => (m.status === 'fulfilled' ? [disconnect(m.value)] : [])))
    await disconnect(this.metadata)
  }
}

// ---- producer ----

class RdkafkaProducer implements KafkaProducer {
  /** Messages produced whose delivery report has not come yet; delivery reports arrive only when the producer is polled. */
  private inFlight = 0
  private poller?: NodeJS.Timeout

  constructor(private readonly producer: RdProducer) {
    producer.on('delivery-report', (err: RdError | null, report: { opaque: (err: RdError | null) => void }) => {
      this.inFlight--
      if (this.inFlight === 0) this.stopPolling()
      report.opaque(err)
    })
  }

  async send(batch: TopicMessages[]): Promise<void> {
    const total = batch.reduce((n, t) => n + t.messages.length, 0)
    if (!total) return
    let left = total
    let failed: RdError | undefined
    let settle!: (err?: RdError) => void
    const delivered = new Promise<void>((resolve, reject) => (settle = (err) => (err ? reject(err) : resolve())))
    const onReport = (err: RdError | null) => {
      if (err && !failed) failed = err
      if (--left === 0) settle(failed)
    }
    for (const { topic, messages } of batch) {
      for (const m of messages) {
        const value = typeof m.value === 'string' ? Buffer.from(m.value) : m.value
        for (;;) {
          try {
            this.producer.produce(topic, m.partition ?? null, value, m.key, null, onReport)
            break
          } catch (e) {
            // The local queue is full: let deliveries drain it, then go on.
            if ((e as RdError).code !== ERR.QUEUE_FULL) {
              // What was produced still reports; the send fails once they have.
              left -= countFrom(batch, topic, m)
              if (left === 0) settle(e as RdError)
              else failed ??= e as RdError
              return delivered
            }
            this.producer.poll()
            await sleep(5)
          }
        }
        this.inFlight++
        this.startPolling()
      }
    }
    return delivered
  }

  private startPolling() {
    this.poller ??= setInterval(() => this.producer.poll(), POLL_MS)
  }

  private stopPolling() {
    clearInterval(this.poller)
    this.poller = undefined
  }

  async close(): Promise<void> {
    this.stopPolling()
    await disconnect(this.producer)
  }
}

/** How many messages of a send, from `from` on, were never produced. */
function countFrom(batch: TopicMessages[], topic: string, from: TopicMessages['messages'][number]): number {
  let counting = false
  let n = 0
  for (const t of batch)
    for (const m of t.messages) {
      if (t.topic === topic && m === from) counting = true
      if (counting) n++
    }
  return n
}

// ---- group consumer ----

const keyOf = (topic: string, partition: number) => `${topic}|${partition}`

/**
 * A group member on librdkafka's KafkaConsumer. One loop consumes up to CONSUME_MESSAGES, splits
 * them into one batch per partition, takes the batches concurrently, and consumes again once all
 * are taken. Rebalances are applied by the same loop between batches (librdkafka waits for the
 * assign or unassign call), so an assignment never changes under a batch being taken, and what a
 * consume returned across a rebalance is dropped: the partitions start again from their committed
 * offsets. Offsets are committed only by `commit`; a commit is sent at once and its outcome comes
 * with a later consume (a commit lost to a crash means reading again, which both stages allow
 * for: ingest's repeats are dropped by event id downstream, the state stage skips what its store
 * already applied).
 */
class RdkafkaGroupConsumer implements GroupConsumer {
  private consumer?: RdConsumer
  private running = false
  private closing = false
  private loop?: Promise<void>
  /** Rebalances librdkafka asked for, applied by the loop between batches. */
  private readonly rebalances: { err: RdError; assignment: RdTopicPartition[] }[] = []
  /** Bumped on every rebalance: a seek or retry of an earlier assignment is dropped. */
  private generation = 0
  private readonly assigned = new Set<string>()
  /** Per partition: the offset of the next message to deliver (after the last batch taken). */
  private readonly next = new Map<string, number>()
  private readonly paused = new Set<string>()
  /** Paused partitions of which messages were consumed but not delivered: their fetch position is past `next`. */
  private readonly skipped = new Set<string>()
  private readonly failures = new Map<string, number>()

  constructor(
    private readonly rd: Rdkafka,
    private readonly config: Config,
    private readonly brokers: string[],
    private readonly connectTimeoutMs: number,
    private readonly opts: GroupConsumerOptions,
    private readonly events: Instrumentation | undefined,
  ) {}

  async start(): Promise<void> {
    const { opts } = this
    const consumer = new this.rd.KafkaConsumer(
      {
        ...this.config,
        ...STAGE_CONSUMER,
        'group.id': opts.groupId,
        ...(opts.sessionTimeout ? { 'session.timeout.ms': opts.sessionTimeout, 'heartbeat.interval.ms': Math.max(100, Math.min(3000, Math.floor(opts.sessionTimeout / 3))) } : {}),
        rebalance_cb: (err: RdError, assignment: RdTopicPartition[]) => {
          // Leaving the group: librdkafka's close waits for this unassign.
          if (this.closing) return void tryTo(() => consumer.unassign())
          this.rebalances.push({ err, assignment })
        },
        offset_commit_cb: (err: RdError | null) => {
          // A commit that failed is covered by the next one, or the partition is read again from the last that held.
          if (err) this.events?.emit('kafka.log', { level: 'warn', logger: 'rdkafka.commit', message: `offset commit failed: ${err.message}` })
        },
      },
      { 'auto.offset.reset': 'earliest' },
    )
    listen(consumer, this.events)
    this.consumer = consumer
    await reaching(this.brokers, () => connect(consumer, this.connectTimeoutMs))
    consumer.setDefaultConsumeTimeout(CONSUME_WAIT_MS)
    consumer.subscribe(opts.topics)
    this.running = true
    this.loop = this.consumeLoop()
  }

  /** Applies the rebalances librdkafka asked for; true if there were any. */
  private rebalanced(): boolean {
    if (!this.rebalances.length) return false
    const consumer = this.consumer!
    for (const { err, assignment } of this.rebalances.splice(0)) {
      this.generation++
      this.assigned.clear()
      this.next.clear()
      this.paused.clear()
      this.skipped.clear()
      this.failures.clear()
      if (err.code === ERR.ASSIGN_PARTITIONS) {
        consumer.assign(assignment)
        // A partition paused under an earlier assignment starts unpaused, as in KafkaJS.
        if (assignment.length) consumer.resume(assignment)
        for (const tp of assignment) this.assigned.add(keyOf(tp.topic, tp.partition))
        this.opts.onAssigned?.(assignment.map(({ topic, partition }) => ({ topic, partition })))
      } else {
        this.opts.onRebalancing?.()
        consumer.unassign()
      }
    }
    return true
  }

  private async consumeLoop(): Promise<void> {
    const consumer = this.consumer!
    while (this.running) {
      this.rebalanced()
      let messages: RdMessage[]
      try {
        messages = await new Promise<RdMessage[]>((resolve, reject) => consumer.consume(CONSUME_MESSAGES, (err, m) => (err ? reject(err) : resolve(m))))
      } catch (e) {
        this.events?.emit('kafka.log', { level: 'warn', logger: 'rdkafka.consume', message: errText(e) })
        await sleep(RECONNECT_POLICY.initialMs)
        continue
      }
      if (this.rebalanced() || !this.running) continue
      const generation = this.generation
      const batches = new Map<string, RdMessage[]>()
      for (const m of messages) {
        const key = keyOf(m.topic, m.partition)
        if (!this.assigned.has(key)) continue
        if (this.paused.has(key)) {
          if (!this.next.has(key)) this.next.set(key, m.offset)
          this.skipped.add(key)
          continue
        }
        // What a seek went back for is delivered once.
        if (m.offset < (this.next.get(key) ?? -1)) continue
        let list = batches.get(key)
        if (!list) batches.set(key, (list = []))
        list.push(m)
      }
      await Promise.all([...batches.values()].map((list) => this.take(list, generation)))
    }
  }

  private async take(list: RdMessage[], generation: number): Promise<void> {
    const { topic, partition } = list[0]
    const key = keyOf(topic, partition)
    const first = list[0].offset
    const last = list[list.length - 1].offset
    let high = OFFSET_INVALID
    // librdkafka's record of the partition's end from its last fetch response: no round trip.
    tryTo(() => (high = this.consumer!.getWatermarkOffsets(topic, partition).highOffset))
    const messages: ConsumedMessage[] = list.map((m) => ({
      offset: String(m.offset),
      key: m.key == null ? null : typeof m.key === 'string' ? Buffer.from(m.key) : m.key,
      value: m.value,
    }))
    try {
      await this.opts.eachBatch({ topic, partition, messages, lastOffset: String(last), highWatermark: String(Math.max(high, last + 1)) })
      if (generation !== this.generation) return
      this.next.set(key, last + 1)
      this.failures.delete(key)
    } catch (e) {
      if (generation !== this.generation) return
      // Read the batch again after a backoff; this partition waits, the others go on.
      const attempt = (this.failures.get(key) ?? 0) + 1
      this.failures.set(key, attempt)
      this.events?.emit('kafka.log', { level: 'warn', logger: 'rdkafka.consumer', message: `a batch of ${key} failed; reading it again`, err: errText(e) })
      this.next.set(key, first)
      this.pause([{ topic, partition }])
      this.skipped.add(key)
      setTimeout(() => generation === this.generation && this.resume([{ topic, partition }]), backoffDelay(attempt, RECONNECT_POLICY))
    }
  }

  pause(partitions: TopicPartition[]): void {
    const mine = partitions.filter((tp) => this.assigned.has(keyOf(tp.topic, tp.partition)))
    if (!mine.length || !this.consumer) return
    for (const tp of mine) this.paused.add(keyOf(tp.topic, tp.partition))
    this.consumer.pause(mine.map(({ topic, partition }) => ({ topic, partition })))
  }

  resume(partitions: TopicPartition[]): void {
    const consumer = this.consumer
    if (!consumer) return
    const generation = this.generation
    for (const { topic, partition } of partitions) {
      const key = keyOf(topic, partition)
      if (!this.paused.has(key)) continue
      const at = this.next.get(key)
      if (!this.skipped.has(key) || at === undefined) {
        this.paused.delete(key)
        consumer.resume([{ topic, partition }])
        continue
      }
      this.seekThenResume(consumer, topic, partition, at, generation, 1)
    }
  }

  /**
   * Messages were consumed past what was delivered: fetch from the first undelivered one before
   * resuming. A failed seek (librdkafka refuses one on a partition it is not fetching, as around a
   * broker restart) is tried again after a backoff with the partition still paused: resuming
   * without it would skip what was discarded, and later commits would move past it.
   */
  private seekThenResume(consumer: RdConsumer, topic: string, partition: number, at: number, generation: number, attempt: number): void {
    const key = keyOf(topic, partition)
    consumer.seek({ topic, partition, offset: at }, 5000, (err) => {
      if (generation !== this.generation) return
      if (err) {
        this.events?.emit('kafka.log', { level: 'warn', logger: 'rdkafka.seek', message: `seek of ${key} to ${at} failed (attempt ${attempt}): ${err.message}; trying again` })
        setTimeout(() => {
          if (generation === this.generation && this.running) this.seekThenResume(consumer, topic, partition, at, generation, attempt + 1)
        }, backoffDelay(attempt, RECONNECT_POLICY))
        return
      }
      this.skipped.delete(key)
      this.paused.delete(key)
      consumer.resume([{ topic, partition }])
    })
  }

  async commit(offsets: TopicPartitionOffset[]): Promise<void> {
    if (!offsets.length || !this.consumer) return
    this.consumer.commit(offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: Number(o.offset) })))
  }

  async stop(): Promise<void> {
    this.running = false
    await this.loop
    this.closing = true
    // Leaving the group sends the commits still on their way first.
    if (this.consumer) await disconnect(this.consumer)
  }
}

function tryTo(fn: () => unknown) {
  try {
    fn()
  } catch {
    // Nothing to do: the caller goes on without it.
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
