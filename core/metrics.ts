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
  }
}
