import { parseCatalog, loadCatalogFile } from '../../pipeline/catalog/index.ts'
import type { Operator } from '../../operators/types.ts'
import { PartitionProcessor } from '../../pipeline/processor.ts'
import type { BatchOutput } from '../../pipeline/stream.ts'
import { MemoryStore } from '../../pipeline/store/memory.ts'
import { atEventTime } from '../../pipeline/policy.ts'
import type { Catalog } from '../../schemas/catalog.ts'
import type { Decision } from '../../schemas/decision.ts'
import type { RiskAlert } from '../../schemas/alert.ts'
import type { DeadLetter } from '../../schemas/deadLetter.ts'
import type { Conversion } from '../../schemas/conversion.ts'
import { InputEvent } from '../../schemas/events.ts'
import { testCatalogYaml } from './services.ts'

/**
 * Drives the real processor in event time, in the spirit of Flink's test harnesses: feed events
 * with timestamps, advance the watermark, read what came out.
 */
export class PipelineHarness {
  readonly store: MemoryStore
  readonly decisions: Decision[] = []
  readonly alerts: RiskAlert[] = []
  readonly deadLetters: DeadLetter[] = []
  readonly conversions: Conversion[] = []
  readonly outputs: BatchOutput[] = []
  private readonly processor: PartitionProcessor
  private offset = 0
  private latest = -Infinity
  private readonly settle: boolean

  constructor(
    catalog: Catalog = parseCatalog(testCatalogYaml(), 'test catalogue'),
    opts: {
      /** How far an event may trail the newest and still be applied in order (default 0). */
      maxDisorder?: number
      /** How far behind the watermark an event may arrive and still be applied, at once (default 0: dead-lettered). */
      allowedLateness?: number
      /** When decisions and alerts are made (default: at event time, as replay does). */
      decisionTime?: (eventTime: number) => number
      /** Wall clock for late events' dead letters (default none, as in replay). */
      receivedAt?: () => number
      operators?: readonly Operator<any, any>[]
      /**
       * After each send, move the watermark to its newest event, as if the input ended there: what
       * was sent is then applied and decided at once; a later send at an earlier or equal time is late.
       */
      settle?: boolean
      /** Another harness's store: a new processor on it is the pipeline after a restart. */
      store?: MemoryStore
      maxCachedCustomers?: number | (() => number)
    } = {},
  ) {
    this.store = opts.store ?? new MemoryStore()
    this.settle = opts.settle ?? false
    this.processor = new PartitionProcessor({
      partition: 0,
      store: this.store,
      catalog: () => catalog,
      watermarks: { maxDisorder: opts.maxDisorder ?? 0 },
      allowedLateness: opts.allowedLateness ?? 0,
      decisionTime: opts.decisionTime ?? atEventTime,
      receivedAt: opts.receivedAt,
      outbox: { webhooks: true, alerts: true, rows: true, deadLetters: true },
      operators: opts.operators,
      maxCachedCustomers: opts.maxCachedCustomers,
    })
  }

  /** Feeds events (validated like the edge does) as one batch. */
  send(...events: Record<string, unknown>[]): Promise<BatchOutput> {
    return this.sendAt(events.map(() => ++this.offset), events)
  }

  /** Feeds events as one batch of one record, as ingest packs them: they share its offset. */
  sendPack(...events: Record<string, unknown>[]): Promise<BatchOutput> {
    const offset = ++this.offset
    return this.sendAt(events.map(() => offset), events)
  }

  private async sendAt(offsets: number[], events: Record<string, unknown>[]): Promise<BatchOutput> {
    for (const e of events) this.latest = Math.max(this.latest, Date.parse(String(e.occurredAt)))
    const messages = events.map((e, i) => {
      const event = InputEvent.parse(e)
      return { offset: String(offsets[i]), event, at: Date.parse(event.occurredAt), source: { topic: 'test', partition: 0, offset: String(offsets[i]) } }
    })
    const out = this.collect(await this.processor.process(messages))
    return this.settle ? merge(out, await this.finish()) : out
  }

  /** End of input, as replay does it: the watermark moves to the latest event time sent. */
  async finish(): Promise<BatchOutput> {
    return this.advanceTo(this.latest)
  }

  async advanceTo(time: string | number): Promise<BatchOutput> {
    return this.collect(await this.processor.advanceTo(typeof time === 'number' ? time : Date.parse(time)))
  }

  get watermark() {
    return this.processor.watermark
  }

  get cachedCustomers() {
    return this.processor.cachedCustomers
  }

  private collect(out: BatchOutput) {
    this.outputs.push(out)
    this.decisions.push(...out.decisions)
    this.alerts.push(...out.alerts)
    this.deadLetters.push(...out.deadLetters)
    this.conversions.push(...out.conversions)
    return out
  }
}

/**
 * The shipped default catalogue with what makes assertions simple: no holdout, no quiet hours,
 * no weekly cap or cooldown unless a test asks for them. `patch` edits it further.
 */
export function defaultCatalogForTests(patch: (c: Catalog) => void = () => {}): Catalog {
  const c = structuredClone(loadCatalogFile())
  c.policy = { ...c.policy, holdoutPercent: 0, quietHours: null, weeklyCap: 1000, cooldown: 0 }
  patch(c)
  return c
}

let seq = 0
export const lifecycle = (customerId: string, stage: string, occurredAt: string, extra: Record<string, unknown> = {}) => ({
  type: 'lifecycle',
  eventId: `lc-${++seq}`,
  occurredAt,
  customerId,
  cardId: `tok_${customerId}`,
  stage,
  ...extra,
})

export const transaction = (customerId: string, occurredAt: string, amount: number, extra: Record<string, unknown> = {}) => ({
  type: 'transaction',
  eventId: `tx-${++seq}`,
  occurredAt,
  customerId,
  cardId: `tok_${customerId}`,
  amount,
  currency: 'CNY',
  status: 'approved',
  channel: 'pos',
  cardPresent: true,
  merchant: { id: 'm1', mcc: '5411', country: 'CN' },
  ...extra,
})

export const app = (customerId: string, name: string, occurredAt: string, extra: Record<string, unknown> = {}) => ({
  type: 'app',
  eventId: `app-${++seq}`,
  occurredAt,
  customerId,
  name,
  ...extra,
})

function merge(a: BatchOutput, b: BatchOutput): BatchOutput {
  return {
    decisions: [...a.decisions, ...b.decisions],
    shadowDecisions: [...a.shadowDecisions, ...b.shadowDecisions],
    alerts: [...a.alerts, ...b.alerts],
    deadLetters: [...a.deadLetters, ...b.deadLetters],
    passedThrough: [...a.passedThrough, ...b.passedThrough],
    conversions: [...a.conversions, ...b.conversions],
    cancellations: [...a.cancellations, ...b.cancellations],
    cancelled: [...a.cancelled, ...b.cancelled],
    applied: a.applied + b.applied,
    skipped: a.skipped + b.skipped,
    duplicates: a.duplicates + b.duplicates,
    late: a.late + b.late,
    lateness: [...a.lateness, ...b.lateness],
    timersFired: a.timersFired + b.timersFired,
  }
}
