import type { Catalog } from '../schemas/catalog.ts'
import type { Operator } from '../operators/types.ts'
import type { OutboxRow, PendingWebhook } from '../schemas/outbox.ts'
import { OPERATORS } from '../operators/index.ts'
import { initialProfile } from '../operators/profile.ts'
import { initialFacts } from '../operators/facts.ts'
import { initialPolicyState } from './policy.ts'
import { Batch, watermarkAfter, type BatchContext, type BatchOutput, type StreamMessage } from './batch.ts'
import { OperatorHost } from './operatorHost.ts'
import { timerCustomer, type TimerEntry } from './timers.ts'
import type { CustomerRecord, StateStore } from './store/types.ts'

/**
 * Runs the operators and the decision step over one partition's stream, in event time.
 * Per batch: load what it needs in one round trip, apply events and due timers in order
 * (pipeline/batch.ts), then commit state, timers, the applied offset and the outbox in one atomic
 * step.
 */

export type { BatchOutput, StreamMessage } from './batch.ts'

export interface ProcessorOptions {
  partition: number
  store: StateStore
  catalog: () => Catalog
  /** Events older than the newest event by more than this are late: dead-lettered, not applied. */
  allowedLateness: number
  /**
   * When decisions and alerts about that event time are made: the event time itself in replay and
   * demo (`atEventTime` of pipeline/policy.ts), so that their output is reproducible; the wall
   * clock in `run`.
   */
  decisionTime: (eventTime: number) => number
  /** Wall clock for the `receivedAt` of late events' dead letters; left out when absent (replay, demo). */
  receivedAt?: () => number
  /**
   * What the commit puts in the store's outbox for sinks to drain. `deadLetters`: late events'
   * dead letters, for the live pipeline's dead-letter topic (default none).
   */
  outbox: { webhooks: boolean; alerts: boolean; rows: boolean; deadLetters?: boolean }
  operators?: readonly Operator<any, any>[]
  /** Most event ids remembered per customer for deduplication (the newest are kept). */
  seenPerCustomer?: number
  /** Customers kept in the write-through cache before the oldest are dropped. */
  maxCachedCustomers?: number
}

const NO_WATERMARK = -8.64e15

export class PartitionProcessor {
  private readonly cache = new Map<string, CustomerRecord>()
  private appliedOffset: string | null = null
  private wm = NO_WATERMARK
  private loaded = false
  private readonly host: OperatorHost
  /** What each batch may see of this partition. */
  private readonly batchContext: BatchContext

  constructor(private readonly opts: ProcessorOptions) {
    this.host = new OperatorHost(opts.operators ?? OPERATORS, opts.catalog)
    this.batchContext = {
      record: (customerId) => this.record(customerId),
      watermark: () => this.wm,
      advanceWatermark: (to) => {
        if (to > this.wm) this.wm = to
      },
      operators: this.host,
      catalog: opts.catalog,
      decisionTime: opts.decisionTime,
      receivedAt: opts.receivedAt ?? (() => null),
      allowedLateness: opts.allowedLateness,
      seenPerCustomer: opts.seenPerCustomer ?? 64,
      cardEvents: opts.outbox.rows,
    }
  }

  get partition() {
    return this.opts.partition
  }

  get watermark() {
    return this.wm
  }

  /** Drops cached state, e.g. when the partition is revoked; the store stays the truth. */
  reset() {
    this.cache.clear()
    this.loaded = false
  }

  async process(messages: StreamMessage[]): Promise<BatchOutput> {
    let maxEventTime = NO_WATERMARK
    const customerIds: string[] = []
    for (const m of messages) {
      if (!('event' in m)) continue
      if (m.at > maxEventTime) maxEventTime = m.at
      customerIds.push(m.event.customerId)
    }
    const batch = await this.begin(customerIds, Math.max(this.wm, watermarkAfter(maxEventTime, this.opts.allowedLateness)))
    // Offsets increase, so what was applied before (a batch redelivered after a crash) is a prefix.
    let first = 0
    if (this.appliedOffset !== null) {
      const applied = BigInt(this.appliedOffset)
      while (first < messages.length && BigInt(messages[first].offset) <= applied) first++
    }
    batch.out.skipped = first
    for (let i = first; i < messages.length; i++) {
      const m = messages[i]
      if ('event' in m) batch.applyEvent(m)
      else batch.out.passedThrough.push(m.deadLetter)
    }
    batch.fireTimers(this.wm)
    return this.commit(batch, messages.length ? messages[messages.length - 1].offset : this.appliedOffset)
  }

