import { expect } from 'vitest'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import YAML from 'yaml'
import type { Producer } from 'kafkajs'
import type { RunningPipeline } from '../../commands/run.ts'
import { DEFAULT_CATALOG_FILE, loadCatalogFile } from '../../pipeline/catalog/index.ts'
import { EmbeddedPipeline } from '../../pipeline/embedded.ts'
import { simulateBank, fraudScenarios } from '../../simulator/bank.ts'
import { produceStreams } from '../../simulator/produce.ts'
import type { Decision } from '../../schemas/decision.ts'
import type { RiskAlert } from '../../schemas/alert.ts'
import type { Conversion } from '../../schemas/conversion.ts'
import type { InputEvent } from '../../schemas/events.ts'
import { sender, freshTopics, waitFor, startTestPipeline } from './services.ts'

/**
 * What the suites comparing `cardpulse run` with `replay` share: a small simulated bank ending a
 * minute ago, its replay, a live pipeline on fresh topics, the end of input, and the comparison of
 * decisions, alerts and conversions (read back from ClickHouse).
 */

const DAY = 86_400_000
export const dir = mkdtempSync(join(tmpdir(), 'cardpulse-vs-'))
export const catalogFile = join(dir, 'catalog.yaml')

// Live decisions are dated by the wall clock: a TTL longer than the scenario keeps them from
// expiring, and no quiet hours keeps sendAt out of the comparison.
const raw = YAML.parse(readFileSync(DEFAULT_CATALOG_FILE, 'utf8'))
raw.policy = { ...raw.policy, ttl: '1000d', quietHours: null }
writeFileSync(catalogFile, YAML.stringify(raw))
const catalog = loadCatalogFile(catalogFile)

/** 45 days of a small bank with fraud scenarios, shifted to end a minute ago. */
export function bankEvents(): InputEvent[] {
  const simulated = simulateBank({ customers: 80, days: 45, start: new Date(0), seed: 11 })
  const scenario = [...simulated, ...fraudScenarios(new Date(30 * DAY), 6)].sort((a, b) => (a.occurredAt < b.occurredAt ? -1 : a.occurredAt > b.occurredAt ? 1 : 0))
  const shift = Date.now() - 60_000 - Date.parse(scenario[scenario.length - 1].occurredAt)
  return scenario.map((e) => ({ ...e, occurredAt: new Date(Date.parse(e.occurredAt) + shift).toISOString() }))
}

export type Topics = ReturnType<typeof freshTopics>
export interface Expected {
  decisions: Decision[]
  alerts: RiskAlert[]
  conversions: Conversion[]
}

/** A live pipeline on its own topics, Redis keys and ClickHouse database. */
export async function startLive(id: string, topics: Topics, webhookUrl: string, settings: Record<string, string> = {}): Promise<RunningPipeline> {
  return startTestPipeline({
    redisPrefix: `cp-vs-${id}`,
    groupId: `g-${id}`,
    ...topics,
    catalogFile,
    webhookUrl,
    idleAdvance: '1000d',
    allowedLateness: '6h',
    clickhouseDatabase: `cp_vs_${id}`,
    // embedded ClickHouse keeps one data folder per process; each test has its own database
    dataDir: join(dir, 'data'),
    ...settings,
  })
}

/** Each stream on its own topic, keyed by customer. */
export const produce = (producer: Producer, topics: Topics, events: InputEvent[]) =>
  produceStreams(sender(producer), { transaction: topics.transactionsTopic, app: topics.appEventsTopic, lifecycle: topics.lifecycleTopic }, events)

/**
 * The end of input: an event on every input partition at the last event time and 1 ms, so every
 * source's mark reaches the last event time, as the end of input does in replay.
 */
