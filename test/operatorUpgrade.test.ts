import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Operator } from '../operators/types.ts'
import { initialFacts } from '../operators/facts.ts'
import { initialProfile } from '../operators/profile.ts'
import { OperatorHost } from '../pipeline/operatorHost.ts'
import { PartitionProcessor } from '../pipeline/processor.ts'
import { atEventTime, initialPolicyState } from '../pipeline/policy.ts'
import { MemoryStore } from '../pipeline/store/memory.ts'
import { RedisStore } from '../pipeline/store/redis.ts'
import type { CustomerRecord, StateStore } from '../pipeline/store/types.ts'
import { InputEvent } from '../schemas/events.ts'
import { app, defaultCatalogForTests } from './helpers/harness.ts'

/**
 * A release renames an operator or changes the shape of its state, while Redis holds what the
 * previous release wrote: state and pending timers under the old name, state of the old shape.
 * A tiny counting operator stands in for the real ones.
 */

const HOUR = 3_600_000
const T0 = Date.parse('2026-10-01T02:00:00.000Z')
const iso = (ms: number) => new Date(ms).toISOString()
const catalog = defaultCatalogForTests()

interface Counter {
  n: number
  /** Due times of the timers fired on it. */
  fired?: number[]
}

/** Counts app events; `login` arms a timer an hour on, `app_uninstalled` cancels it. */
function counter(name: string, more: Partial<Operator<any, {}>> = {}): Operator<any, {}> {
  return {
    name,
    uses: 'activation_reminder',
    initial: () => ({ n: 0 }),
    parseParams: () => ({}),
    onEvent(state: Counter, event, at) {
      if (event.type !== 'app') return { state }
      const next = { ...state, n: state.n + 1 }
      if (event.name === 'login') return { state: next, effects: [{ kind: 'setTimer', key: 'ping', at: at + HOUR }] }
      if (event.name === 'app_uninstalled') return { state: next, effects: [{ kind: 'cancelTimer', key: 'ping' }] }
      return { state: next }
    },
    onTimer: (state: Counter, timer) => ({ state: { ...state, fired: [...(state.fired ?? []), timer.at] } }),
    ...more,
  }
}

const before = () => counter('old_counter')
const after = () => counter('counter', { formerNames: ['old_counter'] })

/** A processor on the store, as one release of the pipeline (a new one per release: a restart). */
function release(store: StateStore, operator: Operator<any, any>, offsets: { n: number }) {
  const p = new PartitionProcessor({
    partition: 0,
    store,
    catalog: () => catalog,
    watermarks: { maxDisorder: 0 },
    allowedLateness: 0,
    decisionTime: atEventTime,
    outbox: { webhooks: false, alerts: false, rows: false },
    operators: [operator],
  })
  return {
    send: (...events: Record<string, unknown>[]) =>
      p.process(
        events.map((e) => {
          const event = InputEvent.parse(e)
          const offset = String(++offsets.n)
          return { offset, event, at: Date.parse(event.occurredAt), source: { topic: 't', partition: 0, offset } }
        }),
      ),
    advanceTo: (t: number) => p.advanceTo(t),
  }
}

async function stored(store: StateStore, customerId = 'c'): Promise<CustomerRecord | undefined> {
  return (await store.load(0, [customerId], 0)).customers.get(customerId)
}

async function pendingTimers(store: StateStore): Promise<string[]> {
  return (await store.load(0, [], T0 + 1000 * HOUR)).timers.map((t) => t.member)
}

