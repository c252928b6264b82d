import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { PipelineHarness, defaultCatalogForTests, lifecycle, transaction, app } from './helpers/harness.ts'
import { OPERATORS } from '../operators/index.ts'
import type { Operator } from '../operators/types.ts'
import type { Decision } from '../schemas/decision.ts'

/**
 * The live pipeline reads three topics per customer (transactions, app events, lifecycle); each
 * arrives in its own order, but the three interleave with up to the allowed lateness of disorder:
 * a purchase made after an activation may arrive before it, a `bound` after a later login, and so
 * on. Whatever the interleaving, the decisions must be those of the same events sorted by time.
 */

const SECOND = 1000
const MINUTE = 60 * SECOND
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR
const T0 = Date.parse('2026-10-01T02:00:00.000Z')
/** Cross-topic disorder, and the allowed lateness of both runs. */
const L = Number(process.env.ORDER_L ?? 2 * DAY)

const EXCLUDE = (process.env.ORDER_EXCLUDE ?? '').split(',')
const OPS: readonly Operator<any, any>[] = OPERATORS.filter((o) => !EXCLUDE.includes(o.name))

type Ev = Record<string, unknown>
const timeOf = (e: Ev) => Date.parse(String(e.occurredAt))
const iso = (ms: number) => new Date(ms).toISOString()
const byId = (ds: Decision[]) => [...ds].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))

/** Durations on every scale, so that events fall both within and far beyond the lateness of each other. */
const span = (max: number) =>
  fc.oneof(
    fc.integer({ min: 0, max: Math.min(max, 2 * MINUTE) }),
    fc.integer({ min: 0, max: Math.min(max, 6 * HOUR) }),
    fc.integer({ min: 0, max }),
  )
const signedSpan = (max: number) => fc.tuple(fc.boolean(), span(max)).map(([neg, d]) => (neg ? -d : d))

const BIRTHDATES = ['1990-10-05', '1985-10-09', '1992-02-29', '2000-10-20', '1979-12-31', '1995-11-02']
const ZONES = ['Asia/Shanghai', 'America/New_York', 'Europe/London']

const purchaseArb = fc.record({
  /** What the purchase time is measured from: around the activation, the nudge and incentive due times, or the approval. */
  anchor: fc.constantFrom('approved', 'activated', 'activated', 'bindDue', 'swipeDue'),
  delta: signedSpan(4 * DAY),
  card: fc.constantFrom('main', 'main', 'main', 'second', 'old'),
  amount: fc.constantFrom(5, 12.5, 88, 260, 1000, 5000, 7200),
  status: fc.constantFrom('approved', 'approved', 'approved', 'declined'),
  country: fc.constantFrom('CN', 'CN', 'CN', 'JP', 'US'),
  /** Shanghai, Beijing (over 1000 km away), or no coordinates. */
  place: fc.constantFrom('none', 'none', 'sha', 'pek'),
  mcc: fc.constantFrom('5411', '5411', '5812', '7995'),
})

/** Several transactions seconds apart (velocity, card testing, cash-out, night bursts). */
const burstArb = fc.record({
  anchor: fc.constantFrom('approved', 'activated', 'swipeDue'),
  delta: signedSpan(3 * DAY),
  n: fc.integer({ min: 3, max: 7 }),
  gap: fc.integer({ min: 1, max: 90 }).map((s) => s * SECOND),
  amount: fc.constantFrom(5, 2000, 150),
  status: fc.constantFrom('approved', 'declined'),
})

/** A device registered in the app, and a large purchase shortly after (or before) it. */
const deviceArb = fc.record({ anchor: fc.constantFrom('approved', 'activated'), delta: signedSpan(3 * DAY), purchaseAfter: signedSpan(2 * HOUR) })

