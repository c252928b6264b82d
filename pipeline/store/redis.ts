import { readFileSync } from 'node:fs'
import type { RiskAlert } from '../../schemas/alert.ts'
import type { DeadLetter } from '../../schemas/deadLetter.ts'
import { decodeRecord, encodeRecord } from './codec.ts'
import { StoreKeys } from './keys.ts'
import {
  type BatchCommit,
  type CommitOutcome,
  type CustomerRecord,
  type LoadedBatch,
  type StateStore,
} from './types.ts'
import { FencedError } from '../../core/errors.ts'
import { openRedis, type RedisClient, type RedisConnectOptions } from './redisClient.ts'
import type { OutboxEntry, OutboxRow, PendingWebhook } from '../../schemas/outbox.ts'
import type { TimerEntry } from '../timers.ts'
import type { Channel } from '../../schemas/events.ts'
import { CHANNELS } from './types.ts'
import type { OutboxBacklog } from '../../sinks/monitor.ts'

/**
 * The live state store: one partition's state in Redis keys that share a hash tag (keys.ts), every
 * multi-key write one Lua script (lua/), every read of a batch one pipelined round trip.
 */

export interface RedisStoreOptions {
  /** Namespace of every key; a fresh one per test keeps runs apart. */
  prefix: string
}

// --- scripts -------------------------------------------------------------------------------

const SCRIPT_FILES = {
  adoptListOutbox: 'adoptListOutbox-4.lua',
  commitBatch: 'commitBatch-9.lua',
  finishWebhook: 'finishWebhook-4.lua',
  retryWebhook: 'retryWebhook-4.lua',
  claimWebhooks: 'claimWebhooks-4.lua',
  parkWebhooks: 'parkWebhooks-2.lua',
  unparkWebhooks: 'unparkWebhooks-3.lua',
  requeueWebhook: 'requeueWebhook-2.lua',
} as const
type ScriptName = keyof typeof SCRIPT_FILES

type ScriptFn = (keys: string[], argv: (string | Buffer)[]) => Promise<unknown>

/** Return codes of commitBatch-9.lua, mapped to a result in one place. */
type CommitReply = [0, ...string[]] | [1, string, string]
type CommitResult = { ok: true; cancelled: string[] } | { ok: false; found: string | null; foundVersion: number }

function commitResult(reply: unknown): CommitResult {
  const r = reply as CommitReply
  if (r[0] === 0) return { ok: true, cancelled: r.slice(1) as string[] }
  if (r[0] === 1) return { ok: false, found: decodeOffset(r[1] as string), foundVersion: Number(r[2]) }
  throw new Error(`commitBatch returned an unknown reply ${JSON.stringify(reply)}`)
}

/** Offsets cross into Lua as strings: '' is null, '=' + offset otherwise (so '' stays a valid offset). */
const encodeOffset = (o: string | null) => (o === null ? '' : `=${o}`)
const decodeOffset = (s: string) => (s === '' ? null : s.slice(1))

/** A zset bound from a JS time; ±Infinity are legal bounds, NaN is a bug. */
function bound(t: number): string {
  if (t === Infinity) return '+inf'
  if (t === -Infinity) return '-inf'
  if (Number.isNaN(t)) throw new TypeError('time bound is NaN')
  return String(t)
}

/** A zset score that must be stored: finite, or the script would fail half-way through a write. */
function score(t: number, what: string): string {
  if (!Number.isFinite(t)) throw new TypeError(`${what} must be a finite epoch ms, got ${t}`)
  return String(t)
}

let luaSources: Record<ScriptName, string> | undefined
function lua(): Record<ScriptName, string> {
  luaSources ??= Object.fromEntries(
    Object.entries(SCRIPT_FILES).map(([name, file]) => [name, readFileSync(new URL(`./lua/${file}`, import.meta.url), 'utf8')]),
  ) as Record<ScriptName, string>
  return luaSources
}

// --- the store -----------------------------------------------------------------------------


/**
 * Round trips to Redis this store has awaited, by use: `load` (the pipelined read of a batch, and
 * the once-per-partition outbox adoption), `commit` (the Lua call of a batch or a watermark move)
 * and `outbox` (peek, ack and webhook calls of the drain). A pipeline or a script call counts as
 * one; a script that Redis no longer caches costs one more, not counted.
 */