export async function endOfInput(producer: Producer, topics: Topics, lastEventTime: number, partitions = 3) {
  const occurredAt = new Date(lastEventTime + 1).toISOString()
  const tick = (type: string, p: number) => ({ customerId: `tick_${type}_${p}`, eventId: `tick-${type}-${p}`, occurredAt })
  const on = (topic: string, make: (p: number) => Record<string, unknown>) => ({
    topic,
    messages: Array.from({ length: partitions }, (_, p) => ({ partition: p, key: `tick_${p}`, value: JSON.stringify(make(p)) })),
  })
  await producer.sendBatch({
    topicMessages: [
      on(topics.appEventsTopic, (p) => ({ type: 'app', ...tick('app', p), name: 'login' })),
      on(topics.lifecycleTopic, (p) => ({ type: 'lifecycle', ...tick('lc', p), cardId: `tok_tick_${p}`, stage: 'applied' })),
      on(topics.transactionsTopic, (p) => ({
        type: 'transaction',
        ...tick('tx', p),
        cardId: `tok_tick_${p}`,
        amount: 100,
        currency: 'CNY',
        status: 'declined',
        channel: 'pos',
        cardPresent: true,
        merchant: { id: 'm_tick' },
      })),
    ],
  })
}

export async function replayed(events: InputEvent[]): Promise<Expected> {
  // Conversions: each decision's latest row (the live pipeline writes the same rows to ClickHouse).
  const conversions = new Map<string, Conversion>()
  const out: Expected = { decisions: [], alerts: [], conversions: [] }
  const engine = new EmbeddedPipeline({
    catalog: () => catalog,
    maxDisorder: 0,
    outbox: { webhooks: false, alerts: false, rows: false },
    onOutput: (o) => {
      out.decisions.push(...o.decisions)
      out.alerts.push(...o.alerts)
      for (const c of o.conversions) conversions.set(c.decisionId, c)
    },
    onDeadLetter: () => {},
  })
  for (const event of events) await engine.push({ ok: true, event, at: Date.parse(event.occurredAt), source: { topic: 'replay', partition: 0, offset: '0' } })
  await engine.finish()
  out.conversions = [...conversions.values()]
  return out
}

/** The count of cardpulse_events_total with this result. */
export const counted = async (pipeline: RunningPipeline, result: string) => {
  const m = (await pipeline.metrics.events.get()).values
  return m.filter((v) => v.labels.result === result).reduce((n, v) => n + v.value, 0)
}

const comparable = (d: Decision) => ({ id: d.id, trigger: d.trigger, customerId: d.customerId, cardId: d.cardId, outcome: d.outcome, suppressedBy: d.suppressedBy, channel: d.channel, eventTime: d.eventTime, reason: d.reason })
const byId = <T extends { id: string }>(list: T[]) => [...list].sort((a, b) => (a.id < b.id ? -1 : 1))
const ticks = `customer_id NOT LIKE 'tick\\_%'`

/** Waits for the live decisions the replay made, then compares decisions, alerts and conversions. */
export async function expectSameAsReplay(pipeline: RunningPipeline, expected: Expected, lastEventTime: number) {
  const db = pipeline.clickhouse.database
  const decisionsQuery = `SELECT * FROM ${db}.decisions FINAL WHERE event_time <= fromUnixTimestamp64Milli(${lastEventTime}) AND ${ticks}`
  await waitFor('the live decisions', async () => (await pipeline.clickhouse.query(decisionsQuery)).length >= expected.decisions.length, 180_000, 1000)
  await new Promise((r) => setTimeout(r, 2000)) // anything extra would land now

  const liveDecisions = (await pipeline.clickhouse.query<Record<string, string>>(decisionsQuery)).map((r) => ({
    id: r.id,
    trigger: r.trigger,
    customerId: r.customer_id,
    cardId: r.card_id || undefined,
    outcome: r.outcome,
    suppressedBy: r.suppressed_by || undefined,
    channel: r.channel || undefined,
    eventTime: new Date(r.event_time.replace(' ', 'T') + 'Z').toISOString(),
    reason: JSON.parse(r.reason),
  }))
  expect(byId(liveDecisions)).toEqual(byId(expected.decisions.map(comparable)))

  const liveAlerts = await pipeline.clickhouse.query<{ id: string; kind: string; customer_id: string; evidence: string }>(`SELECT id, kind, customer_id, evidence FROM ${db}.alerts FINAL WHERE ${ticks}`)
  expect(byId(liveAlerts.map((a) => ({ id: a.id, kind: a.kind, customerId: a.customer_id, evidence: JSON.parse(a.evidence) })))).toEqual(
    byId(expected.alerts.map((a) => ({ id: a.id, kind: a.kind, customerId: a.customerId, evidence: a.evidence }))),
  )
  await expectSameConversions(pipeline, expected.conversions, lastEventTime)
}

