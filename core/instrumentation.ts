import type { Logger } from './log.ts'
import type { Metrics } from './metrics.ts'

/**
 * Instrumentation events, as KafkaJS names them (`consumer.end_batch_process`): each lifecycle
 * event of the runtime has one name and typed fields, and one place says how it is logged and
 * what it counts in Prometheus. The runtime emits events; it never writes ad-hoc log lines or
 * touches counters itself, so a log line and its metric cannot drift apart.
 */

type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error'

/** A decision, alert or dead letter as far as counting it goes. */
interface Counted {
  decisions: readonly { trigger: string; outcome: string; suppressedBy?: string | null; customerId: string; eventTime: string }[]
  alerts: readonly { kind: string; severity: string }[]
  /** Dead letters made by this step (bad input at ingest, late events in the state stage). */
  deadLetters: readonly { error: { code: string } }[]
  /** Decisions of the shadow catalogue, if one runs: counted apart from the live ones. */
  shadowDecisions?: readonly { trigger: string; outcome: string; suppressedBy?: string | null }[]
  /** Touchpoints the step's commit cancelled while they waited (goal reached, consent withdrawn, risk alert). */
  cancelled?: readonly { channel: string; reason: string }[]
}

export interface InstrumentationEvents {
  'catalog.reloaded': { version: string }
  'catalog.rejected': { error: string }
  /** Redis went away: said once per outage; what needs it waits, and ioredis reconnects. */
  'redis.error': { err: string }
  'redis.reconnected': { downSeconds: number }
  'kafka.log': { level: 'error' | 'warn'; logger: string; message: string; err?: string }
  'http.error': { err: string; url?: string }
  /** A step of an ordered shutdown failed; the steps after it still run. */
  'shutdown.step_failed': { step: string; err: string }

  /** A fetched batch taken into the alignment; `held`: input events fetched and not yet forwarded. */
  'ingest.fetched': { topic: string; partition: number; messages: number; held: number }
  /** Released input re-published and its offsets committed; `valid`: events forwarded by type. */
  'ingest.forwarded': { valid: Record<string, number>; held: number } & Pick<Counted, 'deadLetters'>
  /** One message of bad input dead-lettered where it was decoded (the demo's edge; live ingest reports it with ingest.forwarded). */
  'ingest.dead_lettered': { topic: string; partition: number; offset: string; code: string }
  'ingest.forward_failed': { err: string }
  'ingest.backlog_unknown': { err: string }

  'pipeline.assigned': { partitions: number[] }
  /**
   * A batch, or a move of the watermark with no input, committed. `partition`: absent where the
   * output does not name it (the embedded pipeline); `seconds`: time to process and commit a batch
   * read from Kafka, where that is measured.
   */
  'pipeline.batch_end': {
    partition?: number
    applied: number
    duplicates: number
    /** Events later than the allowed lateness (dead-lettered). */
    late: number
    /** Every event that arrived behind the watermark: how far (ms), and whether it was still applied. */
    lateness?: readonly { ms: number; applied: boolean }[]
    timersFired: number
    seconds?: number
  } & Counted
  'pipeline.watermark': { partition: number; watermark: number; now: number }
  'pipeline.fenced': { partition: number; err: string }
  'pipeline.advance_failed': { partition: number; err: string }
  'pipeline.sources_unknown': { err: string }

  'sink.rows_written': { table: string; rows: number }
  'sink.failed': { sink: string; err: string }
  'sink.recovered': { sink: string }

  'webhook.attempt': { outcome: string; channel: string; latencyMs: number }
  'webhook.delivered': Delivery
  'webhook.retry': Delivery & { delayMs: number }
  'webhook.failed': Delivery & { reason: string | null }
  'webhook.expired': Delivery & { reason: string | null }
  'webhook.dispatch_failed': { err: string }
  /** Due webhooks set aside in the outbox because their endpoint cannot take them now (circuit open, at its rate or concurrency). */
  'webhook.parked': Endpoint & { webhooks: number; circuit: string }
  'webhook.circuit_opened': Endpoint & { failures: number; openForMs: number }
  /** A probe failed: open for another `openForMs`. */
  'webhook.circuit_reopened': Endpoint & { failures: number; openForMs: number }
  'webhook.circuit_half_open': Endpoint
  'webhook.circuit_closed': Endpoint & { openMs: number }
  /** A channel's oldest due webhook has waited longer than the catalogue's `delivery.behindAfter`, or its circuit is open. */
  'webhook.endpoint_behind': Endpoint & { backlog: number; oldestAgeSeconds: number | null; circuit: string }
  'webhook.endpoint_caught_up': Endpoint & { behindSeconds: number }
  /** What waits in the outbox of the partitions this process drains (sampled). */
  'outbox.backlog': {
    /** Entries by table: rows, alerts, dead_letters, webhooks_due (due now, not set aside), webhooks_scheduled (due later). */
    tables: Record<string, number>
    /** Due webhooks waiting per channel, and how long the oldest has been due (seconds; 0 when none). */
    channels: readonly (Endpoint & { backlog: number; oldestAgeSeconds: number })[]
  }
}

