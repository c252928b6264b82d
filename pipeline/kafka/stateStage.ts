import { DEFAULT_CACHED_CUSTOMERS, PartitionProcessor } from '../processor.ts'
import type { BatchOutput, StreamMessage } from '../stream.ts'
import { emptyOutput } from '../stream.ts'
import type { StateStore } from '../store/types.ts'
import type { SourceCoordinates } from '../decode.ts'
import type { InputEvent } from '../../schemas/events.ts'
import type { DeadLetter } from '../../schemas/deadLetter.ts'
import { allIdle } from '../sourceMarks.ts'
import type { Catalog } from '../../schemas/catalog.ts'
import { FencedError } from '../../core/errors.ts'
import { errText, type Instrumentation } from '../../core/instrumentation.ts'
import { readToEnd, type GroupConsumer, type KafkaAdmin, type KafkaClient, type PartitionBatch } from './types.ts'

/**
 * The state stage: reads the internal events topic and runs each partition's `PartitionProcessor`,
 * which commits state, timers, the applied offset and the outbox to the store in one step; the
 * Kafka offset is committed after that. A partition another consumer has moved on is fenced: its
 * cached state is dropped and reloaded from the store. Each partition's watermark is the minimum
 * of its sources' marks (the watermark records ingest publishes, pipeline/sourceMarks.ts); every
 * partition of the input topics counts as a source, heard from or not.
 */

export interface StateStageOptions {
  kafka: KafkaClient
  store: StateStore
  catalog: () => Catalog
  /** A draft catalogue evaluated beside the live one (processor.ts, `shadowCatalog`). */
  shadowCatalog?: () => Catalog | undefined
  groupId: string
  eventsTopic: string
  sessionTimeout: number
  /** How far behind the watermark an event may arrive and still be applied (at once). */
  allowedLateness: number
  /**
   * How long a caught-up partition whose sources are all idle goes without an event before its
   * event time follows the wall clock (less this much).
   */
  idleAdvance: number
  /** For the partitions of the input topics: each is a source that holds the watermark until heard from. */
  admin: KafkaAdmin
  inputTopics: string[]
  instrumentation: Instrumentation
  /** Called as soon as a step's commit is in the store, with its output (`run` nudges the outbox drain). */
  onCommitted?: (partition: number, out: BatchOutput) => void
  /** Customer records this stage keeps decoded, shared evenly among the partitions it owns (default processor.ts's). */
  cachedCustomers?: number
}

/** How often idle partitions are looked for. */
const IDLE_TICK_MS = 500

/** Steps taken again after a fence before the batch is left to Kafka to deliver again. */
const FENCED_RETRIES = 3

export class StateStage {
  private readonly consumer: GroupConsumer
  private readonly events: Instrumentation
  private readonly processors = new Map<number, PartitionProcessor>()
  /** The last step of each partition: batches and idle advances of one partition never overlap. */
  private readonly locks = new Map<number, Promise<unknown>>()
  private readonly lastActivity = new Map<number, number>()
  /** Whether the partition's last batch reached the end of the topic (no consumer lag). */
  private readonly atEnd = new Map<number, boolean>()
  private assignment: number[] = []
  private idleTicker?: NodeJS.Timeout
  /** The input partitions (`<topic>|<partition>`), from the topics' metadata. */
  private sources: string[] = []

  constructor(private readonly opts: StateStageOptions) {
    this.events = opts.instrumentation
    this.consumer = opts.kafka.groupConsumer({
      groupId: opts.groupId,
      topics: [opts.eventsTopic],
      sessionTimeout: opts.sessionTimeout,
      eachBatch: (batch) => this.take(batch),
      onAssigned: (assignment) => this.assigned(assignment.filter((tp) => tp.topic === opts.eventsTopic).map((tp) => tp.partition)),
    })
  }

  /** The partitions of the events topic this process owns now, in order. */
  owned(): number[] {
    return this.assignment
  }

  async start(): Promise<void> {
    await this.refreshSources()
    await this.consumer.start()
    this.idleTicker = setInterval(() => this.advanceIdle(), IDLE_TICK_MS)
  }

  /** Stops reading, and waits for the steps under way to commit. */
  async stop(): Promise<void> {
    clearInterval(this.idleTicker)
    await this.consumer.stop()
    await Promise.all([...this.locks.values()].map((l) => l.catch(() => {})))
  }

  /** Input partitions added since start are sources too; until this sees them, their marks alone make them known. */
  private async refreshSources(): Promise<void> {
    const { admin, inputTopics } = this.opts
    this.sources = (await Promise.all(inputTopics.map(async (topic) => (await admin.partitions(topic)).map((p) => `${topic}|${p}`)))).flat()
  }

  private assigned(partitions: number[]): void {
    this.refreshSources().catch((e) => this.events.emit('pipeline.sources_unknown', { err: errText(e) }))
    this.assignment = partitions.slice().sort((a, b) => a - b)
    // State may have moved while another consumer owned a partition: reload it from the store.
    for (const p of this.processors.values()) p.reset()
    // A partition with no batch since the assignment counts as idle once idleAdvance has passed.
    for (const partition of this.assignment) {
      this.lastActivity.set(partition, Date.now())
      this.atEnd.set(partition, true)
    }
    this.events.emit('pipeline.assigned', { partitions: this.assignment })
  }

