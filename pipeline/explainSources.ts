import { createReadStream, existsSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import type { Catalog } from '../schemas/catalog.ts'
import type { Decision } from '../schemas/decision.ts'
import type { RiskAlert } from '../schemas/alert.ts'
import type { Conversion } from '../schemas/conversion.ts'
import type { PendingWebhook } from '../schemas/outbox.ts'
import type { ClickHouseSink } from '../sinks/clickhouse.ts'
import { decodeRecord } from './store/codec.ts'
import { StoreKeys } from './store/keys.ts'
import type { RedisClient } from './store/redisClient.ts'
import type { MemoryStore } from './store/memory.ts'
import { partitionOf } from './partitioner.ts'
import { eventsPartitionOf } from './kafka/partitioner.ts'
import type { TimerEntry } from './timers.ts'
import { explain, type CustomerStateView, type DeliveryRecord, type Explanation, type Since } from './explain.ts'
import { ConfigError, NotFoundError, UnavailableError } from '../core/errors.ts'
import { errText } from '../core/instrumentation.ts'

/**
 * Where `explain` reads a customer from: the live store (Redis) with ClickHouse, the embedded
 * pipeline of the demo with its ClickHouse, or a replay's output folder. Read only: nothing here
 * writes to a store, a table or a file.
 */

export interface CustomerRecords {
  decisions: Decision[]
  /** The customer's decisions at or after `since` in all: more than those returned may exist. */
  decisionsTotal?: number
  alerts: RiskAlert[]
  conversions: Conversion[]
  deliveries: DeliveryRecord[]
}

/** `undefined`: the store holds no such customer; `unavailable`: this source keeps no state. */
export type StateRead = CustomerStateView | { unavailable: string } | undefined

export interface ExplainSource {
  /** Where the records come from, in words, for the explanation and the not-found message. */
  describe(): string
  /** "As of": the wall clock live, event time in the demo, a replay's last event time. */
  now(customerId: string): Promise<number>
  state(customerId: string): Promise<StateRead>
  /**
   * The customer's records from `range.from` on (epoch ms; all when absent), `range.limit`
   * decisions at most, the newest; `decisionsTotal` counts those from `range.since` on.
   */
  records(customerId: string, range: RecordRange): Promise<CustomerRecords>
}

export interface RecordRange {
  from?: number
  since?: number
  limit: number
}

export interface ExplainRequest {
  customerId: string
  catalog: Catalog
  limit: number
  /** Only decisions and alerts since then (parseSince). */
  since?: Since
}

/** Decisions read before the shown ones, for the cooldowns and caps that led to them. */
const CONTEXT_DECISIONS = 200

/** Looks a customer up in a source and explains it; NotFoundError when no record names it. */
export async function explainCustomer(source: ExplainSource, req: ExplainRequest): Promise<Explanation> {
  const now = await source.now(req.customerId)
  const since = req.since === undefined ? undefined : 'back' in req.since ? now - req.since.back : req.since.at
  const policy = req.catalog.policy
  const lookback = Math.max(policy.cooldown, policy.capWindow, policy.riskHold, ...Object.values(req.catalog.triggers).map((t) => t.cooldown ?? 0))
  const [state, records] = await Promise.all([source.state(req.customerId), source.records(req.customerId, since === undefined ? { limit: req.limit + CONTEXT_DECISIONS } : { from: since - lookback, since, limit: req.limit + CONTEXT_DECISIONS })])
  const nothing = !records.decisions.length && !records.alerts.length && !records.conversions.length
  if ((state === undefined || 'unavailable' in state) && nothing) throw new NotFoundError(`no customer ${req.customerId} in ${source.describe()}`)
  const explanation = explain({
    customerId: req.customerId,
    now,
    catalog: req.catalog,
    source: source.describe(),
    state: state ?? { unavailable: 'the state store holds no record of this customer (none yet, or its state has expired)' },
    decisions: records.decisions,
    alerts: records.alerts,
    conversions: records.conversions,
    deliveries: records.deliveries,
    limit: req.limit,
    ...(since !== undefined ? { since } : {}),
  })
  if (records.decisionsTotal !== undefined) explanation.decisions.total = records.decisionsTotal
  return explanation
}

// --- the live store ---------------------------------------------------------------------------

/** Partitions probed per round trip when counting the store's partitions. */
const PROBE = 64
/** The most partitions `run` accepts (commands/config.ts). */
const MAX_PARTITIONS = 1024

/**
 * How many partitions the store holds state for: the events topic's, since every partition of it
 * carries watermark records and so commits its meta key. Meta keys are probed in order; the count
 * is one past the highest found.
 */
export async function storedPartitions(redis: RedisClient, keys: StoreKeys): Promise<number> {
  let count = 0
  for (let from = 0; from < MAX_PARTITIONS; from += PROBE) {
    const found = await Promise.all(Array.from({ length: PROBE }, (_, i) => redis.exists(keys.partition(from + i).meta)))
    const last = found.map(Boolean).lastIndexOf(true)
    if (last >= 0) count = from + last + 1
    if (last < PROBE - 1) break
  }
  return count
}

/** The customer's record, timers and waiting touchpoints in one partition of the Redis store. */
export async function readRedisCustomer(redis: RedisClient, keys: StoreKeys, partition: number, customerId: string): Promise<CustomerStateView | undefined> {
  const k = keys.partition(partition)
  const stored = await redis.hgetBuffer(k.customers, customerId)
  if (!stored) return undefined
  const record = decodeRecord(stored)
  // Timer members start with the customer id and '|' (pipeline/timers.ts); ids hold no glob characters.
  const timers: TimerEntry[] = []
  let cursor = '0'
  do {
    const [next, flat] = await redis.zscan(k.timers, cursor, 'MATCH', `${customerId}|*`, 'COUNT', 1000)
    for (let i = 0; i < flat.length; i += 2) timers.push({ member: flat[i], at: Number(flat[i + 1]) })
    cursor = next
  } while (cursor !== '0')
  // Waiting touchpoints are keyed by decision id: the customer's are found by their bodies.
  const pendingWebhooks: PendingWebhook[] = []
  cursor = '0'
  const marker = `"customerId":${JSON.stringify(customerId)}`
  do {
    const [next, flat] = await redis.hscan(k.webhooksBody, cursor, 'COUNT', 1000)
    for (let i = 1; i < flat.length; i += 2) if (flat[i].includes(marker)) pendingWebhooks.push(JSON.parse(flat[i]) as PendingWebhook)
    cursor = next
  } while (cursor !== '0')
  return { partition, record, timers, pendingWebhooks: pendingWebhooks.filter((w) => w.decision.customerId === customerId) }
}

/** A URL without its password, for messages. */
const redacted = (url: string) => url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@')

/** The live pipeline's sources: its Redis store and ClickHouse. */
export function liveSource(o: { redis: RedisClient; redisUrl: string; prefix: string; clickhouse: ClickHouseSink; clock?: () => number }): ExplainSource {
  const keys = new StoreKeys(o.prefix)
  let partitions: number | undefined
  let searched = ''
  return {
    describe: () => `Redis ${redacted(o.redisUrl)} (prefix ${o.prefix}${searched}) and ClickHouse database ${o.clickhouse.database} (searched state, decisions, alerts, conversions)`,
    now: async () => (o.clock ?? Date.now)(),
    async state(customerId) {
      try {
        partitions ??= await storedPartitions(o.redis, keys)
        if (!partitions) {
          searched = ', which holds no partition yet'
          return undefined
        }
        const partition = eventsPartitionOf(customerId, partitions)
        searched = `, partition ${partition} of ${partitions}`
        return await readRedisCustomer(o.redis, keys, partition, customerId)
      } catch (e) {
        throw unavailable('redis', e)
      }
    },
    records: (customerId, range) => clickhouseRecords(o.clickhouse, customerId, range),
  }
}

// --- the demo's embedded pipeline ---------------------------------------------------------------

/** The demo's embedded pipeline: its memory store (partitioned as the embedded pipeline does) and ClickHouse. */
export function embeddedSource(o: { store: MemoryStore; partitions: number; clickhouse: ClickHouseSink; clock: () => number }): ExplainSource {
  return {
    describe: () => `the demo's embedded state and ClickHouse database ${o.clickhouse.database} (searched state, decisions, alerts, conversions)`,
    now: async () => o.clock(),
    async state(customerId) {
      const partition = o.partitions === 1 ? 0 : partitionOf(customerId, o.partitions)
      const loaded = await o.store.load(partition, [customerId], Infinity)
      const record = loaded.customers.get(customerId)
      if (!record) return undefined
      const timers = loaded.timers.filter((t) => t.member.startsWith(`${customerId}|`))
      const pendingWebhooks = (await o.store.dueWebhooks(partition, Infinity, Number.MAX_SAFE_INTEGER)).filter((w) => w.decision.customerId === customerId)
      return { partition, record, timers, pendingWebhooks }
    },
    records: (customerId, range) => clickhouseRecords(o.clickhouse, customerId, range),
  }
}

// --- ClickHouse ---------------------------------------------------------------------------------

const toIso = (ts: string | null | undefined) => (ts ? `${ts.replace(' ', 'T')}Z` : undefined)
const toTs = (ms: number) => new Date(ms).toISOString().replace('T', ' ').replace('Z', '')

interface DecisionRow {
  id: string
  trigger: string
  customer_id: string
  card_id: string
  outcome: Decision['outcome']
  suppressed_by: string
  holdout: string
  segment: string
  channel: string
  event_time: string
  decided_at: string
  send_at: string | null
  expires_at: string
  offer_code: string
  offer_value: number
  offer_currency: string
  reason: string
  catalog_version: string
  attribution_window_days: number
}

function decisionOf(r: DecisionRow): Decision {
  return {
    id: r.id,
    trigger: r.trigger,
    customerId: r.customer_id,
    ...(r.card_id ? { cardId: r.card_id } : {}),
    outcome: r.outcome,
    ...(r.suppressed_by ? { suppressedBy: r.suppressed_by as Decision['suppressedBy'] } : {}),
    ...(r.holdout ? { holdout: r.holdout as Decision['holdout'] } : {}),
    ...(r.segment ? { segment: r.segment } : {}),
    ...(r.channel ? { channel: r.channel as Decision['channel'] } : {}),
    eventTime: toIso(r.event_time)!,
    decidedAt: toIso(r.decided_at)!,
    ...(r.send_at ? { sendAt: toIso(r.send_at) } : {}),
    expiresAt: toIso(r.expires_at)!,
    ...(r.offer_code ? { offer: { code: r.offer_code, value: Number(r.offer_value), currency: r.offer_currency } } : {}),
    reason: JSON.parse(r.reason || '{}'),
    catalogVersion: r.catalog_version,
    attributionWindowDays: Number(r.attribution_window_days),
  }
}

/** The customer's rows of the analytics tables, by bound parameters only; by the pseudonym where the tables hold pseudonyms. */
export async function clickhouseRecords(sink: ClickHouseSink, customerId: string, range: RecordRange): Promise<CustomerRecords> {
  const db = sink.database
  const params = { customer: sink.customerIdInTables(customerId), from: toTs(range.from ?? 0), since: toTs(range.since ?? 0), limit: range.limit }
  const where = `customer_id = {customer:String} AND event_time >= {from:DateTime64(3, 'UTC')}`
  try {
    const [decisions, total, alerts, conversions, deliveries] = await Promise.all([
      sink.query<DecisionRow>(`SELECT * FROM ${db}.decisions FINAL WHERE ${where} ORDER BY event_time DESC, id DESC LIMIT {limit:UInt32}`, params),
      sink.query<{ n: string }>(`SELECT count() AS n FROM ${db}.decisions FINAL WHERE customer_id = {customer:String} AND event_time >= {since:DateTime64(3, 'UTC')}`, params),
      sink.query<{ id: string; kind: RiskAlert['kind']; severity: RiskAlert['severity']; score: number; card_id: string; event_time: string; detected_at: string; evidence: string; rule_version: string }>(
        `SELECT id, kind, severity, score, card_id, event_time, detected_at, evidence, rule_version FROM ${db}.alerts FINAL WHERE ${where} ORDER BY event_time DESC, id DESC LIMIT {limit:UInt32}`,
        params,
      ),
      sink.query<{ decision_id: string; trigger: string; card_id: string; outcome: Conversion['outcome']; decision_time: string; window_end: string; converted: number; converted_at: string | null; converting_event_id: string; engaged: number; spend: number; pre_spend: number; final: number; version: number }>(
        `SELECT * FROM ${db}.conversions FINAL WHERE customer_id = {customer:String} AND decision_time >= {from:DateTime64(3, 'UTC')} ORDER BY decision_time DESC LIMIT {limit:UInt32}`,
        params,
      ),
      sink.query<{ decision_id: string; status: string; attempts: number; http_status: number | null; error: string | null; finished_at: string; cancel_reason: string; cancelled_by: string }>(
        `SELECT decision_id, status, attempts, http_status, error, finished_at, cancel_reason, cancelled_by FROM ${db}.deliveries FINAL WHERE ${where} ORDER BY event_time DESC LIMIT {limit:UInt32}`,
        params,
      ),
    ])
    return {
      // The rows may hold the pseudonym; whoever asks knows the customer.
      decisions: decisions.map((r) => ({ ...decisionOf(r), customerId })),
      decisionsTotal: Number(total[0]?.n ?? 0),
      alerts: alerts.map((a) => ({
        id: a.id,
        kind: a.kind,
        severity: a.severity,
        score: Number(a.score),
        customerId,
        ...(a.card_id ? { cardId: a.card_id } : {}),
        eventTime: toIso(a.event_time)!,
        detectedAt: toIso(a.detected_at)!,
        evidence: JSON.parse(a.evidence || '{"eventIds":[]}'),
        ruleVersion: a.rule_version,
      })),
      conversions: conversions.map((c) => ({
        decisionId: c.decision_id,
        trigger: c.trigger,
        customerId,
        ...(c.card_id ? { cardId: c.card_id } : {}),
        outcome: c.outcome,
        decisionTime: toIso(c.decision_time)!,
        windowEnd: toIso(c.window_end)!,
        converted: Number(c.converted) === 1,
        ...(c.converted_at ? { convertedAt: toIso(c.converted_at) } : {}),
        ...(c.converting_event_id ? { convertingEventId: c.converting_event_id } : {}),
        engaged: Number(c.engaged) === 1,
        spend: Number(c.spend),
        preSpend: Number(c.pre_spend),
        final: Number(c.final) === 1,
        version: Number(c.version),
      })),
      deliveries: deliveries.map((d) => ({
        decisionId: d.decision_id,
        status: d.status,
        attempts: Number(d.attempts),
        ...(d.http_status !== null ? { httpStatus: Number(d.http_status) } : {}),
        // A cancelled touchpoint's reason reads where a failed one's error does (docs/webhooks.md).
        ...(d.error ? { error: d.error } : d.cancel_reason ? { error: `${d.cancel_reason.replace('_', ' ')} (${d.cancelled_by})` } : {}),
        ...(d.finished_at ? { finishedAt: toIso(d.finished_at) } : {}),
      })),
    }
  } catch (e) {
    throw unavailable('clickhouse', e)
  }
}

function unavailable(service: 'redis' | 'clickhouse', e: unknown): Error {
  if (e instanceof UnavailableError || e instanceof ConfigError) return e
  return new UnavailableError(service, `cannot read the customer from ${service === 'redis' ? 'Redis' : 'ClickHouse'} (${errText(e)})`, undefined, { cause: e })
}

// --- a replay's output ------------------------------------------------------------------------------

const REPLAY_FILES = { decisions: 'decisions.ndjson', alerts: 'alerts.ndjson', conversions: 'conversions.ndjson' } as const

/**
 * A replay's (or `demo --out`'s) output folder: its decisions, alerts and conversions. A replay
 * keeps no customer state, so the state part of the explanation says so; "now" is the replay's
 * last event time.
 */
export function replaySource(dir: string): ExplainSource {
  if (!existsSync(join(dir, REPLAY_FILES.decisions)))
    throw new ConfigError(`EXPLAIN_DIR (--dir) ${dir} holds no decisions.ndjson`, 'give the folder that `cardpulse replay --out` wrote')
  const reads = new Map<string, Promise<{ records: CustomerRecords; last: number }>>()
  const load = (customerId: string) => {
    let read = reads.get(customerId)
    if (!read) reads.set(customerId, (read = readReplay(dir, customerId)))
    return read
  }
  return {
    describe: () => `the replay output ${dir} (searched ${Object.values(REPLAY_FILES).join(', ')})`,
    now: async (customerId) => (await load(customerId)).last,
    state: async () => ({ unavailable: 'a replay keeps no customer state: lifecycle stage, value tier, timers and open windows are known only to a live pipeline; the decisions, alerts and conversions below are those of the replay' }),
    async records(customerId, { from, since, limit }) {
      const all = (await load(customerId)).records
      const after = (iso: string) => from === undefined || Date.parse(iso) >= from
      const decisions = all.decisions.filter((d) => after(d.eventTime))
      return {
        decisions: decisions.slice(-limit),
        decisionsTotal: decisions.filter((d) => since === undefined || Date.parse(d.eventTime) >= since).length,
        alerts: all.alerts.filter((a) => after(a.eventTime)),
        conversions: all.conversions.filter((c) => after(c.decisionTime)),
        deliveries: [],
      }
    },
  }
}

/** Reads one customer's lines of the output files, and the last event time of the replay. */
async function readReplay(dir: string, customerId: string): Promise<{ records: CustomerRecords; last: number }> {
  const mine: CustomerRecords = { decisions: [], alerts: [], conversions: [], deliveries: [] }
  const marker = `"customerId":${JSON.stringify(customerId)}`
  let last = -Infinity
  const scan = async (file: string, onLine: (line: string) => void) => {
    const path = join(dir, file)
    if (!existsSync(path)) return
    const lines = createInterface({ input: createReadStream(path, 'utf8'), crlfDelay: Infinity })
    for await (const line of lines) if (line) onLine(line)
  }
  // Files are sorted by event time: a file's last line is its latest.
  const lastTime = (line: string) => {
    const m = /"eventTime":"([^"]+)"/.exec(line)
    if (m) last = Math.max(last, Date.parse(m[1]))
  }
  let lastDecision = ''
  await scan(REPLAY_FILES.decisions, (line) => {
    lastDecision = line
    if (line.includes(marker)) mine.decisions.push(JSON.parse(line))
  })
  lastTime(lastDecision)
  let lastAlert = ''
  await scan(REPLAY_FILES.alerts, (line) => {
    lastAlert = line
    if (line.includes(marker)) mine.alerts.push(JSON.parse(line))
  })
  lastTime(lastAlert)
  await scan(REPLAY_FILES.conversions, (line) => {
    if (line.includes(marker)) mine.conversions.push(JSON.parse(line))
  })
  return { records: mine, last: Number.isFinite(last) ? last : 0 }
}