interface Endpoint {
  channel: string
  /** host[:port] of the channel's webhook URL. */
  endpoint: string
}

interface Delivery {
  decisionId: string
  trigger: string
  channel: string
  attempts: number
  httpStatus: number | null
  latencyMs?: number | null
}

export type EventName = keyof InstrumentationEvents

interface Spec<K extends EventName> {
  level: Level
  /** Words after the event name in the log line, for a person reading it. */
  says?: string | ((e: InstrumentationEvents[K]) => string)
  /** The fields logged, when not all of them. */
  log?: (e: InstrumentationEvents[K]) => object
  count?: (m: Metrics, e: InstrumentationEvents[K]) => void
}

const countDeadLetters = (m: Metrics, deadLetters: Counted['deadLetters']) => {
  for (const q of deadLetters) {
    m.deadLetters.inc({ code: q.error.code })
    if (q.error.code !== 'late_event') m.events.inc({ type: 'all', result: 'dead_letter' })
  }
}

const delivered = (status: 'delivered' | 'failed' | 'expired') => (m: Metrics, e: Delivery) => {
  m.webhooks.deliveries.inc({ status, channel: e.channel })
  m.webhooks.attempts.observe({ status, channel: e.channel }, e.attempts)
}

/** The circuit-state gauge: 0 closed, 1 half-open, 2 open. */
const circuit = (state: 0 | 1 | 2) => (m: Metrics, e: Endpoint) => m.webhooks.circuit.set({ channel: e.channel, endpoint: e.endpoint }, state)

const SPECS: { [K in EventName]: Spec<K> } = {
  'catalog.reloaded': { level: 'info' },
  'catalog.rejected': { level: 'error', says: 'the previous catalogue stays in force' },
  'redis.error': { level: 'warn', says: 'Redis unreachable: state commits wait until it is back' },
  'redis.reconnected': { level: 'info', says: (e) => `Redis is back after ${e.downSeconds} s` },
  'kafka.log': { level: 'warn', says: (e) => e.message, log: ({ level: _, message: __, ...rest }) => rest },
  'http.error': { level: 'warn' },
  'shutdown.step_failed': { level: 'warn' },

  'ingest.fetched': { level: 'trace', count: (m, e) => m.ingestHeld.set(e.held) },
  'ingest.forwarded': {
    level: 'trace',
    log: ({ valid, held, deadLetters }) => ({ valid, held, deadLetters: deadLetters.length }),
    count: (m, e) => {
      m.ingestHeld.set(e.held)
      for (const type in e.valid) m.events.inc({ type, result: 'valid' }, e.valid[type])
      countDeadLetters(m, e.deadLetters)
    },
  },
  'ingest.dead_lettered': { level: 'debug', count: (m, e) => countDeadLetters(m, [{ error: { code: e.code } }]) },
  'ingest.forward_failed': { level: 'warn', says: 'will retry' },
  'ingest.backlog_unknown': { level: 'warn', says: 'every input partition counts as behind until its first batch' },

  'pipeline.assigned': { level: 'info' },
  'pipeline.batch_end': {
    level: 'debug',
    // Named fields only: callers pass a whole batch output, whose other parts are not for logs.
    log: (e) => ({
      partition: e.partition,
      applied: e.applied,
      duplicates: e.duplicates,
      late: e.late,
      lateApplied: e.lateness?.filter((l) => l.applied).length,
      timersFired: e.timersFired,
      seconds: e.seconds,
      decisions: e.decisions.length,
      alerts: e.alerts.length,
      deadLetters: e.deadLetters.length,
      cancelled: e.cancelled?.length,
    }),
    count: (m, e) => {
      if (e.seconds !== undefined) m.batchSeconds.observe(e.seconds)
      if (e.applied) m.events.inc({ type: 'all', result: 'applied' }, e.applied)
      if (e.duplicates) m.events.inc({ type: 'all', result: 'duplicate' }, e.duplicates)
      if (e.late) m.events.inc({ type: 'all', result: 'late' }, e.late)
      for (const l of e.lateness ?? []) {
        m.lateness.observe({ result: l.applied ? 'applied' : 'dead_letter' }, l.ms / 1000)
        if (l.applied) m.events.inc({ type: 'all', result: 'late_applied' })
      }
      if (e.timersFired) m.timersFired.inc(e.timersFired)
      for (const d of e.decisions) m.decisions.inc({ trigger: d.trigger, outcome: d.outcome, suppressed_by: d.suppressedBy ?? '' })
      for (const a of e.alerts) m.alerts.inc({ kind: a.kind, severity: a.severity })
      for (const c of e.cancelled ?? []) m.webhooks.deliveries.inc({ status: 'cancelled', channel: c.channel })
      for (const d of e.shadowDecisions ?? []) m.shadowDecisions.inc({ trigger: d.trigger, outcome: d.outcome, suppressed_by: d.suppressedBy ?? '' })
      countDeadLetters(m, e.deadLetters)
    },
  },
  'pipeline.watermark': { level: 'trace', count: (m, e) => m.watermarkLag.set({ partition: String(e.partition) }, (e.now - e.watermark) / 1000) },
  'pipeline.fenced': { level: 'warn', says: 'another consumer owns the partition; its cached state is dropped' },
  'pipeline.advance_failed': { level: 'warn' },
  'pipeline.sources_unknown': { level: 'warn', says: 'the input partitions could not be listed; those not heard from yet do not hold the watermark until they are' },

  'sink.rows_written': { level: 'trace', count: (m, e) => m.outboxRows.inc({ table: e.table }, e.rows) },
  'sink.failed': { level: 'warn', says: 'what it holds stays in the outbox and goes on a later tick' },
  'sink.recovered': { level: 'info' },

  'webhook.attempt': { level: 'trace', count: (m, e) => m.webhooks.latency.observe({ outcome: e.outcome, channel: e.channel }, e.latencyMs / 1000) },
  'webhook.delivered': { level: 'debug', count: delivered('delivered') },
  'webhook.retry': { level: 'debug', says: 'attempt failed; retry scheduled', count: (m, e) => m.webhooks.retries.inc({ channel: e.channel }) },
  'webhook.failed': { level: 'warn', says: 'recorded as a delivery dead letter', count: delivered('failed') },
  'webhook.expired': { level: 'warn', says: 'recorded as a delivery dead letter', count: delivered('expired') },
  'webhook.dispatch_failed': { level: 'error', says: 'will retry' },
  'webhook.parked': { level: 'trace', count: (m, e) => m.webhooks.parked.inc({ channel: e.channel }, e.webhooks) },
  'webhook.circuit_opened': { level: 'warn', says: (e) => `${e.channel} endpoint ${e.endpoint} keeps failing; its webhooks wait in the outbox, one probe every ${e.openForMs / 1000}s`, count: circuit(2) },
  'webhook.circuit_reopened': { level: 'debug', says: 'the probe failed', count: circuit(2) },
  'webhook.circuit_half_open': { level: 'debug', says: 'one probe attempt', count: circuit(1) },
  'webhook.circuit_closed': { level: 'info', says: (e) => `${e.channel} endpoint ${e.endpoint} answers again; its waiting webhooks go out`, count: circuit(0) },
  'webhook.endpoint_behind': { level: 'warn', says: (e) => `${e.channel} webhooks to ${e.endpoint} are behind: ${e.backlog} waiting, the oldest for ${e.oldestAgeSeconds ?? 0}s (circuit ${e.circuit})` },
  'webhook.endpoint_caught_up': { level: 'info', says: (e) => `${e.channel} webhooks to ${e.endpoint} caught up after ${e.behindSeconds}s` },
  'outbox.backlog': {
    level: 'trace',
    count: (m, e) => {
      for (const [table, n] of Object.entries(e.tables)) m.outboxBacklog.set({ table }, n)
      for (const c of e.channels) {
        m.webhooks.backlog.set({ channel: c.channel, endpoint: c.endpoint }, c.backlog)
        m.webhooks.oldestDue.set({ channel: c.channel, endpoint: c.endpoint }, c.oldestAgeSeconds)
      }
    },
  },
}