  private async take(batch: PartitionBatch): Promise<void> {
    const { topic, partition } = batch
    let input = false
    const messages: StreamMessage[] = []
    for (const m of batch.messages) {
      const value = JSON.parse(m.value!.toString('utf8'))
      if (value.marks) {
        messages.push({ offset: m.offset, marks: value.marks })
        continue
      }
      input = true
      // A pack's events share its offset: a batch holds whole records, so they are applied (or skipped) together.
      if (value.pack) for (const item of value.pack) messages.push(streamItem(m.offset, item))
      else messages.push(streamItem(m.offset, value))
    }
    const started = performance.now()
    const out = await this.step(partition, (p) => p.process(messages))
    // Fenced and no longer ours: the new owner reads on from the offset committed last.
    if (!out) return
    this.events.emit('pipeline.batch_end', { ...out, partition, seconds: (performance.now() - started) / 1000 })
    const now = Date.now()
    if (input) this.lastActivity.set(partition, now)
    this.atEnd.set(partition, readToEnd(batch))
    this.events.emit('pipeline.watermark', { partition, watermark: this.processorFor(partition).watermark, now })
    // Only now that the store has the batch: a crash before this reads it again, and the store skips what it applied.
    await this.consumer.commit([{ topic, partition, offset: String(BigInt(batch.lastOffset) + 1n) }])
  }

  /**
   * An idle partition's event time follows the wall clock, so timers still fire. A partition is
   * idle when it has read its topic to the end, took in no event for `idleAdvance`, and every
   * source says it is idle (read to its end, nothing held): then nothing is on its way, and an
   * event that is will be newer than the wall clock less `idleAdvance`, or be applied as late.
   * A partition any source of which still works through a backlog keeps its own clock.
   */
  private advanceIdle(): void {
    const { idleAdvance } = this.opts
    const now = Date.now()
    for (const partition of this.assignment) {
      if (now - (this.lastActivity.get(partition) ?? 0) < idleAdvance || this.atEnd.get(partition) === false) continue
      const processor = this.processors.get(partition)
      // What the sources said is read from the store once (a partition this process has not stepped yet).
      if (processor?.loaded && !allIdle(processor.sourceStates, this.sources)) continue
      this.step(partition, async (p) => {
        await p.ensureLoaded()
        if (!allIdle(p.sourceStates, this.sources)) return emptyOutput()
        this.lastActivity.set(partition, now)
        return p.advanceTo(now - idleAdvance)
      })
        .then((out) => out && this.events.emit('pipeline.batch_end', { ...out, partition }))
        .catch((e) => this.events.emit('pipeline.advance_failed', { partition, err: errText(e) }))
    }
  }

  /**
   * Runs one step of a partition after the one before it; `undefined` when the partition was
   * fenced and is no longer this process's. A fenced step is taken again on the state as the store
   * now holds it: another owner's commit (a consumer that has not yet learnt of a rebalance, or a
   * zombie) is then part of what the step builds on, so nothing is applied or fired twice.
   */
  private step(partition: number, fn: (p: PartitionProcessor) => Promise<BatchOutput>): Promise<BatchOutput | undefined> {
    const attempt = async (retries: number): Promise<BatchOutput | undefined> => {
      try {
        const out = await fn(this.processorFor(partition))
        this.opts.onCommitted?.(partition, out)
        return out
      } catch (e) {
        if (!(e instanceof FencedError)) throw e
        this.events.emit('pipeline.fenced', { partition, err: e.message })
        this.processors.get(partition)?.reset()
        if (retries > 0 && this.assignment.includes(partition)) return attempt(retries - 1)
        if (this.assignment.includes(partition)) throw e
        return undefined
      }
    }
    const run = (this.locks.get(partition) ?? Promise.resolve()).catch(() => {}).then(() => attempt(FENCED_RETRIES))
    this.locks.set(partition, run)
    return run
  }

  private processorFor(partition: number): PartitionProcessor {
    let p = this.processors.get(partition)
    if (!p) {
      const { store, catalog, shadowCatalog, allowedLateness } = this.opts
      p = new PartitionProcessor({
        partition,
        store,
        catalog,
        shadowCatalog,
        watermarks: { sources: () => this.sources },
        allowedLateness,
        // Live decisions are dated when they are made; late events' dead letters when they were found late.
        decisionTime: () => Date.now(),
        receivedAt: Date.now,
        outbox: { webhooks: true, alerts: true, rows: true, deadLetters: true },
        maxCachedCustomers: () => Math.floor((this.opts.cachedCustomers ?? DEFAULT_CACHED_CUSTOMERS) / Math.max(1, this.assignment.length)),
      })
      this.processors.set(partition, p)
    }
    return p
  }
}

/** One event (or bad input's dead letter) of the internal topic as the processor takes it. */
function streamItem(offset: string, item: { event?: InputEvent; source?: SourceCoordinates; deadLetter?: DeadLetter }): StreamMessage {
  return item.event ? { offset, event: item.event, at: Date.parse(item.event.occurredAt), source: item.source! } : { offset, deadLetter: item.deadLetter! }
}