const customerArb = fc.record({
  approvedAt: fc.integer({ min: 0, max: 5 * DAY }),
  creditLimit: fc.option(fc.constantFrom(1000, 3000, 20000), { nil: undefined }),
  birthDate: fc.option(fc.constantFrom(...BIRTHDATES), { nil: undefined }),
  timezone: fc.option(fc.constantFrom(...ZONES), { nil: undefined }),
  /** A later profile correction carried by the issued event. */
  birthDateChange: fc.option(fc.constantFrom(...BIRTHDATES), { freq: 4, nil: undefined }),
  toIssue: span(3 * DAY),
  /** Absent: never activated. */
  toActivate: fc.option(span(5 * DAY), { freq: 6, nil: undefined }),
  toBind: fc.option(span(6 * DAY), { nil: undefined }),
  /** A second card, issued and activated from the first one's activation. */
  second: fc.option(fc.record({ after: span(10 * DAY), toActivate: span(2 * DAY), activated: fc.boolean() }), { freq: 3, nil: undefined }),
  expiring: fc.option(fc.record({ after: span(20 * DAY), dated: fc.boolean() }), { freq: 3, nil: undefined }),
  closedAfter: fc.option(span(15 * DAY), { freq: 4, nil: undefined }),
  purchases: fc.array(purchaseArb, { maxLength: 8 }),
  burst: fc.option(burstArb, { freq: 3, nil: undefined }),
  device: fc.option(deviceArb, { freq: 3, nil: undefined }),
  logins: fc.array(fc.record({ anchor: fc.constantFrom('approved', 'activated'), delta: signedSpan(8 * DAY) }), { maxLength: 4 }),
})
type CustomerSpec = typeof customerArb extends fc.Arbitrary<infer T> ? T : never

/** One customer's events in event-time order, as sorted input would have them. */
function customerEvents(id: string, c: CustomerSpec): Ev[] {
  const evs: Ev[] = []
  let n = 0
  const eid = (kind: string) => `${id}-${kind}-${++n}`
  const main = `tok_${id}_1`
  const second = `tok_${id}_2`
  const approvedAt = T0 + c.approvedAt
  const profile = { ...(c.birthDate ? { birthDate: c.birthDate } : {}), ...(c.timezone ? { timezone: c.timezone } : {}) }
  evs.push(lifecycle(id, 'approved', iso(approvedAt), { eventId: eid('lc'), cardId: main, ...(c.creditLimit ? { creditLimit: c.creditLimit } : {}), ...(Object.keys(profile).length ? { profile } : {}) }))
  const issuedAt = approvedAt + 1 + c.toIssue
  evs.push(lifecycle(id, 'issued', iso(issuedAt), { eventId: eid('lc'), cardId: main, ...(c.birthDateChange ? { profile: { birthDate: c.birthDateChange } } : {}) }))
  let last = issuedAt
  const activatedAt = c.toActivate === undefined ? undefined : issuedAt + 1 + c.toActivate
  if (activatedAt !== undefined) {
    evs.push(lifecycle(id, 'activated', iso(activatedAt), { eventId: eid('lc'), cardId: main }))
    last = activatedAt
    if (c.toBind !== undefined) evs.push(lifecycle(id, 'bound', iso((last = activatedAt + 1 + c.toBind)), { eventId: eid('lc'), cardId: main }))
    if (c.second) {
      const issued2 = activatedAt + 1 + c.second.after
      evs.push(lifecycle(id, 'issued', iso(issued2), { eventId: eid('lc'), cardId: second }))
      if (c.second.activated) evs.push(lifecycle(id, 'activated', iso(issued2 + 1 + c.second.toActivate), { eventId: eid('lc'), cardId: second }))
    }
  }
  if (c.expiring) {
    const extra = c.expiring.dated ? { attributes: { expiresOn: '2027-03-31' } } : {}
    evs.push(lifecycle(id, 'expiring', iso(last + 1 + c.expiring.after), { eventId: eid('lc'), cardId: main, ...extra }))
  }
  if (c.closedAfter !== undefined) evs.push(lifecycle(id, 'closed', iso(last + 1 + c.closedAfter), { eventId: eid('lc'), cardId: main }))

  const anchors: Record<string, number> = {
    approved: approvedAt,
    activated: activatedAt ?? issuedAt,
    bindDue: (activatedAt ?? issuedAt) + 3 * DAY,
    swipeDue: (activatedAt ?? issuedAt) + 7 * DAY,
  }
  const PLACES: Record<string, Record<string, number>> = { none: {}, sha: { lat: 31.23, lon: 121.47 }, pek: { lat: 39.9, lon: 116.4 } }
  const buy = (at: number, amount: number, extra: Record<string, unknown> = {}) =>
    evs.push(transaction(id, iso(at), amount, { eventId: eid('tx'), cardId: main, ...extra }))
  for (const p of c.purchases) {
    const cardId = p.card === 'main' ? main : p.card === 'second' ? second : `tok_${id}_old`
    buy(anchors[p.anchor] + p.delta, p.amount, {
      cardId,
      status: p.status,
      merchant: { id: `m_${p.country}`, mcc: p.mcc, country: p.country, ...PLACES[p.place] },
    })
  }
  if (c.burst) {
    const b = c.burst
    for (let i = 0; i < b.n; i++) buy(anchors[b.anchor] + b.delta + i * b.gap, b.amount, { status: i % 3 === 2 ? 'approved' : b.status, merchant: { id: 'm_burst', mcc: '5999', country: 'CN' } })
  }
  if (c.device) {
    const at = anchors[c.device.anchor] + c.device.delta
    evs.push(app(id, 'device_registered', iso(at), { eventId: eid('app'), deviceId: `dev_${id}_new` }))
    buy(at + c.device.purchaseAfter, 6000, { deviceId: `dev_${id}_new` })
  }
  for (const l of c.logins) evs.push(app(id, 'login', iso(anchors[l.anchor] + l.delta), { eventId: eid('app'), deviceId: `dev_${id}` }))
  // Stable: events of one time keep the order above (a card's stages in the order it lives them).
  return evs.sort((a, b) => timeOf(a) - timeOf(b))
}

