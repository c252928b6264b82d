import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { Cluster, type Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'
import type { RiskAlert } from '../schemas/alert.ts'
import type { DeadLetter } from '../schemas/deadLetter.ts'
import { MemoryStore } from '../pipeline/store/memory.ts'
import { decodeRecord } from '../pipeline/store/codec.ts'
import { initialFacts } from '../operators/facts.ts'
import { RedisStore } from '../pipeline/store/redis.ts'
import { RedisUnreachableError } from '../pipeline/store/redisClient.ts'
import {
  type BatchCommit,
  type CustomerRecord,
  type StateStore,
} from '../pipeline/store/types.ts'
import { FencedError } from '../core/errors.ts'
import type { OutboxEntry, OutboxRow, PendingWebhook } from '../schemas/outbox.ts'

/**
 * One contract, run against every StateStore: the memory store (demo, replay) and the Redis store
 * (live) must be interchangeable. Redis runs use a fresh key prefix per test and delete it after.
 * REDIS_URL picks the server; REDIS_CLUSTER_URL (redis-cluster://h:p,…) adds a run on a cluster.
 */

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const REDIS_CLUSTER_URL = process.env.REDIS_CLUSTER_URL

// --- data ----------------------------------------------------------------------------------

function record(n: number, extra: Record<string, unknown> = {}): CustomerRecord {
  return {
    v: 1,
    seen: [[`e${n}`, n]],
    profile: { timezone: 'Asia/Shanghai', homeCountry: 'CN', consent: { sms: true } },
    facts: initialFacts(),
    policy: { lastContact: {}, contacts: [] },
    ops: { counter: { n }, ...extra },
  }
}

function pending(id: string, dueAt: number, attempts = 0): PendingWebhook {
  return {
    attempts,
    dueAt,
    decision: {
      id,
      trigger: 'activation_reminder',
      customerId: 'c1',
      outcome: 'send',
      channel: 'sms',
      eventTime: '2024-01-01T00:00:00.000Z',
      decidedAt: '2024-01-01T00:00:00.000Z',
      sendAt: '2024-01-01T00:00:00.000Z',
      expiresAt: '2024-01-03T00:00:00.000Z',
      reason: { hoursWithoutActivation: 72 },
      catalogVersion: 'v1',
      attributionWindowDays: 7,
    },
  }
}

function alert(id: string): RiskAlert {
  return {
    id,
    kind: 'velocity',
    severity: 'high',
    score: 0.9,
    customerId: 'c1',
    eventTime: '2024-01-01T00:00:00.000Z',
    detectedAt: '2024-01-01T00:00:01.000Z',
    evidence: { eventIds: ['e1', 'e2'], count: 12 },
    ruleVersion: '1',
  }
}

const row = (table: string, n: number): OutboxRow => ({ table, row: { n } })
function late(id: string): DeadLetter {
  return {
    id,
    source: { topic: 'transactions', partition: 0, offset: id.slice(1) },
    error: { code: 'late_event', message: 'event time is behind the watermark', path: '$.occurredAt' },
    original: '{"eventId":"e1"}',
    originalEncoding: 'utf8',
    originalBytes: 16,
    originalTruncated: false,
    receivedAt: '2024-01-01T00:00:01.000Z',
  }
}

const values = <T>(entries: OutboxEntry<T>[]) => entries.map((e) => e.value)
const ids = <T>(entries: OutboxEntry<T>[]) => entries.map((e) => e.id)

function batch(b: Partial<BatchCommit> = {}): BatchCommit {
  return {
    partition: 0,
    expectedOffset: null,
    offset: '1',
    watermark: 0,
    customers: new Map(),
    timersSet: [],
    timersRemoved: [],
    webhooks: [],
    alerts: [],
    deadLetters: [],
    rows: [],
    ...b,
  }
}

// --- the contract --------------------------------------------------------------------------

export interface StoreFixture {
  store: StateStore
  /** Closes the store and removes whatever the test left behind. */
  dispose(): Promise<void>
}

export function describeStoreContract(name: string, makeStore: () => Promise<StoreFixture>) {
  describe(`${name} — StateStore contract`, () => {
    let fx: StoreFixture
    let s: StateStore
    beforeEach(async () => {
      fx = await makeStore()
      s = fx.store
    })
    afterEach(async () => {
      await fx.dispose()
    })

    it('loads an empty partition as new', async () => {
      const got = await s.load(0, ['c1', 'c2'], Infinity)
      expect(got).toEqual({ appliedOffset: null, version: 0, watermark: -Infinity, customers: new Map(), timers: [] })
    })

    it('returns what a commit wrote: meta, customers asked for, due timers', async () => {
      await s.commit(
        batch({
          offset: '41',
          watermark: 1_700_000_000_123,
          customers: new Map([
            ['c1', record(1)],
            ['c2', record(2)],
          ]),
          timersSet: [{ member: 'c1|activation:approved', at: 1_700_000_100_000 }],
        }),
      )
      const got = await s.load(0, ['c1', 'c3'], Infinity)
      expect(got.appliedOffset).toBe('41')
      expect(got.watermark).toBe(1_700_000_000_123)
      expect(got.customers).toEqual(new Map([['c1', record(1)]]))
      expect(got.timers).toEqual([{ member: 'c1|activation:approved', at: 1_700_000_100_000 }])

      await s.commit(batch({ expectedOffset: '41', offset: '42', watermark: 5, customers: new Map([['c1', record(9)]]) }))
      const again = await s.load(0, ['c1', 'c2'], Infinity)
      expect(again.appliedOffset).toBe('42')
      expect(again.watermark).toBe(5)
      expect(again.customers).toEqual(new Map([['c1', record(9)], ['c2', record(2)]]))
    })

    it('keeps the sources\' marks with the applied offset, and leaves them as they are when a commit gives none', async () => {
      expect((await s.load(0, [], 0)).sources).toBeUndefined()
      const sources = { 'cards.transactions|0': { at: 1_700_000_000_123 }, 'cards.lifecycle|2': { at: -8.64e15, idle: true as const } }
      await s.commit(batch({ watermark: 1_700_000_000_000, sources }))
      expect((await s.load(0, [], 0)).sources).toEqual(sources)
      await s.commit(batch({ expectedOffset: '1', offset: '2' }))
      expect((await s.load(0, [], 0)).sources).toEqual(sources)
      // Fenced: nothing of a stale commit is written, its marks neither.
      await expect(s.commit(batch({ expectedOffset: '1', offset: '3', sources: {} }))).rejects.toBeInstanceOf(FencedError)
      expect((await s.load(0, [], 0)).sources).toEqual(sources)
      expect((await s.load(1, [], 0)).sources).toBeUndefined()
    })

    it('keeps offsets as exact strings, and null as null', async () => {
      await s.commit(batch({ offset: null, watermark: 1 }))
      expect((await s.load(0, [], 0)).appliedOffset).toBeNull()
      const big = '9007199254740993123' // beyond 2^53: must not pass through a float
      await s.commit(batch({ expectedOffset: null, offset: big }))
      expect((await s.load(0, [], 0)).appliedOffset).toBe(big)
      await s.commit(batch({ expectedOffset: big, offset: '' }))
      expect((await s.load(0, [], 0)).appliedOffset).toBe('')
      await expect(s.commit(batch({ expectedOffset: null, offset: '1' }))).rejects.toBeInstanceOf(FencedError)
    })

    it('returns timers due by the bound, ordered by (at, member), and leaves them in place', async () => {
      await s.commit(
        batch({
          timersSet: [
            { member: 'b', at: 20 },
            { member: 'c', at: 10 },
            { member: 'a', at: 20 },
            { member: 'd', at: 30 },
            { member: 'e', at: 20.5 },
          ],
        }),
      )
      expect((await s.load(0, [], 9)).timers).toEqual([])
      expect((await s.load(0, [], 20)).timers).toEqual([
        { member: 'c', at: 10 },
        { member: 'a', at: 20 },
        { member: 'b', at: 20 },
      ])
      // Loading does not consume them.
      expect((await s.load(0, [], Infinity)).timers.map((t) => t.member)).toEqual(['c', 'a', 'b', 'e', 'd'])
      expect((await s.load(0, [], Infinity)).timers.map((t) => t.member)).toEqual(['c', 'a', 'b', 'e', 'd'])
    })

    it('moves a re-set timer, removes a cancelled one, and lets a set win over a removal in one batch', async () => {
      await s.commit(batch({ timersSet: [{ member: 'x', at: 10 }, { member: 'y', at: 15 }, { member: 'z', at: 20 }] }))
      await s.commit(
        batch({
          expectedOffset: '1',
          offset: '2',
          timersSet: [{ member: 'x', at: 100 }, { member: 'z', at: 25 }],
          timersRemoved: ['y', 'z', 'never-set'],
        }),
      )
      expect((await s.load(0, [], 50)).timers).toEqual([{ member: 'z', at: 25 }])
      expect((await s.load(0, [], Infinity)).timers).toEqual([
        { member: 'z', at: 25 },
        { member: 'x', at: 100 },
      ])
      // Setting the same timer again at the same time keeps one timer.
      await s.commit(batch({ expectedOffset: '2', offset: '3', timersSet: [{ member: 'x', at: 100 }, { member: 'x', at: 100 }] }))
      await s.commit(batch({ expectedOffset: '3', offset: '4', timersRemoved: ['z'] }))
      expect((await s.load(0, [], Infinity)).timers).toEqual([{ member: 'x', at: 100 }])
    })

    it('fences a stale commit and writes nothing of it', async () => {
      await s.commit(
        batch({
          offset: '10',
          watermark: 100,
          customers: new Map([['c1', record(1)]]),
          timersSet: [{ member: 't1', at: 50 }],
          webhooks: [pending('d1', 60)],
          alerts: [alert('a1')],
          rows: [row('decisions', 1)],
        }),
      )
      const before = {
        load: await s.load(0, ['c1', 'c2'], Infinity),
        rows: values(await s.peekRows(0, 100)),
        alerts: values(await s.peekAlerts(0, 100)),
        webhooks: await s.dueWebhooks(0, Infinity, 100),
      }

      for (const expectedOffset of ['9', null, '100']) {
        const stale = batch({
          expectedOffset,
          offset: '11',
          watermark: 200,
          customers: new Map([['c1', record(99)], ['c2', record(2)]]),
          timersSet: [{ member: 't1', at: 1 }, { member: 't2', at: 2 }],
          timersRemoved: ['t1'],
          webhooks: [pending('d1', 1, 5), pending('d2', 1)],
          alerts: [alert('a2')],
          rows: [row('decisions', 2)],
        })
        const err = await s.commit(stale).then(
          () => undefined,
          (e: unknown) => e,
        )
        expect(err).toBeInstanceOf(FencedError)
        expect((err as FencedError).retriable).toBe(false)
        expect((err as Error).message).toContain('found 10')
      }

      expect(await s.load(0, ['c1', 'c2'], Infinity)).toEqual(before.load)
      expect(values(await s.peekRows(0, 100))).toEqual(before.rows)
      expect(values(await s.peekAlerts(0, 100))).toEqual(before.alerts)
      expect(await s.dueWebhooks(0, Infinity, 100)).toEqual(before.webhooks)
    })

    it('counts commits, and fences one that expects an older count though the offset matches', async () => {
      expect((await s.load(0, [], 0)).version).toBe(0)
      await s.commit(batch({ offset: '5', expectedVersion: 0 }))
      // A step that only moves the watermark keeps the offset: the count is what tells owners apart.
      await s.commit(batch({ expectedOffset: '5', offset: '5', watermark: 100, expectedVersion: 1, timersSet: [{ member: 't1', at: 1 }] }))
      expect((await s.load(0, [], 0)).version).toBe(2)
      const err = await s.commit(batch({ expectedOffset: '5', offset: '5', watermark: 200, expectedVersion: 1, rows: [row('decisions', 1)] })).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(err).toBeInstanceOf(FencedError)
      expect((err as Error).message).toContain('at commit 2')
      const after = await s.load(0, [], Infinity)
      expect(after).toMatchObject({ version: 2, watermark: 100, appliedOffset: '5' })
      expect(await s.peekRows(0, 10)).toEqual([])
      // A commit that gives no count is fenced on the offset alone, and still counts.
      await s.commit(batch({ expectedOffset: '5', offset: '6' }))
      expect((await s.load(0, [], 0)).version).toBe(3)
    })

    it('keeps partitions apart', async () => {
      await s.commit(
        batch({
          partition: 1,
          offset: '7',
          watermark: 70,
          customers: new Map([['c1', record(1)]]),
          timersSet: [{ member: 't', at: 1 }],
          webhooks: [pending('d1', 1)],
          alerts: [alert('a1')],
          rows: [row('r', 1)],
        }),
      )
      expect(await s.load(2, ['c1'], Infinity)).toEqual({ appliedOffset: null, version: 0, watermark: -Infinity, customers: new Map(), timers: [] })
      expect(values(await s.peekRows(2, 10))).toEqual([])
      expect(values(await s.peekAlerts(2, 10))).toEqual([])
      expect(await s.dueWebhooks(2, Infinity, 10)).toEqual([])
      // Each partition fences on its own offset.
      await s.commit(batch({ partition: 2, expectedOffset: null, offset: '3' }))
      await expect(s.commit(batch({ partition: 1, expectedOffset: '3', offset: '8' }))).rejects.toBeInstanceOf(FencedError)
      // Finishing a webhook in the wrong partition does nothing.
      await s.finishWebhook(2, 'd1', row('deliveries', 1))
      expect(values(await s.peekRows(2, 10))).toEqual([])
      expect((await s.dueWebhooks(1, Infinity, 10)).map((w) => w.decision.id)).toEqual(['d1'])
      expect((await s.load(1, ['c1'], Infinity)).appliedOffset).toBe('7')
    })

    it('hands out outbox rows, alerts and dead letters in commit order, and acks exactly the ids given', async () => {
      await s.commit(batch({ rows: [row('a', 1), row('b', 2)], alerts: [alert('x1')], deadLetters: [late('q1')] }))
      await s.commit(batch({ expectedOffset: '1', offset: '2', rows: [row('a', 3)], alerts: [alert('x2'), alert('x3')], deadLetters: [late('q2')] }))

      expect(await s.peekRows(0, 0)).toEqual([])
      const taken = await s.peekRows(0, 2)
      expect(values(taken)).toEqual([row('a', 1), row('b', 2)])
      expect(await s.peekRows(0, 2)).toEqual(taken) // peeking takes nothing, and the ids stay
      expect(new Set(ids(await s.peekRows(0, 10))).size).toBe(3)
      await s.ackRows(0, [])
      await s.ackRows(0, ids(taken))
      expect(values(await s.peekRows(0, 10))).toEqual([row('a', 3)])
      await s.ackRows(0, ids(taken)) // again: nothing more goes
      expect(values(await s.peekRows(0, 10))).toEqual([row('a', 3)])
      await s.ackRows(0, ids(await s.peekRows(0, 10)))
      expect(await s.peekRows(0, 10)).toEqual([])

      expect(values(await s.peekAlerts(0, 10)).map((a) => a.id)).toEqual(['x1', 'x2', 'x3'])
      // Not only from the front: the middle one alone.
      await s.ackAlerts(0, [(await s.peekAlerts(0, 10))[1].id])
      expect(values(await s.peekAlerts(0, 10))).toEqual([alert('x1'), alert('x3')])
      await s.ackAlerts(0, ids(await s.peekAlerts(0, 10)))
      expect(await s.peekAlerts(0, 10)).toEqual([])

      const dead = await s.peekDeadLetters(0, 10)
      expect(values(dead)).toEqual([late('q1'), late('q2')])
      await s.ackDeadLetters(0, ids(dead).slice(0, 1))
      expect(values(await s.peekDeadLetters(0, 10))).toEqual([late('q2')])
      await s.ackDeadLetters(0, ids(dead))
      expect(await s.peekDeadLetters(0, 10)).toEqual([])
    })

    it('acks exactly the rows it took, though another owner drained them too and committed more', async () => {
      await s.commit(batch({ rows: [row('a', 1), row('a', 2)] }))
      const mine = await s.peekRows(0, 10)
      // During a rebalance the new owner drains the same rows and commits more.
      const theirs = await s.peekRows(0, 10)
      await s.ackRows(0, ids(theirs))
      await s.commit(batch({ expectedOffset: '1', offset: '2', rows: [row('b', 3), row('b', 4)] }))
      await s.ackRows(0, ids(mine))
      expect(values(await s.peekRows(0, 10))).toEqual([row('b', 3), row('b', 4)])
    })

    it('acks exactly the alerts and dead letters it took, though another owner drained them too and committed more', async () => {
      await s.commit(batch({ alerts: [alert('x1')], deadLetters: [late('q1')] }))
      const mine = { alerts: await s.peekAlerts(0, 10), dead: await s.peekDeadLetters(0, 10) }
      await s.ackAlerts(0, ids(await s.peekAlerts(0, 10)))
      await s.ackDeadLetters(0, ids(await s.peekDeadLetters(0, 10)))
      await s.commit(batch({ expectedOffset: '1', offset: '2', alerts: [alert('x2')], deadLetters: [late('q2')] }))
      await s.ackAlerts(0, ids(mine.alerts))
      await s.ackDeadLetters(0, ids(mine.dead))
      expect(values(await s.peekAlerts(0, 10))).toEqual([alert('x2')])
      expect(values(await s.peekDeadLetters(0, 10))).toEqual([late('q2')])
    })

    it('keeps a batch\'s late dead letters in the outbox, atomically with it, until they are acknowledged', async () => {
      await s.commit(batch({ rows: [row('dead_letters', 1)], deadLetters: [late('q1'), late('q2')] }))
      // A fenced commit writes none.
      await expect(s.commit(batch({ expectedOffset: '9', offset: '10', deadLetters: [late('q3')] }))).rejects.toBeInstanceOf(FencedError)
      // Later batches, and other partitions' acks, leave them alone.
      await s.commit(batch({ expectedOffset: '1', offset: '2', customers: new Map([['c1', record(1)]]) }))
      await s.ackDeadLetters(1, ids(await s.peekDeadLetters(0, 10)))
      expect(values(await s.peekDeadLetters(0, 10))).toEqual([late('q1'), late('q2')])
      expect(values(await s.peekDeadLetters(0, 1))).toEqual([late('q1')])
      expect(await s.peekDeadLetters(1, 10)).toEqual([])
      await s.ackDeadLetters(0, ids(await s.peekDeadLetters(0, 10)))
      expect(await s.peekDeadLetters(0, 10)).toEqual([])
    })

    it('hands out webhooks when due, oldest first, ties by id, at most max', async () => {
      await s.commit(batch({ webhooks: [pending('d3', 300), pending('d2', 100), pending('d1', 100), pending('d4', 400)] }))
      expect(await s.dueWebhooks(0, 99, 10)).toEqual([])
      expect(await s.dueWebhooks(0, 300, 10)).toEqual([pending('d1', 100), pending('d2', 100), pending('d3', 300)])
      expect((await s.dueWebhooks(0, 300, 2)).map((w) => w.decision.id)).toEqual(['d1', 'd2'])
      expect(await s.dueWebhooks(0, 300, 0)).toEqual([])
      // A later commit of the same decision replaces it.
      await s.commit(batch({ expectedOffset: '1', offset: '2', webhooks: [pending('d4', 50, 1)] }))
      expect((await s.dueWebhooks(0, 100, 10)).map((w) => w.decision.id)).toEqual(['d4', 'd1', 'd2'])
    })

    it('reschedules a pending webhook on retry, and ignores a retry of a finished one', async () => {
      await s.commit(batch({ webhooks: [pending('d1', 100), pending('d2', 100)] }))
      await s.retryWebhook(0, pending('d1', 500, 1))
      expect((await s.dueWebhooks(0, 499, 10)).map((w) => w.decision.id)).toEqual(['d2'])
      expect(await s.dueWebhooks(0, 500, 10)).toEqual([pending('d2', 100), pending('d1', 500, 1)])

      await s.finishWebhook(0, 'd2', row('deliveries', 2))
      await s.retryWebhook(0, pending('d2', 600, 1))
      await s.retryWebhook(0, pending('never', 600, 1))
      expect(await s.dueWebhooks(0, Infinity, 10)).toEqual([pending('d1', 500, 1)])
    })

    it('sets due webhooks of a channel aside and moves them back oldest first, with their due time, attempts and expiry', async () => {
      await s.commit(batch({ webhooks: [pending('d1', 100), pending('d2', 200, 3), pending('d3', 300), pending('d4', 400)] }))
      await s.parkWebhooks(0, 'sms', ['d2', 'd1', 'gone'])
      await s.parkWebhooks(0, 'push', ['d3'])
      expect((await s.dueWebhooks(0, Infinity, 10)).map((w) => w.decision.id)).toEqual(['d4'])
      let backlog = await s.outboxBacklog(0, 350)
      expect(backlog.parked.sms).toEqual({ count: 2, oldestDueAt: 100 })
      expect(backlog.parked.push).toEqual({ count: 1, oldestDueAt: 300 })
      expect(backlog.parked.call).toEqual({ count: 0, oldestDueAt: null })
      expect([backlog.webhooksDue, backlog.webhooksScheduled]).toEqual([0, 1])

      // A set-aside webhook finished meanwhile is dropped when moved back.
      await s.finishWebhook(0, 'd3', row('deliveries', 3))
      expect(await s.unparkWebhooks(0, 'push', 10)).toEqual({ moved: 0, parked: 0 })
      expect(await s.unparkWebhooks(0, 'sms', 1)).toEqual({ moved: 1, parked: 1 })
      expect(await s.dueWebhooks(0, Infinity, 10)).toEqual([pending('d1', 100), pending('d4', 400)])
      expect(await s.unparkWebhooks(0, 'sms', 10)).toEqual({ moved: 1, parked: 0 })
      expect(await s.dueWebhooks(0, Infinity, 10)).toEqual([pending('d1', 100), pending('d2', 200, 3), pending('d4', 400)])
      backlog = await s.outboxBacklog(0, 350)
      expect(backlog.parked.sms).toEqual({ count: 0, oldestDueAt: null })
      expect([backlog.webhooksDue, backlog.oldestDueAt, backlog.webhooksScheduled]).toEqual([2, 100, 1])
    })

    it('puts a finished webhook back with its id once, and leaves a pending one alone', async () => {
      await s.commit(batch({ webhooks: [pending('d1', 100)] }))
      await s.finishWebhook(0, 'd1', row('deliveries', 1))
      expect(await s.requeueWebhook(0, pending('d1', 900))).toBe(true)
      expect(await s.requeueWebhook(0, pending('d1', 50, 7))).toBe(false)
      expect(await s.dueWebhooks(0, Infinity, 10)).toEqual([pending('d1', 900)])
    })

    it('counts the outbox backlog by table', async () => {
      await s.commit(batch({ rows: [row('a', 1), row('b', 2)], alerts: [alert('x1')], deadLetters: [late('q1')] }))
      const backlog = await s.outboxBacklog(0, 0)
      expect([backlog.rows, backlog.alerts, backlog.deadLetters]).toEqual([2, 1, 1])
    })

    it('finishes a webhook once: removed, and its delivery row appended exactly once', async () => {
      await s.commit(batch({ webhooks: [pending('d1', 100), pending('d2', 100)], rows: [row('decisions', 0)] }))
      const delivery: OutboxRow = { table: 'webhook_deliveries', row: { id: 'd1', status: 'delivered', attempts: 1 } }
      await s.finishWebhook(0, 'd1', delivery)
      await s.finishWebhook(0, 'd1', { ...delivery, row: { ...delivery.row, status: 'again' } })
      await s.finishWebhook(0, 'unknown', delivery)
      expect(await s.dueWebhooks(0, Infinity, 10)).toEqual([pending('d2', 100)])
      expect(values(await s.peekRows(0, 10))).toEqual([row('decisions', 0), delivery])
    })

    const cancelRow = (id: string, reason: string): OutboxRow => ({
      table: 'deliveries',
      row: { decisionId: id, status: 'cancelled', attempts: 0, decidedAt: '', cancelReason: reason, cancelledBy: 'e9', error: null },
    })
    /** The row as the store records it: attempts and decidedAt from the pending webhook. */
    const cancelledAs = (r: OutboxRow, attempts: number): OutboxRow => ({ table: r.table, row: { ...r.row, attempts, decidedAt: '2024-01-01T00:00:00.000Z' } })

    it('cancels a waiting webhook in the commit: removed, its cancelled row appended, its id returned; others are left alone', async () => {
      await s.commit(batch({ webhooks: [pending('d1', 100), pending('d2', 100)] }))
      await s.retryWebhook(0, pending('d1', 500, 2))
      const goal = cancelRow('d1', 'goal_reached')
      const outcome = await s.commit(
        batch({ expectedOffset: '1', offset: '2', rows: [row('decisions', 1)], cancellations: [{ decisionId: 'd1', row: goal }, { decisionId: 'never', row: cancelRow('never', 'risk_alert') }] }),
      )
      expect(outcome.cancelled).toEqual(['d1'])
      expect(await s.dueWebhooks(0, Infinity, 10)).toEqual([pending('d2', 100)])
      expect(values(await s.peekRows(0, 10))).toEqual([row('decisions', 1), cancelledAs(goal, 2)])
      // Cancelled once: a second cancellation and a late finish write nothing.
      expect((await s.commit(batch({ expectedOffset: '2', offset: '3', cancellations: [{ decisionId: 'd1', row: goal }] }))).cancelled).toEqual([])
      await s.finishWebhook(0, 'd1', row('deliveries', 9))
      expect(values(await s.peekRows(0, 10))).toHaveLength(2)
      // A commit with no cancellations cancels nothing.
      expect((await s.commit(batch({ expectedOffset: '3', offset: '4' }))).cancelled).toEqual([])
    })

    it('cancels a webhook and adds it in one commit when both come together: it never becomes due', async () => {
      const outcome = await s.commit(batch({ webhooks: [pending('d1', 100)], cancellations: [{ decisionId: 'd1', row: cancelRow('d1', 'consent_withdrawn') }] }))
      expect(outcome.cancelled).toEqual(['d1'])
      expect(await s.dueWebhooks(0, Infinity, 10)).toEqual([])
    })

    it('claims due webhooks still pending, and not one cancelled before the claim', async () => {
      await s.commit(batch({ webhooks: [pending('d1', 100), pending('d2', 100)] }))
      await s.commit(batch({ expectedOffset: '1', offset: '2', cancellations: [{ decisionId: 'd2', row: cancelRow('d2', 'risk_alert') }] }))
      expect(await s.claimWebhooks!(0, ['d1', 'd2', 'never'])).toEqual(['d1'])
    })

    it('lets an attempt in flight decide: delivered wins over a cancellation that came while it was sent', async () => {
      await s.commit(batch({ webhooks: [pending('d1', 100)] }))
      expect(await s.claimWebhooks!(0, ['d1'])).toEqual(['d1'])
      const outcome = await s.commit(batch({ expectedOffset: '1', offset: '2', cancellations: [{ decisionId: 'd1', row: cancelRow('d1', 'goal_reached') }] }))
      expect(outcome.cancelled).toEqual([])
      const delivered: OutboxRow = { table: 'deliveries', row: { decisionId: 'd1', status: 'delivered' } }
      await s.finishWebhook(0, 'd1', delivered)
      expect(values(await s.peekRows(0, 10))).toEqual([delivered])
      expect(await s.dueWebhooks(0, Infinity, 10)).toEqual([])
    })

    it('cancels an attempt in flight that did not deliver instead of retrying it, and keeps the first reason', async () => {
      await s.commit(batch({ webhooks: [pending('d1', 100), pending('d2', 100)] }))
      expect(await s.claimWebhooks!(0, ['d1', 'd2'])).toEqual(['d1', 'd2'])
      const goal = cancelRow('d1', 'goal_reached')
      await s.commit(batch({ expectedOffset: '1', offset: '2', cancellations: [{ decisionId: 'd1', row: goal }, { decisionId: 'd1', row: cancelRow('d1', 'risk_alert') }] }))
      await s.retryWebhook(0, pending('d1', 900, 1))
      // Without a cancellation, a retry releases the claim: the webhook waits again and can be cancelled at once.
      await s.retryWebhook(0, pending('d2', 900, 1))
      expect(await s.dueWebhooks(0, Infinity, 10)).toEqual([pending('d2', 900, 1)])
      expect(values(await s.peekRows(0, 10))).toEqual([cancelledAs(goal, 1)])
      expect((await s.commit(batch({ expectedOffset: '2', offset: '3', cancellations: [{ decisionId: 'd2', row: cancelRow('d2', 'risk_alert') }] }))).cancelled).toEqual(['d2'])
    })

    it('sends again a webhook whose sender stopped mid-attempt (it may have delivered), the cancellation that came meanwhile waiting for the new attempt', async () => {
      await s.commit(batch({ webhooks: [pending('d1', 100), pending('d2', 100)] }))
      await s.claimWebhooks!(0, ['d1', 'd2'])
      const risk = cancelRow('d1', 'risk_alert')
      await s.commit(batch({ expectedOffset: '1', offset: '2', cancellations: [{ decisionId: 'd1', row: risk }, { decisionId: 'd2', row: cancelRow('d2', 'risk_alert') }] }))
      // A new dispatcher claims both again; the cancellations stay with the claims.
      expect(await s.claimWebhooks!(0, ['d1', 'd2'])).toEqual(['d1', 'd2'])
      const delivered: OutboxRow = { table: 'deliveries', row: { decisionId: 'd2', status: 'delivered' } }
      await s.finishWebhook(0, 'd2', delivered)
      await s.retryWebhook(0, pending('d1', 900, 1))
      expect(await s.dueWebhooks(0, Infinity, 10)).toEqual([])
      expect(values(await s.peekRows(0, 10))).toEqual([delivered, cancelledAs(risk, 1)])
    })

    it('round-trips records, rows, alerts and webhooks exactly', async () => {
      const tricky = {
        emptyArray: [],
        emptyObject: {},
        nested: { a: [1, [2, [3, { b: null }]]], 'key with spaces': true },
        unicode: '支付宝 ✓ 🎉 café \u0000 "quoted" \\ back',
        numbers: [0, -1, 1.5, 1e-7, 2 ** 53 - 1, -(2 ** 31), 1_700_000_000_123],
        big: 123456789012345.67,
        empties: ['', [], {}],
      }
      const rec = record(1, tricky)
      rec.seen = []
      rec.policy = { lastContact: { activation_reminder: 1_700_000_000_000 }, contacts: [], riskHoldFrom: 1, riskHoldUntil: 2 }
      const r: OutboxRow = { table: 'decisions', row: tricky }
      const w = pending('d_üñí', 100)
      w.decision.reason = tricky
      const a = alert('a_1')
      a.evidence = { eventIds: ['e1'], ...tricky }
      await s.commit(batch({ customers: new Map([['c_ü', rec]]), rows: [r], alerts: [a], webhooks: [w] }))

      expect((await s.load(0, ['c_ü'], 0)).customers.get('c_ü')).toStrictEqual(rec)
      expect(values(await s.peekRows(0, 1))).toStrictEqual([r])
      expect(values(await s.peekAlerts(0, 1))).toStrictEqual([a])
      expect(await s.dueWebhooks(0, 100, 1)).toStrictEqual([w])
    })

    it('gives each load its own copies of the records', async () => {
      await s.commit(batch({ customers: new Map([['c1', record(1)]]) }))
      const first = await s.load(0, ['c1'], 0)
      ;(first.customers.get('c1')!.ops as { counter: { n: number } }).counter.n = 999
      expect((await s.load(0, ['c1'], 0)).customers.get('c1')).toEqual(record(1))
    })
  })
}

// --- memory --------------------------------------------------------------------------------

describeStoreContract('MemoryStore', async () => {
  const store = new MemoryStore()
  return { store, dispose: () => store.close() }
})

// --- Redis ---------------------------------------------------------------------------------

/** Deletes every key matching `pattern`, on every master of a cluster. */
async function deleteKeys(client: Redis | Cluster, pattern: string) {
  const nodes = client instanceof Cluster ? client.nodes('master') : [client]
  for (const node of nodes) {
    let cursor = '0'
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
      cursor = next
      // One UNLINK per key: keys of different partitions live in different cluster slots.
      if (keys.length) await keys.reduce((p, k) => p.unlink(k), node.pipeline()).exec()
    } while (cursor !== '0')
  }
}