export interface RoundTrips {
  load: number
  commit: number
  outbox: number
}

export class RedisStore implements StateStore {
  readonly keys: StoreKeys
  private readonly scripts: Record<ScriptName, ScriptFn>
  private owned = false
  private readonly trips: RoundTrips = { load: 0, commit: 0, outbox: 0 }

  /** Round trips so far (a copy): what a benchmark reads. */
  get roundTrips(): RoundTrips {
    return { ...this.trips }
  }

  /** Uses `redis` as given; `close()` leaves a connection it did not open alone. */
  constructor(
    readonly redis: RedisClient,
    opts: RedisStoreOptions,
  ) {
    this.keys = new StoreKeys(opts.prefix)
    const sources = lua()
    const scripts = {} as Record<ScriptName, ScriptFn>
    for (const name of Object.keys(SCRIPT_FILES) as ScriptName[]) {
      const numberOfKeys = Number(/-(\d+)\.lua$/.exec(SCRIPT_FILES[name])![1])
      const command = `cardpulse_${name}`
      redis.defineCommand(command, { lua: sources[name], numberOfKeys })
      // ioredis flattens array arguments, so keys and argv go as two arrays (no spread limit).
      const fn = (redis as unknown as Record<string, (...a: (string | Buffer)[][]) => Promise<unknown>>)[command]
      scripts[name] = (keys, argv) => fn.call(redis, keys, argv)
    }
    this.scripts = scripts
  }

  /** Opens a connection (`openRedis`) and uses it; `close()` closes it. */
  static async connect(url: string, opts: RedisConnectOptions & RedisStoreOptions): Promise<RedisStore> {
    const store = new RedisStore(await openRedis(url, opts), opts)
    store.owned = true
    return store
  }

  async load(partition: number, customerIds: string[], timersUpTo: number): Promise<LoadedBatch> {
    const k = this.keys.partition(partition)
    if (!this.adopted.has(partition)) {
      // Once per partition and process: an outbox left in the former lists moves to the streams.
      this.trips.load++
      await this.scripts.adoptListOutbox([k.formerRows, k.rows, k.formerAlerts, k.alerts], [])
      this.adopted.add(partition)
    }
    const p = this.redis.pipeline()
    p.hmget(k.meta, 'appliedOffset', 'watermark', 'sources', 'version')
    if (customerIds.length) p.hmgetBuffer(k.customers, ...customerIds) // HMGET needs at least one field
    p.zrangebyscore(k.timers, '-inf', bound(timersUpTo), 'WITHSCORES')
    this.trips.load++
    const replies = results(await p.exec())

    const [offset, watermark, sources, version] = replies[0] as (string | null)[]
    const customers = new Map<string, CustomerRecord>()
    if (customerIds.length) {
      const records = replies[1] as (Buffer | null)[]
      customerIds.forEach((id, i) => {
        if (records[i] !== null) customers.set(id, decodeRecord(records[i]!))
      })
    }
    // Equal scores come back in member order, which is the (at, member) order of the contract.
    const flat = replies[replies.length - 1] as string[]
    const timers: TimerEntry[] = []
    for (let i = 0; i < flat.length; i += 2) timers.push({ member: flat[i], at: Number(flat[i + 1]) })

    return { appliedOffset: offset, version: Number(version ?? 0), watermark: watermark === null ? -Infinity : Number(watermark), sources: sources === null ? undefined : JSON.parse(sources), customers, timers }
  }

  private readonly adopted = new Set<number>()