function upgradeSuite(makeStore: () => Promise<{ store: StateStore; dispose: () => Promise<void> }>) {
  /** The previous release took a login at T0: state and a timer at T0+1h under the old name. */
  async function afterPreviousRelease() {
    const fx = await makeStore()
    const offsets = { n: 0 }
    const old = release(fx.store, before(), offsets)
    await old.send(app('c', 'login', iso(T0)))
    await old.advanceTo(T0)
    expect((await stored(fx.store))?.ops).toEqual({ old_counter: { n: 1 } })
    expect(await pendingTimers(fx.store)).toEqual(['c|old_counter:ping'])
    return { ...fx, next: release(fx.store, after(), offsets) }
  }

  it('moves state stored under a former name, and fires a timer pending under it on the operator', async () => {
    const { store, dispose, next } = await afterPreviousRelease()
    try {
      await next.advanceTo(T0 + 2 * HOUR)
      expect((await stored(store))?.ops).toEqual({ counter: { n: 1, fired: [T0 + HOUR] } })
      expect(await pendingTimers(store)).toEqual([])
    } finally {
      await dispose()
    }
  })

  it('fires a timer set again under the new name once, though its twin under the former name was pending', async () => {
    const { store, dispose, next } = await afterPreviousRelease()
    try {
      await next.send(app('c', 'login', iso(T0 + 10 * 60_000)))
      await next.advanceTo(T0 + 10 * 60_000)
      expect(await pendingTimers(store)).toEqual(['c|counter:ping'])
      await next.advanceTo(T0 + 5 * HOUR)
      expect((await stored(store))?.ops).toEqual({ counter: { n: 2, fired: [T0 + 70 * 60_000] } })
    } finally {
      await dispose()
    }
  })

  it('fires it once also when the twin was already due in the same batch', async () => {
    const { store, dispose, next } = await afterPreviousRelease()
    try {
      // The batch reaches T0+3h: the twin (T0+1h) is among its due timers when the login re-arms.
      await next.send(app('c', 'login', iso(T0 + 10 * 60_000)), app('c', 'page_view', iso(T0 + 3 * HOUR)))
      await next.advanceTo(T0 + 5 * HOUR)
      expect((await stored(store))?.ops).toEqual({ counter: { n: 3, fired: [T0 + 70 * 60_000] } })
    } finally {
      await dispose()
    }
  })

  it('cancels a timer pending under a former name', async () => {
    const { store, dispose, next } = await afterPreviousRelease()
    try {
      await next.send(app('c', 'app_uninstalled', iso(T0 + 10 * 60_000)))
      await next.advanceTo(T0 + 5 * HOUR)
      expect((await stored(store))?.ops).toEqual({ counter: { n: 2 } })
      expect(await pendingTimers(store)).toEqual([])
    } finally {
      await dispose()
    }
  })

  it('migrates state of an older version once, and records the version only above 1', async () => {
    const { store, dispose } = await makeStore()
    try {
      const offsets = { n: 0 }
      const v1 = release(store, counter('counter'), offsets)
      await v1.send(app('c', 'page_view', iso(T0)))
      await v1.advanceTo(T0)
      expect(await stored(store)).not.toHaveProperty('opv')
      const seen: unknown[] = []
      const migrations: [unknown, number][] = []
      const v2 = () =>
        counter('counter', {
          version: 2,
          migrate: (state: Counter, from) => (migrations.push([state, from]), { count: state.n }),
          onEvent: (state: { count: number }) => (seen.push(state), { state: { count: state.count + 1 } }),
        })
      const r2 = release(store, v2(), offsets)
      await r2.send(app('c', 'page_view', iso(T0 + HOUR)))
      await r2.advanceTo(T0 + HOUR)
      expect(migrations).toEqual([[{ n: 1 }, 1]])
      expect(seen).toEqual([{ count: 1 }])
      const rec = await stored(store)
      expect(rec?.ops).toEqual({ counter: { count: 2 } })
      expect(rec?.opv).toEqual({ counter: 2 })
      // Another restart on the same release: already at version 2, nothing to migrate.
      const r3 = release(store, v2(), offsets)
      await r3.send(app('c', 'page_view', iso(T0 + 2 * HOUR)))
      await r3.advanceTo(T0 + 2 * HOUR)
      expect(migrations).toHaveLength(1)
      expect(seen).toEqual([{ count: 1 }, { count: 2 }])
    } finally {
      await dispose()
    }
  })
}

describe('operators renamed or versioned — memory store', () => {
  upgradeSuite(async () => ({ store: new MemoryStore(), dispose: async () => {} }))
})

describe('operators renamed or versioned — Redis store', () => {
  let conn: RedisStore
  beforeAll(async () => {
    conn = await RedisStore.connect(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { prefix: 'cardpulse-test', readyTimeoutMs: 5000 })
  })
  afterAll(async () => {
    await conn?.close()
  })
  upgradeSuite(async () => {
    const store = new RedisStore(conn.redis, { prefix: `cardpulse-test:${randomBytes(6).toString('hex')}` })
    return {
      store,
      dispose: async () => {
        await store.close()
        const keys = await conn.redis.keys(store.keys.pattern())
        if (keys.length) await conn.redis.unlink(...keys)
      },
    }
  })
})

describe('OperatorHost.adopt', () => {
  const record = (ops: Record<string, unknown>, opv?: Record<string, number>): CustomerRecord => ({
    v: 1,
    seen: [],
    profile: initialProfile(),
    facts: initialFacts(),
    policy: initialPolicyState(),
    ops,
    ...(opv ? { opv } : {}),
  })

  it('moves state from a former name, keeps the current one where both exist, and leaves others alone', () => {
    const host = new OperatorHost([after()], () => catalog)
    const moved = record({ old_counter: { n: 4 }, unrelated: { x: 1 } })
    host.adopt(moved)
    expect(moved.ops).toEqual({ counter: { n: 4 }, unrelated: { x: 1 } })
    const both = record({ old_counter: { n: 4 }, counter: { n: 9 } })
    host.adopt(both)
    expect(both.ops).toEqual({ counter: { n: 9 } })
    expect(host.indexOf('old_counter')).toBe(0)
    expect(host.indexOf('counter')).toBe(0)
  })

  it('migrates from the version stored under a former name, and drops a state migrated to empty', () => {
    const migrate = (state: any, from: number) => (from === 2 ? {} : { count: state.n })
    const host = new OperatorHost([counter('counter', { formerNames: ['old_counter'], version: 3, migrate })], () => catalog)
    const fromOld = record({ old_counter: { n: 4 } })
    host.adopt(fromOld)
    expect(fromOld).toMatchObject({ ops: { counter: { count: 4 } }, opv: { counter: 3 } })
    const emptied = record({ old_counter: { n: 4 } }, { old_counter: 2 })
    host.adopt(emptied)
    expect(emptied.ops).toEqual({})
    expect(emptied).not.toHaveProperty('opv')
  })

  it('records the writer\'s version: a state rewritten by a version-1 release loses a newer version mark', () => {
    const host = new OperatorHost([counter('counter')], () => catalog)
    const rec = record({ counter: { count: 4 } }, { counter: 2 })
    host.adopt(rec)
    expect(rec.opv).toEqual({ counter: 2 }) // cannot migrate down: left as stored
    host.keepState(0, rec, { n: 5 })
    expect(rec).not.toHaveProperty('opv')
  })

  it('refuses one name for two operators, and a version above 1 without migrate', () => {
    expect(() => new OperatorHost([after(), counter('old_counter')], () => catalog)).toThrow(/old_counter is used twice/)
    expect(() => new OperatorHost([counter('counter', { version: 2 })], () => catalog)).toThrow(/no migrate/)
  })
})
