import type { RiskAlert } from '../../schemas/alert.ts'
import {
  FencedError,
  type BatchCommit,
  type CustomerRecord,
  type LoadedBatch,
  type OutboxRow,
  type PendingWebhook,
  type StateStore,
} from './types.ts'
import { TimerHeap } from '../timers.ts'

/** The embedded state store: the same contract as Redis, in this process's memory. */

interface PartitionData {
  appliedOffset: string | null
  watermark: number
  customers: Map<string, string | CustomerRecord>
  timers: TimerHeap
  rows: OutboxRow[]
  alerts: RiskAlert[]
  webhooks: Map<string, PendingWebhook>
}

export class MemoryStore implements StateStore {
  private partitions = new Map<number, PartitionData>()

  /**
   * @param copy store records serialized, so callers never share objects with the store (as with
   * Redis). Embedded pipelines, whose processor is the only reader, pass false to skip the copies.
   */
  constructor(private readonly opts: { copy?: boolean } = {}) {}

  private part(p: number): PartitionData {
    let d = this.partitions.get(p)
    if (!d) {
      d = { appliedOffset: null, watermark: -Infinity, customers: new Map(), timers: new TimerHeap(), rows: [], alerts: [], webhooks: new Map() }
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
    return { appliedOffset: d.appliedOffset, watermark: d.watermark, customers, timers: d.timers.peekDue(timersUpTo) }
  }

  async commit(b: BatchCommit): Promise<void> {
    const d = this.part(b.partition)
    if (d.appliedOffset !== b.expectedOffset) throw new FencedError(b.partition, b.expectedOffset, d.appliedOffset)
    d.appliedOffset = b.offset
    d.watermark = b.watermark
    const copy = this.opts.copy !== false
    for (const [id, rec] of b.customers) d.customers.set(id, copy ? JSON.stringify(rec) : rec)
    for (const m of b.timersRemoved) d.timers.delete(m)
    for (const t of b.timersSet) d.timers.set(t.member, t.at)
    for (const w of b.webhooks) d.webhooks.set(w.decision.id, structuredClone(w))
    d.alerts.push(...b.alerts)
    d.rows.push(...b.rows)
  }

  async peekRows(partition: number, max: number) {
    return this.part(partition).rows.slice(0, max)
  }

  async ackRows(partition: number, count: number) {
    this.part(partition).rows.splice(0, count)
  }

  async peekAlerts(partition: number, max: number) {
    return this.part(partition).alerts.slice(0, max)
  }

  async ackAlerts(partition: number, count: number) {
    this.part(partition).alerts.splice(0, count)
  }

  async dueWebhooks(partition: number, now: number, max: number) {
    return [...this.part(partition).webhooks.values()]
      .filter((w) => w.dueAt <= now)
      .sort((a, b) => a.dueAt - b.dueAt || (a.decision.id < b.decision.id ? -1 : 1))
      .slice(0, max)
      .map((w) => structuredClone(w))
  }

  async finishWebhook(partition: number, decisionId: string, row: OutboxRow) {
    const d = this.part(partition)
    if (d.webhooks.delete(decisionId)) d.rows.push(row)
  }

  async retryWebhook(partition: number, pending: PendingWebhook) {
    const d = this.part(partition)
    if (d.webhooks.has(pending.decision.id)) d.webhooks.set(pending.decision.id, structuredClone(pending))
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
