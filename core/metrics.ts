import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

/** Prometheus metrics of one pipeline process, on its own registry. */
export function createMetrics() {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'cardpulse_process_' })
  const m = {
    registry,
    events: new Counter({ name: 'cardpulse_events_total', help: 'Input messages by type and result (applied, duplicate, late, dead_letter; late_applied: applied behind the watermark, also counted as applied)', labelNames: ['type', 'result'], registers: [registry] }),
    decisions: new Counter({ name: 'cardpulse_decisions_total', help: 'Trigger decisions by trigger and outcome', labelNames: ['trigger', 'outcome', 'suppressed_by'], registers: [registry] }),
    shadowDecisions: new Counter({ name: 'cardpulse_shadow_decisions_total', help: 'Decisions of the shadow (draft) catalogue, recorded and never sent, by trigger and outcome', labelNames: ['trigger', 'outcome', 'suppressed_by'], registers: [registry] }),
    alerts: new Counter({ name: 'cardpulse_alerts_total', help: 'Risk alerts by kind and severity', labelNames: ['kind', 'severity'], registers: [registry] }),
    deadLetters: new Counter({ name: 'cardpulse_dead_letters_total', help: 'Dead-lettered input messages by error code', labelNames: ['code'], registers: [registry] }),
    lateness: new Histogram({
      name: 'cardpulse_event_lateness_seconds',
      help: 'How far behind the watermark (event time) late events arrived, by result: applied within the allowed lateness, or dead_letter beyond it',
      labelNames: ['result'],
      buckets: [0.1, 1, 10, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 24 * 3600, 7 * 24 * 3600],
      registers: [registry],
    }),
    timersFired: new Counter({ name: 'cardpulse_timers_fired_total', help: 'Event-time timers fired', registers: [registry] }),
    batchSeconds: new Histogram({ name: 'cardpulse_batch_duration_seconds', help: 'Time to process and commit one batch', buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [registry] }),
    ingestHeld: new Gauge({ name: 'cardpulse_ingest_held_events', help: 'Input events fetched and held back to keep the input streams aligned in event time', registers: [registry] }),
    watermarkLag: new Gauge({ name: 'cardpulse_watermark_lag_seconds', help: 'Wall clock minus the partition watermark', labelNames: ['partition'], registers: [registry] }),
    webhooks: createWebhookMetrics(registry),
    outboxBacklog: new Gauge({
      name: 'cardpulse_outbox_backlog',
      help: 'Entries waiting in the outbox of the partitions this process drains, by table: rows (for ClickHouse), alerts, dead_letters, webhooks_due (due now), webhooks_scheduled (due later: quiet hours, retries)',
      labelNames: ['table'],
      registers: [registry],
    }),
    outboxRows: new Counter({ name: 'cardpulse_clickhouse_rows_total', help: 'Rows written to ClickHouse by table', labelNames: ['table'], registers: [registry] }),
  }
  return m
}

export type Metrics = ReturnType<typeof createMetrics>

export interface WebhookMetrics {
  /** Finished deliveries; labels `status` (delivered|failed|expired|cancelled) and `channel`. */
  deliveries: Counter<'status' | 'channel'>
  /** Attempts rescheduled after a retriable failure; label `channel`. */
  retries: Counter<'channel'>
  /** Duration of each HTTP attempt in seconds; labels `outcome` (delivered|retriable|permanent) and `channel`. */
  latency: Histogram<'outcome' | 'channel'>
  /** HTTP attempts a finished delivery took; labels `status` and `channel`. */
  attempts: Histogram<'status' | 'channel'>
  /** Circuit state per endpoint: 0 closed, 1 half-open, 2 open. */
  circuit: Gauge<'channel' | 'endpoint'>
  /** Due webhooks waiting per channel (set aside, or in flight). */
  backlog: Gauge<'channel' | 'endpoint'>
  /** How long the oldest due webhook of a channel has waited, in seconds. */
  oldestDue: Gauge<'channel' | 'endpoint'>
  /** Due webhooks set aside because their endpoint could not take them then. */
  parked: Counter<'channel'>
}

/** Creates the metrics with the label names the dispatcher uses, in the caller's registry. */
export function createWebhookMetrics(registry: Registry): WebhookMetrics {
  return {
    deliveries: new Counter({
      name: 'cardpulse_webhook_deliveries_total',
      help: 'Webhook deliveries finished, by status and channel',
      labelNames: ['status', 'channel'] as const,
      registers: [registry],
    }),
    retries: new Counter({
      name: 'cardpulse_webhook_retries_total',
      help: 'Webhook attempts rescheduled after a retriable failure',
      labelNames: ['channel'] as const,
      registers: [registry],
    }),
    latency: new Histogram({
      name: 'cardpulse_webhook_latency_seconds',
      help: 'Duration of webhook HTTP attempts',
      labelNames: ['outcome', 'channel'] as const,
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    attempts: new Histogram({
      name: 'cardpulse_webhook_delivery_attempts',
      help: 'HTTP attempts a finished delivery took, by status (delivered, failed, expired) and channel',
      labelNames: ['status', 'channel'] as const,
      buckets: [0, 1, 2, 3, 5, 8, 12],
      registers: [registry],
    }),
    circuit: new Gauge({
      name: 'cardpulse_webhook_circuit_state',
      help: "State of each channel endpoint's circuit breaker: 0 closed, 1 half-open (one probe), 2 open (nothing sent)",
      labelNames: ['channel', 'endpoint'] as const,
      registers: [registry],
    }),
    backlog: new Gauge({
      name: 'cardpulse_webhook_backlog',
      help: 'Due webhooks waiting for their channel endpoint (set aside in the outbox, or in flight)',
      labelNames: ['channel', 'endpoint'] as const,
      registers: [registry],
    }),
    oldestDue: new Gauge({
      name: 'cardpulse_webhook_oldest_due_seconds',
      help: 'How long the oldest due webhook of a channel has waited (0 when none)',
      labelNames: ['channel', 'endpoint'] as const,
      registers: [registry],
    }),
    parked: new Counter({
      name: 'cardpulse_webhook_parked_total',
      help: 'Due webhooks set aside in the outbox because their endpoint could not take them then (circuit open, at its rate or concurrency)',
      labelNames: ['channel'] as const,
      registers: [registry],
    }),
  }
}