  async commit(b: BatchCommit): Promise<CommitOutcome> {
    const k = this.keys.partition(b.partition)
    const customers: (string | Buffer)[] = []
    for (const [id, rec] of b.customers) customers.push(id, encodeRecord(rec))
    const timersSet: string[] = []
    for (const t of b.timersSet) timersSet.push(t.member, score(t.at, `timer ${t.member}`))
    const webhooks: string[] = []
    for (const w of b.webhooks) webhooks.push(w.decision.id, score(w.dueAt, `webhook ${w.decision.id} dueAt`), JSON.stringify(w))
    const cancellations: string[] = []
    for (const c of b.cancellations ?? []) cancellations.push(c.decisionId, JSON.stringify(c.row))
    const argv: (string | Buffer)[] = [
      encodeOffset(b.expectedOffset),
      encodeOffset(b.offset),
      String(b.watermark),
      b.sources ? JSON.stringify(b.sources) : '',
      String(b.customers.size),
      String(b.timersSet.length),
      String(b.timersRemoved.length),
      String(b.webhooks.length),
      String(b.alerts.length),
      String(b.rows.length),
      String(b.deadLetters.length),
      String(cancellations.length / 2),
      ...customers,
      ...timersSet,
      ...b.timersRemoved,
      ...webhooks,
      ...b.alerts.map((a) => JSON.stringify(a)),
      ...b.rows.map((r) => JSON.stringify(r)),
      ...b.deadLetters.map((q) => JSON.stringify(q)),
      ...cancellations,
      b.expectedVersion === undefined ? '' : String(b.expectedVersion),
    ]
    const keys = [k.meta, k.customers, k.timers, k.rows, k.alerts, k.webhooksDue, k.webhooksBody, k.deadLetters, k.webhooksClaims]
    this.trips.commit++
    const result = commitResult(await this.scripts.commitBatch(keys, argv))
    if (!result.ok) throw new FencedError(b.partition, b.expectedOffset, result.found, b.expectedVersion, result.foundVersion)
    return { cancelled: result.cancelled }
  }

  async peekRows(partition: number, max: number): Promise<OutboxEntry<OutboxRow>[]> {
    return this.peek(this.keys.partition(partition).rows, max)
  }

  async ackRows(partition: number, ids: string[]): Promise<void> {
    await this.ack(this.keys.partition(partition).rows, ids)
  }

  async peekAlerts(partition: number, max: number): Promise<OutboxEntry<RiskAlert>[]> {
    return this.peek(this.keys.partition(partition).alerts, max)
  }

  async ackAlerts(partition: number, ids: string[]): Promise<void> {
    await this.ack(this.keys.partition(partition).alerts, ids)
  }

  async peekDeadLetters(partition: number, max: number): Promise<OutboxEntry<DeadLetter>[]> {
    return this.peek(this.keys.partition(partition).deadLetters, max)
  }

  async ackDeadLetters(partition: number, ids: string[]): Promise<void> {
    await this.ack(this.keys.partition(partition).deadLetters, ids)
  }

  async dueWebhooks(partition: number, now: number, max: number): Promise<PendingWebhook[]> {
    if (max <= 0) return []
    const k = this.keys.partition(partition)
    // Ties on dueAt come back in decisionId order, as in the memory store.
    this.trips.outbox++
    const ids = await this.redis.zrangebyscore(k.webhooksDue, '-inf', bound(now), 'LIMIT', 0, max)
    if (!ids.length) return []
    this.trips.outbox++
    const bodies = await this.redis.hmget(k.webhooksBody, ...ids)
    // A body gone between the two reads was finished meanwhile: not due any more.
    return bodies.filter((b): b is string => b !== null).map((b) => JSON.parse(b) as PendingWebhook)
  }

  async finishWebhook(partition: number, decisionId: string, row: OutboxRow): Promise<void> {
    const k = this.keys.partition(partition)
    this.trips.outbox++
    await this.scripts.finishWebhook([k.webhooksDue, k.webhooksBody, k.rows, k.webhooksClaims], [decisionId, JSON.stringify(row)])
  }

  async retryWebhook(partition: number, pending: PendingWebhook): Promise<void> {
    const k = this.keys.partition(partition)
    const id = pending.decision.id
    this.trips.outbox++
    await this.scripts.retryWebhook([k.webhooksDue, k.webhooksBody, k.webhooksClaims, k.rows], [id, score(pending.dueAt, `webhook ${id} dueAt`), JSON.stringify(pending)])
  }

  async claimWebhooks(partition: number, decisionIds: string[]): Promise<string[]> {
    if (!decisionIds.length) return []
    const k = this.keys.partition(partition)
    this.trips.outbox++
    return (await this.scripts.claimWebhooks([k.webhooksDue, k.webhooksBody, k.webhooksClaims, k.rows], decisionIds)) as string[]
  }

