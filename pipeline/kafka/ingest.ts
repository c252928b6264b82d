import { decode, type Decoded, type SourceCoordinates } from '../decode.ts'
import { InputAlignment, type Released } from '../alignment.ts'
import { SourceClock, marksToSend, sameMarks, type Marks } from '../sourceMarks.ts'
import type { EventType } from '../../schemas/events.ts'
import type { DeadLetter } from '../../schemas/deadLetter.ts'
import { errText, type Instrumentation } from '../../core/instrumentation.ts'
import type { PipelineTopics } from './client.ts'
import { deadLetterKey } from './publish.ts'
import { eventsPartitionOf } from './partitioner.ts'
import { readToEnd, type GroupConsumer, type KafkaAdmin, type KafkaClient, type KafkaProducer, type PartitionBatch, type ProducedMessage, type TopicPartition } from './types.ts'

/**
 * The ingest stage: reads the three input topics, decodes and validates each message, aligns the
 * input partitions in event time (pipeline/alignment.ts), and re-publishes valid events to the
 * internal topic, packed per partition of their customer (bad input to the dead-letter topic
 * too). After the events it forwards, and whenever an input partition turns idle, it publishes a
 * watermark record to every partition of the internal topic: how far in event time each input
 * partition it owns has come (pipeline/sourceMarks.ts), so the state stage can wait for the
 * slowest source. Input offsets are committed only once what they cover has been re-published: a
 * fetched batch may wait in the alignment, and what waits must be fetched again after a crash.
 */

export interface IngestOptions {
  kafka: KafkaClient
  /** For the committed offsets and topic ends at an assignment. */
  admin: KafkaAdmin
  /** Idempotent; re-publishes with `acks: -1`. */
  producer: KafkaProducer
  topics: Pick<PipelineTopics, 'transactionsTopic' | 'appEventsTopic' | 'lifecycleTopic' | 'eventsTopic' | 'dlqTopic'>
  groupId: string
  sessionTimeout: number
  /** How far an event may trail the newest of its input partition: a partition's mark is its newest event less this. */
  maxDisorder: number
  /** How long an input partition read to its end forwards nothing before it is idle. */
  sourceIdleness: number
  /** How far ahead of the wall clock an event may be; one further ahead is dead-lettered. */
  maxClockSkew?: number
  instrumentation: Instrumentation
}

interface Fetched {
  source: SourceCoordinates
  decoded: Decoded
}

/** Bytes of re-published events per produce request: a quarter of Kafka's default message size limit. */
const PUBLISH_BYTES = 256 * 1024
/**
 * How often what the alignment may release, and which input partitions turned idle, is looked at
 * without a new batch (a partition's grace period running out, a source going quiet): a quarter
 * of SOURCE_IDLENESS, so a source is reported idle soon after it is, within these bounds.
 */
const tickMs = (sourceIdleness: number) => Math.min(200, Math.max(10, sourceIdleness / 4))
/**
 * How far the alignment lets one input partition run ahead of another that has a backlog. Only
 * an economy now (the state stage waits for the slowest source whatever the order): events that
 * run ahead wait in the state stage's inboxes, so it bounds what they hold.
 */
export const ALIGNMENT_DRIFT_MS = 15_000

/** How often a watermark record carries every mark, not only those that changed. */
const WHOLE_MARKS_EVERY_MS = 1000

export class IngestStage {
  private readonly consumer: GroupConsumer
  private readonly alignment: InputAlignment<Fetched>
  private readonly typeOf: Map<string, EventType>
  private readonly events: Instrumentation
  /** Forwarding is one step at a time: batches, the grace ticker and rebalances take turns. */
  private forwarding: Promise<unknown> = Promise.resolve()
  private ticker?: NodeJS.Timeout
  private readonly clock: SourceClock
  /** The marks last published, so an unchanged set is not sent again on a tick, and a record says only what changed. */
  private published: Marks = {}
  /** When every mark was last sent whole (`marksToSend`). */
  private wholeMarksAt = 0
  /** Partitions of the internal topic: every one gets every watermark record. */
  private eventPartitions: number[] = []

  constructor(private readonly opts: IngestOptions) {
    const { topics } = opts
    this.events = opts.instrumentation
    this.typeOf = new Map<string, EventType>([
      [topics.transactionsTopic, 'transaction'],
      [topics.appEventsTopic, 'app'],
      [topics.lifecycleTopic, 'lifecycle'],
    ])
    this.consumer = opts.kafka.groupConsumer({
      groupId: opts.groupId,
      topics: [...this.typeOf.keys()],
      sessionTimeout: opts.sessionTimeout,
      eachBatch: (batch) => this.take(batch),
      onAssigned: (assignment) => this.assigned(assignment),
      // While partitions move, say nothing of them: a former owner's word must not follow the new one's.
      onRebalancing: () => void this.inTurn(async () => this.clock.assign([])),
    })
    this.alignment = new InputAlignment<Fetched>(ALIGNMENT_DRIFT_MS)
    this.clock = new SourceClock(opts.maxDisorder, opts.sourceIdleness)
  }