const freshPrefix = () => `cardpulse-test:${randomBytes(6).toString('hex')}`

function redisSuite(title: string, url: string) {
  describe(title, () => {
    let conn: RedisStore
    beforeAll(async () => {
      conn = await RedisStore.connect(url, { prefix: 'cardpulse-test', readyTimeoutMs: 5000 })
    })
    afterAll(async () => {
      await conn?.close()
    })

    const makeRedis = async (): Promise<StoreFixture> => {
      const store = new RedisStore(conn.redis, { prefix: freshPrefix() })
      return {
        store,
        dispose: async () => {
          await store.close()
          await deleteKeys(conn.redis, store.keys.pattern())
        },
      }
    }

    describeStoreContract('RedisStore', makeRedis)

    it('adopts an outbox an earlier version left in lists: nothing committed is lost in the upgrade', async () => {
      const { store, dispose } = await makeRedis()
      const s = store as RedisStore
      try {
        const k = s.keys.partition(0)
        const rows = [{ table: 'decisions', row: { id: 'old1' } }, { table: 'alerts', row: { id: 'old2' } }]
        const alerts = [{ id: 'a-old' }]
        // As the former commit script left them: JSON entries in lists, oldest first.
        await s.redis.rpush(k.formerRows, ...rows.map((r) => JSON.stringify(r)))
        await s.redis.rpush(k.formerAlerts, ...alerts.map((a) => JSON.stringify(a)))
        await s.load(0, [], 0)
        await s.commit(batch({ rows: [{ table: 'decisions', row: { id: 'new1' } }] }))
        expect(values(await s.peekRows(0, 100))).toEqual([...rows, { table: 'decisions', row: { id: 'new1' } }])
        expect(values(await s.peekAlerts(0, 100))).toEqual(alerts)
        expect(await s.redis.exists(k.formerRows, k.formerAlerts)).toBe(0)
        // A second process adopts nothing twice.
        await new RedisStore(s.redis, { prefix: s.keys.prefix }).load(0, [], 0)
        expect(await s.peekRows(0, 100)).toHaveLength(3)
      } finally {
        await dispose()
      }
    })

    it('keeps every key of a partition under its hash tag', async () => {
      const { store, dispose } = await makeRedis()
      try {
        const s = store as RedisStore
        await s.commit(
          batch({
            partition: 5,
            customers: new Map([['c1', record(1)]]),
            timersSet: [{ member: 't', at: 1 }],
            webhooks: [pending('d1', 1)],
            alerts: [alert('a1')],
            rows: [row('r', 1)],
          }),
        )
        const found: string[] = []
        const nodes = s.redis instanceof Cluster ? s.redis.nodes('master') : [s.redis]
        for (const node of nodes) found.push(...(await node.keys(s.keys.pattern())))
        const k = s.keys.partition(5)
        expect(found.sort()).toEqual([k.alerts, k.customers, k.meta, k.rows, k.timers, k.webhooksBody, k.webhooksDue].sort())
        for (const key of found) expect(key.startsWith(`${s.keys.prefix}:{${s.keys.prefix}:p5}:`)).toBe(true)
      } finally {
        await dispose()
      }
    })

    it('stores records compressed, smaller than their JSON, and reads plain JSON too', async () => {
      const { store, dispose } = await makeRedis()
      try {
        const s = store as RedisStore
        const rec = record(1, { list: [], map: {}, text: '中文' })
        await s.commit(batch({ customers: new Map([['c1', rec]]) }))
        const stored = await s.redis.hgetBuffer(s.keys.partition(0).customers, 'c1')
        expect(stored!.length).toBeLessThan(Buffer.byteLength(JSON.stringify(rec)))
        expect(decodeRecord(stored!)).toEqual(rec)
        await s.redis.hset(s.keys.partition(0).customers, 'c2', JSON.stringify(rec))
        expect((await s.load(0, ['c2'], 0)).customers.get('c2')).toEqual(rec)
      } finally {
        await dispose()
      }
    })

    it('commits a batch that cancels webhooks in one round trip, as one without', async () => {
      const { store, dispose } = await makeRedis()
      try {
        const s = store as RedisStore
        await s.commit(batch({ webhooks: [pending('d1', 100), pending('d2', 100)] }))
        const before = s.roundTrips
        const cancellations = ['d1', 'd2'].map((id) => ({ decisionId: id, row: { table: 'deliveries', row: { decisionId: id, status: 'cancelled' } } }))
        expect((await s.commit(batch({ expectedOffset: '1', offset: '2', customers: new Map([['c1', record(1)]]), cancellations }))).cancelled).toEqual(['d1', 'd2'])
        // The store's own count, which the socket-watching test below holds to the truth.
        expect(s.roundTrips).toEqual({ ...before, commit: before.commit + 1 })
      } finally {
        await dispose()
      }
    })

    // One server only: it watches the commands through MONITOR and the socket of one connection.
    if (url === REDIS_URL) it('loads 500 customers in one round trip of three commands', async () => {
      // A client of its own, so that its socket writes and the commands it sends are all ours.
      const client = (await RedisStore.connect(url, { prefix: 'unused', readyTimeoutMs: 5000 })).redis as Redis
      const monitor = await client.monitor()
      const prefix = freshPrefix()
      const store = new RedisStore(client, { prefix })
      try {
        const ids = Array.from({ length: 500 }, (_, i) => `c${i}`)
        await store.commit(batch({ customers: new Map(ids.map((id, i) => [id, record(i)])), timersSet: [{ member: 'c1|x', at: 1 }] }))
        await store.load(0, [], 0) // the first load of a partition also adopts a former outbox, once

        // The monitor feed lags behind: bracket the load between two markers it must see.
        const seen: string[][] = []
        monitor.on('monitor', (_time: string, args: string[]) => {
          if (args.some((a) => a.startsWith(prefix))) seen.push(args)
        })
        const marked = (marker: string) => {
          const sawIt = new Promise<void>((resolve) => monitor.on('monitor', (_t: string, args: string[]) => args.includes(marker) && resolve()))
          return client.exists(marker).then(() => sawIt)
        }
        await marked(`${prefix}:start`)
        const writes = vi.spyOn(client.stream, 'write')
        const counted = store.roundTrips
        const got = await store.load(0, [...ids, 'absent'], 10)
        const roundTrips = writes.mock.calls.length
        // The store's own count (what the benchmark reports) agrees with the socket.
        expect(store.roundTrips).toEqual({ ...counted, load: counted.load + roundTrips })
        writes.mockRestore()
        await marked(`${prefix}:end`)
        const during = seen.slice(seen.findIndex((args) => args.includes(`${prefix}:start`)) + 1, -1)

        expect(got.customers.size).toBe(500)
        expect(got.customers.get('c499')).toEqual(record(499))
        expect(got.timers).toEqual([{ member: 'c1|x', at: 1 }])
        expect(roundTrips).toBe(1)
        expect(during.map((args) => args[0].toLowerCase())).toEqual(['hmget', 'hmget', 'zrangebyscore'])
      } finally {
        monitor.disconnect()
        await deleteKeys(client, `${prefix}:*`)
        client.disconnect()
      }
    })

    it(
      'gives the same load() as the memory store for random commit sequences',
      async () => {
        const members = ['a|op:1', 'a|op:2', 'b|op:1', 'c|op:x', 'é|op:中']
        const ids = ['a', 'b', 'c', 'd']
        const commitArb = fc.record({
          partition: fc.integer({ min: 0, max: 1 }),
          watermark: fc.integer({ min: -1000, max: 1000 }),
          customers: fc.array(fc.tuple(fc.constantFrom(...ids), fc.jsonValue()), { maxLength: 4 }),
          timersSet: fc.array(fc.record({ member: fc.constantFrom(...members), at: fc.integer({ min: 0, max: 20 }) }), { maxLength: 5 }),
          timersRemoved: fc.array(fc.constantFrom(...members), { maxLength: 3 }),
        })
        await fc.assert(
          fc.asyncProperty(fc.array(commitArb, { minLength: 1, maxLength: 12 }), fc.array(fc.integer({ min: -1, max: 21 }), { minLength: 1, maxLength: 3 }), async (commits, bounds) => {
            const memory = new MemoryStore()
            const redis = new RedisStore(conn.redis, { prefix: freshPrefix() })
            try {
              const offsets = new Map<number, number>()
              for (const c of commits) {
                const n = offsets.get(c.partition) ?? 0
                offsets.set(c.partition, n + 1)
                const b = batch({
                  partition: c.partition,
                  expectedOffset: n ? String(n) : null,
                  offset: String(n + 1),
                  watermark: c.watermark,
                  customers: new Map(c.customers.map(([id, v]) => [id, record(0, { v })])),
                  timersSet: c.timersSet,
                  timersRemoved: c.timersRemoved,
                })
                await memory.commit(b)
                await redis.commit(b)
              }
              for (const p of [0, 1]) {
                for (const upTo of [...bounds, Infinity]) {
                  expect(await redis.load(p, ids, upTo)).toEqual(await memory.load(p, ids, upTo))
                }
              }
            } finally {
              await deleteKeys(conn.redis, redis.keys.pattern())
            }
          }),
          { numRuns: 60 },
        )
      },
      60_000,
    )
  })
}

redisSuite(`RedisStore on ${REDIS_URL}`, REDIS_URL)
if (REDIS_CLUSTER_URL) redisSuite(`RedisStore on ${REDIS_CLUSTER_URL}`, REDIS_CLUSTER_URL)

describe('RedisStore.connect', () => {
  it('gives up on an unreachable server with one clear line', async () => {
    const started = Date.now()
    const err = await RedisStore.connect('redis://:secret@127.0.0.1:1', { prefix: 'x', readyTimeoutMs: 300 }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(RedisUnreachableError)
    expect((err as RedisUnreachableError).retriable).toBe(true)
    expect((err as RedisUnreachableError).oneLine).toBe('cannot reach Redis at redis://:***@127.0.0.1:1 (ECONNREFUSED): start Redis or set REDIS_URL')
    expect(Date.now() - started).toBeLessThan(2000)
  })
})
