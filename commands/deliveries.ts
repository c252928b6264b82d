import { join } from 'node:path'
import type { DeliveriesConfig } from './config.ts'
import { openClickHouse } from './wiring.ts'
import { RedisStore } from '../pipeline/store/redis.ts'
import { eventsPartitionOf } from '../pipeline/kafka/partitioner.ts'
import type { ClickHouseSink } from '../sinks/clickhouse.ts'
import { Decision } from '../schemas/decision.ts'
import { ConfigError, UnavailableError } from '../core/errors.ts'
import { errText } from '../core/instrumentation.ts'
import type { Logger } from '../core/log.ts'

/**
 * `cardpulse deliveries`: the delivery dead letters (failed and expired webhooks, from the
 * ClickHouse `deliveries` table), and `deliveries resend`, which puts chosen ones back into the
 * outbox with the same decision id, so a receiver that got one after all drops the repeat on its
 * Idempotency-Key. It reads where `run` writes: CLICKHOUSE_URL or the embedded engine in DATA_DIR,
 * and REDIS_URL under REDIS_PREFIX.
 */

export interface DeadDelivery {
  decisionId: string
  trigger: string
  customerId: string
  channel: string
  status: string
  attempts: number
  httpStatus: number | null
  error: string | null
  eventTime: string
  finishedAt: string
}

/** The filters of both subcommands as SQL conditions on {db}.deliveries FINAL, with their parameters. */
function where(c: DeliveriesConfig, now: number): { sql: string; params: Record<string, unknown> } {
  const conds = ['status IN {statuses:Array(String)}']
  const params: Record<string, unknown> = { statuses: c.status }
  if (c.trigger) (conds.push('trigger = {trigger:String}'), (params.trigger = c.trigger))
  if (c.channel) (conds.push('channel = {channel:String}'), (params.channel = c.channel))
  if (c.customer) (conds.push('customer_id = {customer:String}'), (params.customer = c.customer))
  if (c.since !== undefined) {
    conds.push("finished_at >= {since:DateTime64(3, 'UTC')}")
    params.since = clickhouseTime(typeof c.since === 'number' ? now - c.since : Date.parse(c.since))
  }
  return { sql: conds.join(' AND '), params }
}

const clickhouseTime = (ms: number) => new Date(ms).toISOString().replace('T', ' ').replace('Z', '')
const iso = (t: string) => `${t.replace(' ', 'T')}Z`

async function openAnalytics(c: DeliveriesConfig): Promise<ClickHouseSink> {
  const embeddedPath = join(c.dataDir, 'clickhouse')
  try {
    return await openClickHouse({ url: c.clickhouseUrl, database: c.clickhouseDatabase, embeddedPath })
  } catch (e) {
    // The embedded engine takes one process at a time: a running `cardpulse run` holds it.
    if (c.clickhouseUrl || ((e as Error).cause as { code?: unknown } | undefined)?.code !== 'CHDB_CONNECTION') throw e
    throw new UnavailableError('clickhouse', `cannot open the embedded ClickHouse in ${embeddedPath}; another process (cardpulse run?) may hold it`, 'stop that process first, or run both on a ClickHouse server (CLICKHOUSE_URL)', { cause: e })
  }
}

/** A query whose failure (a server gone, a bad answer) is said in one line. */
async function read(sink: ClickHouseSink, sql: string, params: Record<string, unknown>): Promise<Row[]> {
  try {
    return await sink.query<Row>(sql, params)
  } catch (e) {
    throw new UnavailableError('clickhouse', `cannot read the deliveries: ${errText(e).split('\n')[0].slice(0, 300)}`, undefined, { cause: e })
  }
}

// Aliases differ from the columns: ClickHouse lets an alias shadow its column in WHERE.
const COLUMNS = `decision_id, trigger, customer_id, channel, status, attempts, http_status, error,
  toString(event_time) AS event_time_text, toString(finished_at) AS finished_at_text`

type Row = Record<string, unknown>
const toDead = (r: Row): DeadDelivery => ({
  decisionId: String(r.decision_id),
  trigger: String(r.trigger),
  customerId: String(r.customer_id),
  channel: String(r.channel),
  status: String(r.status),
  attempts: Number(r.attempts),
  httpStatus: r.http_status === null ? null : Number(r.http_status),
  error: r.error === null ? null : String(r.error),
  eventTime: iso(String(r.event_time_text)),
  finishedAt: iso(String(r.finished_at_text)),
})

/** Lists failed and expired deliveries, newest first: a table, or NDJSON with --json. */
export async function listDeliveries(c: DeliveriesConfig, out: NodeJS.WritableStream, now = Date.now()): Promise<DeadDelivery[]> {
  const sink = await openAnalytics(c)
  try {
    const { sql, params } = where(c, now)
    const rows = (await read(sink, `SELECT ${COLUMNS} FROM ${sink.database}.deliveries FINAL WHERE ${sql} ORDER BY finished_at DESC, decision_id LIMIT {limit:UInt32}`, { ...params, limit: c.limit })).map(toDead)
    if (c.json) for (const r of rows) out.write(`${JSON.stringify(r)}\n`)
    else out.write(table(rows))
    return rows
  } finally {
    await sink.close()
  }
}