/**
 * The conversion rows. Live, the end-of-input ticks take the watermarks to the last event time,
 * as replay's end of input does; windows that end later are compared on whether and how they converted.
 */
async function expectSameConversions(pipeline: RunningPipeline, expected: Conversion[], lastEventTime: number) {
  const db = pipeline.clickhouse.database
  const settled = (windowEnd: string) => Date.parse(windowEnd) <= lastEventTime
  const shape = (c: { decisionId: string; converted: boolean; convertingEventId?: string; spend: number; final: boolean; windowEnd: string }) => ({
    decisionId: c.decisionId,
    converted: c.converted,
    convertingEventId: c.convertingEventId ?? '',
    ...(settled(c.windowEnd) ? { spend: c.spend, final: c.final } : {}),
  })
  const wanted = expected.filter((c) => c.converted || settled(c.windowEnd)).map(shape)
  const query = `SELECT decision_id, converted, converting_event_id, spend, final, window_end FROM ${db}.conversions FINAL`
  type Row = { decision_id: string; converted: number; converting_event_id: string; spend: number; final: number; window_end: string }
  const live = await waitFor('the live conversions', async () => {
    const rows = (await pipeline.clickhouse.query<Row>(query)).map((r) =>
      shape({ decisionId: r.decision_id, converted: Number(r.converted) === 1, convertingEventId: r.converting_event_id, spend: Number(r.spend), final: Number(r.final) === 1, windowEnd: new Date(r.window_end.replace(' ', 'T') + 'Z').toISOString() }),
    )
    const kept = rows.filter((r) => r.converted || 'final' in r)
    return kept.length >= wanted.length && kept
  }, 60_000, 1000)
  const byDecision = <T extends { decisionId: string }>(list: T[]) => [...list].sort((a, b) => (a.decisionId < b.decisionId ? -1 : 1))
  expect(byDecision(live)).toEqual(byDecision(wanted))
}

/**
 * Feeds events live in steps of event time, the lifecycle stream behind the others: at each step
 * the transactions and app events up to its end go, and, every `uploadEvery` steps, the lifecycle
 * events up to `lag` before it (a card-management system that uploads in batches and runs behind).
 * `afterStep` runs after each step with the number of events sent so far.
 */
export async function feedWithLaggingLifecycle(
  producer: Producer,
  topics: Topics,
  events: InputEvent[],
  opts: { step: number; lag: number; uploadEvery: number; afterStep: (step: number, sent: number) => Promise<void> },
): Promise<number> {
  const others = events.filter((e) => e.type !== 'lifecycle')
  const lifecycle = events.filter((e) => e.type === 'lifecycle')
  const first = Date.parse(events[0].occurredAt)
  const last = Date.parse(events[events.length - 1].occurredAt)
  let o = 0
  let l = 0
  let steps = 0
  for (let end = first + opts.step; o < others.length || l < lifecycle.length; end += opts.step) {
    const batch: InputEvent[] = []
    while (o < others.length && Date.parse(others[o].occurredAt) < end) batch.push(others[o++])
    if (++steps % opts.uploadEvery === 0 || end > last)
      while (l < lifecycle.length && (end > last || Date.parse(lifecycle[l].occurredAt) < end - opts.lag)) batch.push(lifecycle[l++])
    if (batch.length) await produce(producer, topics, batch)
    await opts.afterStep(steps, o + l)
  }
  return steps
}