const topicOf = (e: Ev) => String(e.type)

/**
 * An arrival order: each customer's topics keep their own order, and each event is read at its
 * event time plus a delay under L, never before an earlier event of its topic. Nothing is late:
 * whatever was read before an event occurred less than L after it.
 */
function arrivalOrder(sorted: Ev[], delays: number[]): Ev[] {
  const readAt = new Map<string, number>()
  return sorted
    .map((e, i) => {
      const key = `${e.customerId}/${topicOf(e)}`
      const t = Math.max(timeOf(e) + delays[i % delays.length], readAt.get(key) ?? -Infinity)
      readAt.set(key, t)
      return { e, t, i }
    })
    .sort((x, y) => x.t - y.t || x.i - y.i)
    .map((x) => x.e)
}

async function decisionsOf(events: Ev[], end: number) {
  const lowSev = process.env.ORDER_LOWSEV ? (c: any) => { for (const k of Object.keys(c.signals)) c.signals[k].severity = 'low' } : undefined
  const h = new PipelineHarness(defaultCatalogForTests(lowSev), { allowedLateness: L, operators: OPS })
  for (const e of events) await h.send(e)
  await h.advanceTo(end)
  return h
}

describe('topics interleaved within the allowed lateness', () => {
  it('give the same decisions as the same events sorted by time', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(customerArb, { minLength: 1, maxLength: 3 }),
        fc.array(fc.oneof(fc.constant(0), fc.constant(L - 1), fc.integer({ min: 0, max: L - 1 })), { minLength: 1, maxLength: 30 }),
        async (customers, delays) => {
          const sorted = customers.flatMap((c, i) => customerEvents(`c${i}`, c)).sort((a, b) => timeOf(a) - timeOf(b))
          const arrival = arrivalOrder(sorted, delays)
          const end = timeOf(sorted[sorted.length - 1]) + 40 * DAY
          const inOrder = await decisionsOf(sorted, end)
          const interleaved = await decisionsOf(arrival, end)
          expect(inOrder.deadLetters).toEqual([])
          expect(interleaved.deadLetters).toEqual([])
          if (process.env.ORDER_ALERTS) expect(byId(interleaved.alerts as any)).toEqual(byId(inOrder.alerts as any))
          expect(byId(interleaved.decisions)).toEqual(byId(inOrder.decisions))
        },
      ),
      { numRuns: Number(process.env.ORDER_RUNS ?? 150) },
    )
  })
})