function table(rows: DeadDelivery[]): string {
  if (!rows.length) return 'no failed or expired deliveries match\n'
  const head = ['finished', 'status', 'decision', 'trigger', 'channel', 'customer', 'attempts', 'error']
  const cells = rows.map((r) => [r.finishedAt.slice(0, 19).replace('T', ' '), r.status, r.decisionId, r.trigger, r.channel, r.customerId, String(r.attempts), (r.error ?? '').slice(0, 60)])
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((row) => row[i].length)))
  const line = (row: string[]) => row.map((v, i) => (i === row.length - 1 ? v : v.padEnd(widths[i]))).join('  ').trimEnd()
  return [line(head), ...cells.map(line), `${rows.length} deliveries`].join('\n') + '\n'
}

/**
 * Puts the chosen dead deliveries back into the outbox of their customer's partition, due now,
 * with the same decision and a fresh expiry: `--until`, or now plus the decision's own window
 * (its expiry less its event time: the trigger's ttl). The running pipeline's dispatcher sends them.
 */
export async function resendDeliveries(c: DeliveriesConfig, log: Logger, out: NodeJS.WritableStream, now = Date.now()): Promise<{ queued: string[]; pending: string[]; unknown: string[] }> {
  if (!c.id?.length && !c.allFailed) throw new ConfigError('deliveries resend: name the deliveries with --id ID..., or give --all-failed (with filters)')
  if (c.id?.length && c.allFailed) throw new ConfigError('deliveries resend: give --id or --all-failed, not both')
  if (!c.redisUrl) throw new ConfigError('REDIS_URL (--redis-url) is required to resend: the outbox is in Redis')
  const until = c.until === undefined ? undefined : Date.parse(c.until)
  if (until !== undefined && !(until > now)) throw new ConfigError(`UNTIL (--until) ${c.until} is not in the future`)

  const sink = await openAnalytics(c)
  let decisions: { decision: Decision; status: string }[]
  let unknown: string[] = []
  try {
    const db = sink.database
    const { sql, params } = c.allFailed ? where({ ...c, status: ['failed'] }, now) : { sql: 'decision_id IN {ids:Array(String)}', params: { ids: c.id } }
    const dead = await read(sink, `SELECT decision_id, status FROM ${db}.deliveries FINAL WHERE ${sql} AND status IN ('failed', 'expired') LIMIT {limit:UInt32}`, { ...params, limit: c.allFailed ? c.limit : c.id!.length })
    const status = new Map(dead.map((r) => [String(r.decision_id), String(r.status)]))
    const rows = status.size
      ? await read(
          sink,
          `SELECT id, trigger, customer_id, card_id, outcome, segment, channel, toString(event_time) AS event_time_text, toString(decided_at) AS decided_at_text,
             toString(send_at) AS send_at_text, toString(expires_at) AS expires_at_text, offer_code, offer_value, offer_currency, reason, catalog_version, attribution_window_days
           FROM ${db}.decisions FINAL WHERE id IN {ids:Array(String)}`,
          { ids: [...status.keys()] },
        )
      : []
    decisions = rows.map((r) => ({ decision: decisionOf(r), status: status.get(String(r.id))! }))
    const found = new Set(decisions.map((d) => d.decision.id))
    if (c.id?.length) unknown = c.id.filter((id) => !found.has(id))
  } finally {
    await sink.close()
  }

  const queued: string[] = []
  const pending: string[] = []
  if (decisions.length) {
    const store = await RedisStore.connect(c.redisUrl, { prefix: c.redisPrefix, readyTimeoutMs: c.connectTimeout })
    try {
      for (const { decision } of decisions) {
        const partition = eventsPartitionOf(decision.customerId, c.partitions)
        if (!(await store.redis.exists(store.keys.partition(partition).meta)))
          throw new ConfigError(`partition ${partition} has no state under REDIS_PREFIX ${c.redisPrefix}: set REDIS_PREFIX and PARTITIONS (--partitions) as cardpulse run has them`)
        const window = Date.parse(decision.expiresAt) - Date.parse(decision.eventTime)
        const expiresAt = new Date(until ?? now + window).toISOString()
        const again: Decision = { ...decision, expiresAt }
        if (await store.requeueWebhook(partition, { decision: again, attempts: 0, dueAt: now })) queued.push(decision.id)
        else pending.push(decision.id)
      }
    } finally {
      await store.close()
    }
  }
  for (const id of queued) out.write(`queued ${id}\n`)
  for (const id of pending) out.write(`pending already ${id}: left as it is\n`)
  for (const id of unknown) out.write(`unknown ${id}: no failed or expired delivery with this decision id\n`)
  log.info({ queued: queued.length, pending: pending.length, unknown: unknown.length }, `${queued.length} deliveries queued again`)
  return { queued, pending, unknown }
}

function decisionOf(r: Row): Decision {
  const offer = r.offer_code ? { code: String(r.offer_code), value: Number(r.offer_value), currency: String(r.offer_currency) } : undefined
  return Decision.parse({
    id: r.id,
    trigger: r.trigger,
    customerId: r.customer_id,
    ...(r.card_id ? { cardId: r.card_id } : {}),
    outcome: r.outcome,
    ...(r.segment ? { segment: r.segment } : {}),
    ...(r.channel ? { channel: r.channel } : {}),
    eventTime: iso(String(r.event_time_text)),
    decidedAt: iso(String(r.decided_at_text)),
    ...(r.send_at_text ? { sendAt: iso(String(r.send_at_text)) } : {}),
    expiresAt: iso(String(r.expires_at_text)),
    ...(offer ? { offer } : {}),
    reason: JSON.parse(String(r.reason)),
    catalogVersion: r.catalog_version,
    attributionWindowDays: Number(r.attribution_window_days),
  })
}