  async parkWebhooks(partition: number, channel: Channel, decisionIds: string[]): Promise<void> {
    if (!decisionIds.length) return
    const k = this.keys.partition(partition)
    this.trips.outbox++
    await this.scripts.parkWebhooks([k.webhooksDue, this.keys.parked(partition, channel)], decisionIds)
  }

  async unparkWebhooks(partition: number, channel: Channel, max: number): Promise<{ moved: number; parked: number }> {
    const k = this.keys.partition(partition)
    this.trips.outbox++
    const [moved, parked] = (await this.scripts.unparkWebhooks([k.webhooksDue, this.keys.parked(partition, channel), k.webhooksBody], [String(Math.max(0, Math.floor(max)))])) as [number, number]
    return { moved, parked }
  }

  async requeueWebhook(partition: number, pending: PendingWebhook): Promise<boolean> {
    const k = this.keys.partition(partition)
    const id = pending.decision.id
    const reply = await this.scripts.requeueWebhook([k.webhooksDue, k.webhooksBody], [id, score(pending.dueAt, `webhook ${id} dueAt`), JSON.stringify(pending)])
    return reply === 1
  }

  async outboxBacklog(partition: number, now: number): Promise<OutboxBacklog> {
    const k = this.keys.partition(partition)
    const p = this.redis.pipeline()
    p.xlen(k.rows)
    p.xlen(k.alerts)
    p.xlen(k.deadLetters)
    p.zcount(k.webhooksDue, '-inf', bound(now))
    p.zrangebyscore(k.webhooksDue, '-inf', bound(now), 'WITHSCORES', 'LIMIT', 0, 1)
    p.zcard(k.webhooksDue)
    for (const channel of CHANNELS) {
      p.zcard(this.keys.parked(partition, channel))
      p.zrange(this.keys.parked(partition, channel), '0', '0', 'WITHSCORES')
    }
    const r = results(await p.exec())
    const oldest = (reply: unknown) => ((reply as string[]).length ? Number((reply as string[])[1]) : null)
    const parked = {} as OutboxBacklog['parked']
    CHANNELS.forEach((channel, i) => (parked[channel] = { count: r[6 + 2 * i] as number, oldestDueAt: oldest(r[7 + 2 * i]) }))
    return {
      rows: r[0] as number,
      alerts: r[1] as number,
      deadLetters: r[2] as number,
      webhooksDue: r[3] as number,
      oldestDueAt: oldest(r[4]),
      webhooksScheduled: (r[5] as number) - (r[3] as number),
      parked,
    }
  }

  /** Closes the connection if `connect` opened it. */
  async close(): Promise<void> {
    if (!this.owned) return
    this.owned = false
    if (this.redis.status === 'ready') {
      try {
        await this.redis.quit()
        return
      } catch {
        // fall through: drop the socket
      }
    }
    this.redis.disconnect()
  }

  /** The oldest entries of an outbox stream; each has the one field `v`. */
  private async peek<T>(key: string, max: number): Promise<OutboxEntry<T>[]> {
    if (max <= 0) return []
    this.trips.outbox++
    const entries = await this.redis.xrange(key, '-', '+', 'COUNT', max)
    return entries.map(([id, fields]) => ({ id, value: JSON.parse(fields[1]) as T }))
  }

  /** Deletes exactly these stream entries: one a drain sent, never one appended since. */
  private async ack(key: string, ids: string[]): Promise<void> {
    for (let i = 0; i < ids.length; i += ACK_CHUNK) {
      this.trips.outbox++
      await this.redis.xdel(key, ...ids.slice(i, i + ACK_CHUNK))
    }
  }
}

/** Ids per XDEL: a bound on one command's size. */
const ACK_CHUNK = 5000

/** Replies of a pipeline, or its first error. */
function results(replies: [Error | null, unknown][] | null): unknown[] {
  if (!replies) throw new Error('Redis pipeline was aborted')
  return replies.map(([err, value]) => {
    if (err) throw err
    return value
  })
}
