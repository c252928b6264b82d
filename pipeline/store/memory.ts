import type { RiskAlert } from '../../schemas/alert.ts'
import type { DeadLetter } from '../../schemas/deadLetter.ts'
import {
  CHANNELS,
  type BatchCommit,
  type CommitOutcome,
  type CustomerRecord,
  type LoadedBatch,
  type StateStore,
} from './types.ts'
import { FencedError } from '../../core/errors.ts'
import type { OutboxEntry, OutboxRow, PendingWebhook } from '../../schemas/outbox.ts'
import { TimerHeap } from '../timers.ts'
import type { Channel } from '../../schemas/events.ts'
import type { OutboxBacklog } from '../../sinks/monitor.ts'

/** The embedded state store: the same contract as Redis, in this process's memory. */

interface PartitionData {
  appliedOffset: string | null
  version: number
  watermark: number
  sources?: string
  customers: Map<string, string | CustomerRecord>
  timers: TimerHeap
  rows: OutboxQueue<OutboxRow>
  alerts: OutboxQueue<RiskAlert>
  deadLetters: OutboxQueue<DeadLetter>
  webhooks: Map<string, PendingWebhook>
  /**
   * Webhooks a dispatcher has claimed and is sending: null, or the cancelled row of a
   * cancellation that came meanwhile, applied if the attempt does not deliver (docs/webhooks.md).
   */
  claims: Map<string, OutboxRow | null>
}

/** An outbox queue in commit order; each entry's id is a sequence number unique in the queue. */
class OutboxQueue<T> {
  private entries: OutboxEntry<T>[] = []
  private next = 0

  push(values: T[]) {
    for (const value of values) this.entries.push({ id: String(++this.next), value })
  }

  peek(max: number): OutboxEntry<T>[] {
    return this.entries.slice(0, Math.max(0, max))
  }

  ack(ids: string[]) {
    if (!ids.length) return
    const gone = new Set(ids)
    // Usually the drain acks what it peeked, the front of the queue: no need to scan the rest.
    let front = 0
    while (front < this.entries.length && gone.has(this.entries[front].id)) front++
    if (front === gone.size) this.entries.splice(0, front)
    else this.entries = this.entries.filter((e) => !gone.has(e.id))
  }
}

export class MemoryStore implements StateStore {
  private partitions = new Map<number, PartitionData>()
  /** Pending webhooks set aside by channel, per partition: still in `webhooks`, not due until moved back. */
  private parked = new Map<number, Map<string, Channel>>()

  private parkedOf(p: number): Map<string, Channel> {
    let m = this.parked.get(p)
    if (!m) this.parked.set(p, (m = new Map()))
    return m
  }

  /**
   * @param copy store records serialized, so callers never share objects with the store (as with
   * Redis). Embedded pipelines, whose processor is the only reader, pass false to skip the copies.
   */
  constructor(private readonly opts: { copy?: boolean } = {}) {}

  private part(p: number): PartitionData {
    let d = this.partitions.get(p)
    if (!d) {
      d = { appliedOffset: null, version: 0, watermark: -Infinity, customers: new Map(), timers: new TimerHeap(), rows: new OutboxQueue(), alerts: new OutboxQueue(), deadLetters: new OutboxQueue(), webhooks: new Map(), claims: new Map() }
      this.partitions.set(p, d)
    }
    return d
  }

  async load(partition: number, customerIds: string[], timersUpTo: number): Promise<LoadedBatch> {
    const d = this.part(partition)
    const customers = new Map<string, CustomerRecord>()
    for (const id of customerIds) {
      const stored = d.customers.get(id)
      if (stored) customers.set(id, typeof stored === 'string' ? JSON.parse(stored) : stored)
    }
    return { appliedOffset: d.appliedOffset, version: d.version, watermark: d.watermark, sources: d.sources === undefined ? undefined : JSON.parse(d.sources), customers, timers: d.timers.peekDue(timersUpTo) }
  }

  async commit(b: BatchCommit): Promise<CommitOutcome> {
    const d = this.part(b.partition)
    if (d.appliedOffset !== b.expectedOffset || (b.expectedVersion !== undefined && d.version !== b.expectedVersion)) throw new FencedError(b.partition, b.expectedOffset, d.appliedOffset, b.expectedVersion, d.version)
    d.appliedOffset = b.offset
    d.version++
    d.watermark = b.watermark
    if (b.sources) d.sources = JSON.stringify(b.sources)
    const copy = this.opts.copy !== false
    for (const [id, rec] of b.customers) d.customers.set(id, copy ? JSON.stringify(rec) : rec)
    for (const m of b.timersRemoved) d.timers.delete(m)
    for (const t of b.timersSet) d.timers.set(t.member, t.at)
    for (const w of b.webhooks) d.webhooks.set(w.decision.id, structuredClone(w))
    d.alerts.push(b.alerts)
    d.rows.push(b.rows)
    d.deadLetters.push(b.deadLetters)
    const cancelled: string[] = []
    for (const c of b.cancellations ?? []) {
      if (!d.webhooks.has(c.decisionId)) continue
      if (d.claims.has(c.decisionId)) {
        // Being sent: the attempt decides; the cancellation waits in the claim (the first reason stays).
        d.claims.set(c.decisionId, d.claims.get(c.decisionId) ?? structuredClone(c.row))
        continue
      }
      this.cancelNow(d, c.decisionId, c.row)
      cancelled.push(c.decisionId)
    }
    return { cancelled }
  }