  /** Moves the watermark forward with no event (end of input, or an idle live partition). */
  async advanceTo(watermark: number): Promise<BatchOutput> {
    const batch = await this.begin([], Math.max(this.wm, watermark))
    this.wm = Math.max(this.wm, watermark)
    batch.fireTimers(this.wm)
    return this.commit(batch, this.appliedOffset)
  }

  private async begin(customerIds: string[], timersUpTo: number): Promise<Batch> {
    const { store, partition } = this.opts
    const missing = [...new Set(customerIds)].filter((id) => !this.cache.has(id))
    const loaded = await store.load(partition, missing, timersUpTo)
    if (!this.loaded) {
      this.appliedOffset = loaded.appliedOffset
      this.wm = Math.max(loaded.watermark, NO_WATERMARK)
      this.loaded = true
    }
    this.cacheLoaded(loaded.customers)
    // Timers may belong to customers with no event in this batch: fetch those too.
    const timerOwners = [...new Set(loaded.timers.map((t) => timerCustomer(t.member)))].filter((id) => !this.cache.has(id))
    if (timerOwners.length) this.cacheLoaded((await store.load(partition, timerOwners, NO_WATERMARK)).customers)
    return new Batch(this.batchContext, loaded.timers)
  }

  /** Records from the store may be an earlier release's: the operator host adopts them first. */
  private cacheLoaded(customers: Map<string, CustomerRecord>) {
    for (const [id, rec] of customers) {
      this.host.adopt(rec)
      this.cache.set(id, rec)
    }
  }

  private async commit(batch: Batch, offset: string | null): Promise<BatchOutput> {
    const { store, partition, outbox } = this.opts
    const timersSet: TimerEntry[] = []
    const timersRemoved: string[] = []
    for (const [member, at] of batch.timerChanges) at === null ? timersRemoved.push(member) : timersSet.push({ member, at })
    const customers = new Map<string, CustomerRecord>()
    for (const id of batch.changed) customers.set(id, this.cache.get(id)!)
    const out = batch.out
    const webhooks: PendingWebhook[] = outbox.webhooks
      ? out.decisions.filter((d) => d.outcome === 'send').map((decision) => ({ decision, attempts: 0, dueAt: Date.parse(decision.sendAt!) }))
      : []
    const rows: OutboxRow[] = outbox.rows
      ? [
          ...out.decisions.map((row) => ({ table: 'decisions', row })),
          ...out.alerts.map((row) => ({ table: 'alerts', row })),
          ...[...out.passedThrough, ...out.deadLetters].map((row) => ({ table: 'dead_letters', row })),
          ...out.conversions.map((row) => ({ table: 'conversions', row })),
          ...batch.cardEvents.map((row) => ({ table: 'card_events', row })),
          ...batch.volumeRows(partition),
        ]
      : []
    const deadLetters = outbox.deadLetters ? out.deadLetters : []
    // A watermark that moved with nothing else need not be written: timers at or before it are gone.
    const nothingChanged =
      offset === this.appliedOffset && !customers.size && !timersSet.length && !timersRemoved.length && !rows.length && !deadLetters.length
    if (!nothingChanged) {
      await store.commit({
        partition,
        expectedOffset: this.appliedOffset,
        offset,
        watermark: this.wm,
        customers,
        timersSet,
        timersRemoved,
        webhooks,
        alerts: outbox.alerts ? out.alerts : [],
        deadLetters,
        rows,
      })
    }
    this.appliedOffset = offset
    this.evictIfFull()
    return out
  }

  private evictIfFull() {
    const max = this.opts.maxCachedCustomers ?? 200_000
    if (this.cache.size <= max) return
    const drop = this.cache.size - Math.floor(max * 0.9)
    let i = 0
    for (const id of this.cache.keys()) {
      if (i++ >= drop) break
      this.cache.delete(id)
    }
  }

  /** The customer's record: cached, or new for a customer never seen. */
  private record(customerId: string): CustomerRecord {
    let rec = this.cache.get(customerId)
    if (!rec) {
      rec = { v: 1, seen: [], profile: initialProfile(), facts: initialFacts(), policy: initialPolicyState(), ops: {} }
      this.cache.set(customerId, rec)
    }
    return rec
  }
}
