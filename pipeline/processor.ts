import type { Catalog } from '../schemas/catalog.ts'
import type { Operator } from '../operators/types.ts'
import type { OutboxRow, PendingWebhook, WebhookCancellation } from '../schemas/outbox.ts'
import type { DeliveryRow } from '../sinks/webhook/dispatcher.ts'
import { OPERATORS } from '../operators/index.ts'
import { initialProfile } from '../operators/profile.ts'
import { initialFacts } from '../operators/facts.ts'
import { initialPolicyState } from './policy.ts'
import { Batch, watermarkAfter, type BatchContext } from './batch.ts'
import type { BatchOutput, Cancellation, StreamMessage } from './stream.ts'
import { NO_MARK, foldMarks, watermarkOf, type SourceStates } from './sourceMarks.ts'
import { OperatorHost } from './operatorHost.ts'
import { timerCustomer, type TimerEntry } from './timers.ts'
import type { CustomerRecord, StateStore } from './store/types.ts'

/**
 * Runs the operators and the decision step over one partition's stream, in event time.
 * Per batch: load what it needs in one round trip, apply events and due timers in order
 * (pipeline/batch.ts), then commit state, timers, the applied offset and the outbox in one atomic
 * step.
 */


export interface ProcessorOptions {
  partition: number
  store: StateStore
  catalog: () => Catalog
  /**
   * A draft catalogue evaluated beside the live one on the same moments: its decisions are
   * recorded (`shadow_decisions` rows, `BatchOutput.shadowDecisions`), never sent, and its ledger
   * is kept apart from the live one. Absent or returning undefined: none.
   */
  shadowCatalog?: () => Catalog | undefined
  /**
   * Where the watermark comes from. `{ maxDisorder }`: the partition's own events (replay, demo),
   * trailing the newest by that much. `{ sources }`: the sources' watermark records in the stream
   * (the live state stage), the minimum over the sources not idle; `sources` lists the input
   * partitions known to exist, which hold the watermark until heard from.
   */
  watermarks: { maxDisorder: number } | { sources: () => Iterable<string> }
  /** How far behind the watermark an event may arrive and still be applied (at once); later ones are dead-lettered. */
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
  /**
   * Most event ids remembered per customer for deduplication (the newest are kept). Ids are kept
   * while their event is within the allowed lateness; a customer with more events than this in
   * that span forgets the oldest, and a repeat of one of those would be applied again.
   */
  seenPerCustomer?: number
  /**
   * Customers kept in the write-through cache before the oldest are dropped: a number, or the
   * partition's share of a budget that depends on how many partitions its stage owns now.
   */
  maxCachedCustomers?: number | (() => number)
}

const NO_WATERMARK = NO_MARK

export const DEFAULT_CACHED_CUSTOMERS = 100_000