  /** Removes a waiting webhook and records its cancelled row, with its attempts and decision time. */
  private cancelNow(d: PartitionData, decisionId: string, row: OutboxRow) {
    const pending = d.webhooks.get(decisionId)!
    d.webhooks.delete(decisionId)
    d.claims.delete(decisionId)
    d.rows.push([{ table: row.table, row: { ...row.row, attempts: pending.attempts, decidedAt: pending.decision.decidedAt } }])
  }

  async peekRows(partition: number, max: number) {
    return this.part(partition).rows.peek(max)
  }

  async ackRows(partition: number, ids: string[]) {
    this.part(partition).rows.ack(ids)
  }

  async peekAlerts(partition: number, max: number) {
    return this.part(partition).alerts.peek(max)
  }

  async ackAlerts(partition: number, ids: string[]) {
    this.part(partition).alerts.ack(ids)
  }

  async peekDeadLetters(partition: number, max: number) {
    return this.part(partition).deadLetters.peek(max)
  }

  async ackDeadLetters(partition: number, ids: string[]) {
    this.part(partition).deadLetters.ack(ids)
  }

  async dueWebhooks(partition: number, now: number, max: number) {
    const parked = this.parkedOf(partition)
    return [...this.part(partition).webhooks.values()]
      .filter((w) => w.dueAt <= now && !parked.has(w.decision.id))
      .sort((a, b) => a.dueAt - b.dueAt || (a.decision.id < b.decision.id ? -1 : 1))
      .slice(0, max)
      .map((w) => structuredClone(w))
  }

  async finishWebhook(partition: number, decisionId: string, row: OutboxRow) {
    const d = this.part(partition)
    d.claims.delete(decisionId)
    if (d.webhooks.delete(decisionId)) d.rows.push([row])
  }

  async retryWebhook(partition: number, pending: PendingWebhook) {
    const d = this.part(partition)
    const id = pending.decision.id
    if (!d.webhooks.has(id)) return
    const cancel = d.claims.get(id)
    d.claims.delete(id)
    d.webhooks.set(id, structuredClone(pending))
    // Cancelled while this attempt was in flight, and it did not deliver: it waits no more.
    if (cancel) this.cancelNow(d, id, cancel)
  }

  async claimWebhooks(partition: number, decisionIds: string[]): Promise<string[]> {
    const d = this.part(partition)
    const claimed: string[] = []
    for (const id of decisionIds) {
      if (!d.webhooks.has(id)) continue
      // A claim already there was left by a dispatcher that stopped mid-send: that attempt may have
      // delivered, so it is sent again, and a cancellation kept in the claim waits for this attempt.
      if (!d.claims.has(id)) d.claims.set(id, null)
      claimed.push(id)
    }
    return claimed
  }

  async parkWebhooks(partition: number, channel: Channel, decisionIds: string[]) {
    const d = this.part(partition)
    const parked = this.parkedOf(partition)
    for (const id of decisionIds) if (d.webhooks.has(id)) parked.set(id, channel)
  }

  async unparkWebhooks(partition: number, channel: Channel, max: number) {
    const d = this.part(partition)
    const parked = this.parkedOf(partition)
    const mine = [...parked].filter(([, c]) => c === channel).map(([id]) => id)
    const oldest = mine
      .map((id) => ({ id, dueAt: d.webhooks.get(id)?.dueAt }))
      .sort((a, b) => (a.dueAt ?? -Infinity) - (b.dueAt ?? -Infinity) || (a.id < b.id ? -1 : 1))
      .slice(0, Math.max(0, Math.floor(max)))
    let moved = 0
    for (const { id } of oldest) {
      parked.delete(id)
      if (d.webhooks.has(id)) moved++
    }
    return { moved, parked: mine.length - oldest.length }
  }

  async requeueWebhook(partition: number, pending: PendingWebhook) {
    const d = this.part(partition)
    if (d.webhooks.has(pending.decision.id)) return false
    d.webhooks.set(pending.decision.id, structuredClone(pending))
    return true
  }

  async outboxBacklog(partition: number, now: number): Promise<OutboxBacklog> {
    const d = this.part(partition)
    const parked = this.parkedOf(partition)
    const byChannel = Object.fromEntries(CHANNELS.map((c) => [c, { count: 0, oldestDueAt: null as number | null }])) as OutboxBacklog['parked']
    let webhooksDue = 0
    let webhooksScheduled = 0
    let oldestDueAt: number | null = null
    for (const w of d.webhooks.values()) {
      const channel = parked.get(w.decision.id)
      if (channel) {
        const c = byChannel[channel]
        c.count++
        c.oldestDueAt = c.oldestDueAt === null ? w.dueAt : Math.min(c.oldestDueAt, w.dueAt)
      } else if (w.dueAt <= now) {
        webhooksDue++
        oldestDueAt = oldestDueAt === null ? w.dueAt : Math.min(oldestDueAt, w.dueAt)
      } else webhooksScheduled++
    }
    return { rows: d.rows.peek(Infinity).length, alerts: d.alerts.peek(Infinity).length, deadLetters: d.deadLetters.peek(Infinity).length, webhooksDue, oldestDueAt, webhooksScheduled, parked: byChannel }
  }

  /** Partitions that hold anything, for drainers in embedded mode. */
  partitionIds(): number[] {
    return [...this.partitions.keys()]
  }

  /** Every customer record of a partition (replay reads the windows still open at the end of input). */
  *records(partition: number): Iterable<[string, CustomerRecord]> {
    for (const [id, stored] of this.part(partition).customers) yield [id, typeof stored === 'string' ? JSON.parse(stored) : stored]
  }

  async close() {}
}