type Listener = (event: never) => void

/**
 * Emits instrumentation events to a pino logger, when given a process's Prometheus metrics, and
 * to listeners (`on`: a benchmark or test that watches the runtime without reading its logs).
 */
export class Instrumentation {
  constructor(
    readonly log: Logger,
    private readonly metrics?: Metrics,
    private readonly listeners = new Map<EventName, Set<Listener>>(),
  ) {}

  /** Calls `fn` with each `name` event emitted here or by a child, until the function returned is called. */
  on<K extends EventName>(name: K, fn: (event: InstrumentationEvents[K]) => void): () => void {
    let set = this.listeners.get(name)
    if (!set) this.listeners.set(name, (set = new Set()))
    set.add(fn)
    return () => void set.delete(fn)
  }

  emit<K extends EventName>(name: K, event: InstrumentationEvents[K]): void {
    const spec = SPECS[name] as Spec<K>
    if (this.metrics) spec.count?.(this.metrics, event)
    const listeners = this.listeners.get(name) as Set<(event: InstrumentationEvents[K]) => void> | undefined
    if (listeners) for (const fn of listeners) fn(event)
    const level = name === 'kafka.log' ? (event as InstrumentationEvents['kafka.log']).level : spec.level
    if (!this.log.isLevelEnabled(level)) return
    const says = typeof spec.says === 'function' ? spec.says(event) : spec.says
    const message: string = says ? `${name}: ${says}` : name
    this.log[level]({ event: name, ...(spec.log ? spec.log(event) : event) }, message)
  }

  /** The same sinks, with fields every line of one component carries (pino child logger). */
  child(bindings: Record<string, unknown>): Instrumentation {
    return new Instrumentation(this.log.child(bindings), this.metrics, this.listeners)
  }
}

/** The message of an error, for an event's `err` field. */
export const errText = (e: unknown) => (e instanceof Error ? e.message : String(e))