export class PartitionProcessor {
  private readonly cache = new Map<string, CustomerRecord>()
  private appliedOffset: string | null = null
  /** The partition's commits as of what this processor holds: its next commit expects exactly this. */
  private version = 0
  private wm = NO_WATERMARK
  /** What each source said last (live only), persisted with the applied offset. */
  private sources: SourceStates = {}
  private isLoaded = false
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
      shadowCatalog: opts.shadowCatalog ?? (() => undefined),
      decisionTime: opts.decisionTime,
      receivedAt: opts.receivedAt ?? (() => null),
      allowedLateness: opts.allowedLateness,
      maxDisorder: 'maxDisorder' in opts.watermarks ? opts.watermarks.maxDisorder : null,
      seenPerCustomer: opts.seenPerCustomer ?? 256,
      clickhouseRows: opts.outbox.rows,
    }
  }

  get partition() {
    return this.opts.partition
  }

  get watermark() {
    return this.wm
  }

  /** Whether the partition's meta has been read since the last reset. */
  get loaded() {
    return this.isLoaded
  }

  /** What the partition knows of its sources (live only). */
  get sourceStates(): Readonly<SourceStates> {
    return this.sources
  }

  /** Customer records held decoded now. */
  get cachedCustomers() {
    return this.cache.size
  }

  /** Drops cached state, e.g. when the partition is revoked; the store stays the truth. */
  reset() {
    this.cache.clear()
    this.isLoaded = false
  }

  async process(messages: StreamMessage[]): Promise<BatchOutput> {
    const customerIds: string[] = []
    for (const m of messages) if ('event' in m) customerIds.push(m.event.customerId)
    // Timers due by the watermark the batch will end at are loaded with its customers.
    const batch = await this.begin(customerIds, () => this.finalWatermark(messages))
    // Offsets increase, so what was applied before (a batch redelivered after a crash) is a prefix.
    let first = 0
    if (this.appliedOffset !== null) {
      const applied = BigInt(this.appliedOffset)
      while (first < messages.length && BigInt(messages[first].offset) <= applied) first++
    }
    batch.out.skipped = first
    // A copy of its own for the batch to fold its records into: the store may hold the last one committed.
    if (messages.some((m) => 'marks' in m)) this.sources = { ...this.sources }
    for (let i = first; i < messages.length; i++) {
      const m = messages[i]
      if ('event' in m) batch.applyEvent(m)
      else if ('marks' in m) {
        foldMarks(this.sources, m.marks)
        this.advanceBySources()
        batch.fireTimers(this.wm)
      } else batch.out.passedThrough.push(m.deadLetter)
    }
    batch.fireTimers(this.wm)
    // A batch redelivered after a crash may end before what was applied (Kafka cuts it otherwise):
    // the applied offset never moves back, or the next batch would apply its events again.
    return this.commit(batch, first < messages.length ? messages[messages.length - 1].offset : this.appliedOffset)
  }

  /** The watermark after these messages (for the timers to load): never lower than the one they end at. */
  private finalWatermark(messages: StreamMessage[]): number {
    const { watermarks } = this.opts
    if ('maxDisorder' in watermarks) {
      let newest = NO_WATERMARK
      for (const m of messages) if ('event' in m && m.at > newest) newest = m.at
      return Math.max(this.wm, watermarkAfter(newest, watermarks.maxDisorder))
    }
    const known = { ...this.sources }
    for (const m of messages) if ('marks' in m) foldMarks(known, m.marks)
    return Math.max(this.wm, watermarkOf(known, watermarks.sources()) ?? NO_WATERMARK)
  }

  private advanceBySources() {
    const { watermarks } = this.opts
    if ('maxDisorder' in watermarks) return
    const to = watermarkOf(this.sources, watermarks.sources())
    if (to !== undefined && to > this.wm) this.wm = to
  }

  /** Moves the watermark forward with no event (end of input, or an idle live partition). */
  async advanceTo(watermark: number): Promise<BatchOutput> {
    const batch = await this.begin([], () => Math.max(this.wm, watermark))
    this.wm = Math.max(this.wm, watermark)
    batch.fireTimers(this.wm)
    return this.commit(batch, this.appliedOffset)
  }

  /** Reads the partition's meta (applied offset, watermark, sources) from the store, once after each reset. */
  async ensureLoaded(): Promise<void> {
    if (this.isLoaded) return
    const meta = await this.opts.store.load(this.opts.partition, [], -Infinity)
    this.appliedOffset = meta.appliedOffset
    this.version = meta.version
    this.wm = Math.max(meta.watermark, NO_WATERMARK)
    this.sources = meta.sources ?? {}
    this.isLoaded = true
  }

  private async begin(customerIds: string[], timersUpTo: () => number): Promise<Batch> {
    const { store, partition } = this.opts
    // The partition's meta first: where its watermark and sources stand decides which timers are due.
    await this.ensureLoaded()
    const missing = [...new Set(customerIds)].filter((id) => !this.cache.has(id))
    const loaded = await store.load(partition, missing, timersUpTo())
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
          ...this.shadowRows(out),
          ...out.alerts.map((row) => ({ table: 'alerts', row })),
          ...[...out.passedThrough, ...out.deadLetters].map((row) => ({ table: 'dead_letters', row })),
          ...out.conversions.map((row) => ({ table: 'conversions', row })),
          ...batch.cardEvents.map((row) => ({ table: 'card_events', row })),
          ...batch.volumeRows(partition),
        ]
      : []
    const deadLetters = outbox.deadLetters ? out.deadLetters : []
    const cancellations = outbox.webhooks ? out.cancellations.map((c) => this.cancellation(c)) : []
    // A watermark that moved with nothing else need not be written: timers at or before it are gone.
    const nothingChanged =
      offset === this.appliedOffset && !customers.size && !timersSet.length && !timersRemoved.length && !rows.length && !deadLetters.length
    if (!nothingChanged) {
      const { cancelled } = await store.commit({
        partition,
        expectedOffset: this.appliedOffset,
        expectedVersion: this.version,
        offset,
        watermark: this.wm,
        ...('sources' in this.opts.watermarks ? { sources: this.sources } : {}),
        customers,
        timersSet,
        timersRemoved,
        webhooks,
        ...(cancellations.length ? { cancellations } : {}),
        alerts: outbox.alerts ? out.alerts : [],
        deadLetters,
        rows,
      })
      this.version++
      if (cancelled.length) {
        const done = new Set(cancelled)
        out.cancelled = out.cancellations.filter((c) => done.delete(c.decisionId))
      }
    }
    this.appliedOffset = offset
    this.evictIfFull()
    return out
  }

  /** ClickHouse rows of the shadow decisions, each with what its channel costs under the draft's economics. */
  private shadowRows(out: BatchOutput): OutboxRow[] {
    if (!out.shadowDecisions.length) return []
    const costs = this.opts.shadowCatalog?.()?.economics.channelCost
    return out.shadowDecisions.map((d) => ({
      table: 'shadow_decisions',
      row: { ...d, channelCost: d.outcome === 'send' && d.channel && costs ? costs[d.channel] : 0 },
    }))
  }

  /** The store's request for a cancellation: the decision and its `deliveries` row (status cancelled). */
  private cancellation(c: Cancellation): WebhookCancellation {
    const row: DeliveryRow = {
      decisionId: c.decisionId,
      trigger: c.trigger,
      customerId: c.customerId,
      channel: c.channel,
      status: 'cancelled',
      // Both filled by the store from the pending webhook.
      attempts: 0,
      decidedAt: '',
      httpStatus: null,
      latencyMs: null,
      error: null,
      deliveredAt: null,
      eventTime: new Date(c.eventTime).toISOString(),
      finishedAt: new Date(this.opts.decisionTime(c.at)).toISOString(),
      cancelReason: c.reason,
      cancelledBy: c.cause,
    }
    return { decisionId: c.decisionId, row: { table: 'deliveries', row } }
  }

  private evictIfFull() {
    const setting = this.opts.maxCachedCustomers ?? DEFAULT_CACHED_CUSTOMERS
    const max = typeof setting === 'function' ? setting() : setting
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