  async start(): Promise<void> {
    await this.refreshEventPartitions()
    await this.consumer.start()
    // A partition that never sends its first batch stops holding the others after a grace period;
    // a source that goes quiet is reported idle.
    this.ticker = setInterval(() => void this.inTurn(() => this.tick()).catch((e) => this.events.emit('ingest.forward_failed', { err: errText(e) })), tickMs(this.opts.sourceIdleness))
  }

  /** Stops fetching; what waits in the alignment is fetched again from the committed offsets next time. */
  async stop(): Promise<void> {
    clearInterval(this.ticker)
    await this.consumer.stop()
  }

  private inTurn<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.forwarding.catch(() => {}).then(fn)
    this.forwarding = next
    return next
  }

  private async take(batch: PartitionBatch): Promise<void> {
    const expected = this.typeOf.get(batch.topic)
    const held = batch.messages.map((m) => {
      const source = { topic: batch.topic, partition: batch.partition, offset: m.offset }
      const decoded = decode(m.value ?? Buffer.alloc(0), source, expected, Date.now(), this.opts.maxClockSkew)
      return { at: decoded.ok ? Date.parse(decoded.event.occurredAt) : undefined, item: { source, decoded } }
    })
    const key = partitionKey(batch.topic, batch.partition)
    await this.inTurn(async () => {
      this.alignment.add(key, held, readToEnd(batch))
      this.events.emit('ingest.fetched', { topic: batch.topic, partition: batch.partition, messages: held.length, held: this.alignment.heldCount() })
      // Fetching goes on from after this batch, once all of it has gone.
      await this.forward()
      if (this.alignment.holding(key)) this.consumer.pause([{ topic: batch.topic, partition: batch.partition }])
    })
  }

  /**
   * Sends what the alignment releases, commits the input offsets it covers, and fetches again the
   * partitions it emptied. What fails to go stays held and goes on a later batch or tick.
   */
  private async forward(): Promise<void> {
    const released = this.alignment.release()
    if (!released.length) return
    try {
      await this.publish(released)
    } catch (e) {
      this.alignment.restore(released)
      this.events.emit('ingest.forward_failed', { err: errText(e) })
      return
    }
    const valid: Record<string, number> = {}
    const deadLetters: DeadLetter[] = []
    for (const { item } of released) {
      if (item.decoded.ok) valid[item.decoded.event.type] = (valid[item.decoded.event.type] ?? 0) + 1
      else deadLetters.push(item.decoded.deadLetter)
    }
    for (const { key, at } of released) this.clock.forwarded(key, at)
    this.events.emit('ingest.forwarded', { valid, held: this.alignment.heldCount(), deadLetters })
    const emptied = [...new Set(released.map((r) => r.key))].filter((key) => !this.alignment.holding(key))
    if (emptied.length) this.consumer.resume(emptied.map(topicPartition))
  }

  /** Forwards what may go, then publishes the sources' marks if they changed (a source turned idle). */
  private async tick(): Promise<void> {
    await this.forward()
    const marks = this.clock.marks((key) => this.alignment.drained(key))
    if (sameMarks(marks, this.published) || !Object.keys(marks).length) return
    const records = this.markRecords(marks)
    if (records.length) await this.opts.producer.send([{ topic: this.opts.topics.eventsTopic, messages: records }])
    this.published = marks
  }

  /**
   * One watermark record per partition of the internal topic, with the marks that changed since
   * the last record (all of them once a second). Under live load a record follows every publish:
   * sent whole, the marks of every input partition outweighed the events they followed.
   */
  private markRecords(marks: Marks): ProducedMessage[] {
    const now = Date.now()
    const whole = now - this.wholeMarksAt >= WHOLE_MARKS_EVERY_MS
    if (whole) this.wholeMarksAt = now
    const send = marksToSend(marks, this.published, whole)
    if (!Object.keys(send).length) return []
    const value = JSON.stringify({ marks: send })
    return this.eventPartitions.map((partition) => ({ key: 'marks', value, partition }))
  }

  private async refreshEventPartitions(): Promise<void> {
    this.eventPartitions = await this.opts.admin.partitions(this.opts.topics.eventsTopic)
  }

  /**
   * Re-publishes released input to the internal topic (bad input to the dead-letter topic too),
   * then the sources' marks after them in the same ordered stream (a mark never overtakes the
   * events it vouches for), then commits the input offsets it covers. Events bound for the same
   * partition travel packed in one record (`packRecord`): Kafka's per-record work (key hash,
   * varints, CRC, and the same again when the state stage reads them) is paid once for about a
   * hundred events. Requests stay well under Kafka's default 1 MiB message limit.
   */
  private async publish(released: Released<Fetched>[]): Promise<void> {
    const { producer, topics } = this.opts
    const partitions = this.eventPartitions.length
    let packs = new Map<number, string[]>()
    let deadLetters: ProducedMessage[] = []
    let bytes = 0
    const send = async (marks: ProducedMessage[] = []) => {
      const events = [...packs].map(([partition, items]) => packRecord(partition, items))
      await producer.send([
        { topic: topics.eventsTopic, messages: events.concat(marks) },
        { topic: topics.dlqTopic, messages: deadLetters },
      ])
      packs = new Map()
      deadLetters = []
      bytes = 0
    }
    const offsets = new Map<string, string>()
    for (const { key, item } of released) {
      const { source, decoded } = item
      offsets.set(key, source.offset)
      let route: string
      let value: string
      if (decoded.ok) {
        route = decoded.event.customerId
        value = JSON.stringify({ event: decoded.event, source })
      } else {
        const q = JSON.stringify(decoded.deadLetter)
        deadLetters.push({ key: deadLetterKey(decoded.deadLetter), value: q })
        bytes += q.length
        // Its ClickHouse row travels with the state stage's outbox, like every other row.
        route = `${source.topic}:${source.partition}`
        value = `{"deadLetter":${q}}`
      }
      const partition = eventsPartitionOf(route, partitions)
      const pack = packs.get(partition)
      if (pack) pack.push(value)
      else packs.set(partition, [value])
      bytes += value.length
      if (bytes >= PUBLISH_BYTES) await send()
    }
    const marks = this.clock.marks((key) => this.alignment.drained(key), released)
    await send(this.markRecords(marks))
    this.published = marks
    await this.consumer.commit([...offsets].map(([key, offset]) => ({ ...topicPartition(key), offset: String(BigInt(offset) + 1n) })))
  }

  /** A new assignment: what was held is fetched again from the committed offsets, so start with nothing paused. */
  private assigned(assignment: TopicPartition[]): void {
    void this.inTurn(async () => {
      this.consumer.resume(assignment)
      this.clock.assign(assignment.map(({ topic, partition }) => partitionKey(topic, partition)))
      this.published = {}
      await this.refreshEventPartitions()
      this.alignment.assign(await this.backlogs(assignment))
    }).catch((e) => {
      // Without the backlog figures, every partition counts as having one until its first batch.
      this.alignment.assign([])
      this.events.emit('ingest.backlog_unknown', { err: errText(e) })
    })
  }

  /** Which assigned partitions have input waiting after their committed offset. */
  private async backlogs(assignment: TopicPartition[]): Promise<{ key: string; backlog: boolean }[]> {
    const { admin, groupId } = this.opts
    const topics = [...new Set(assignment.map((tp) => tp.topic))]
    const committed = new Map<string, bigint>((await admin.committedOffsets(groupId, topics)).map((c) => [partitionKey(c.topic, c.partition), BigInt(c.offset)] as const))
    const positions: { key: string; backlog: boolean }[] = []
    for (const topic of topics) {
      const ends = await admin.topicOffsets(topic)
      for (const { partition } of assignment.filter((tp) => tp.topic === topic)) {
        const key = partitionKey(topic, partition)
        const end = ends.find((o) => o.partition === partition)
        const from = committed.get(key) ?? -1n
        positions.push({ key, backlog: end !== undefined && BigInt(end.high) > (from < 0n ? BigInt(end.low) : from) })
      }
    }
    return positions
  }
}

/**
 * Events for one partition of the internal topic, in order, as one record: `{"pack":[item, …]}`,
 * each item `{"event", "source"}` or `{"deadLetter"}` (the state stage reads single items too).
 */
const packRecord = (partition: number, items: string[]): ProducedMessage => ({ key: 'pack', value: `{"pack":[${items.join(',')}]}`, partition })

const partitionKey = (topic: string, partition: number) => `${topic}|${partition}`
const topicPartition = (key: string): TopicPartition => ({ topic: key.slice(0, key.lastIndexOf('|')), partition: Number(key.slice(key.lastIndexOf('|') + 1)) })
