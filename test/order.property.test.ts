import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { PipelineHarness, defaultCatalogForTests, lifecycle, transaction, app } from './helpers/harness.ts'
import { nextBirthday } from '../operators/lifecycle/birthday.ts'

/**
 * The live pipeline reads three topics (transactions, app events, lifecycle). Each customer's
 * events arrive in order within a topic, but the topics interleave with up to the allowed lateness
 * of disorder: a purchase made two hours after an activation may arrive before it, a `bound`
 * after a later purchase, a profile change after a later login. Whatever the interleaving, the
 * decisions, alerts and conversions must be those of the same events sorted by time — for every
 * trigger and signal of the default catalogue, with profile corrections (time zone, home country,
 * credit limit) that may arrive after the transactions they precede, and offer clicks among the
 * app events.
 */

const SECOND = 1000
const MINUTE = 60 * SECOND
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR
const T0 = Date.parse('2026-10-01T02:00:00.000Z')
/** Cross-topic disorder, and the allowed lateness of both runs: shorter than every trigger delay (3 d, 7 d). */
const L = 2 * DAY

type Ev = Record<string, unknown>
const timeOf = (e: Ev) => Date.parse(String(e.occurredAt))
const iso = (ms: number) => new Date(ms).toISOString()
const byId = <T extends { id: string }>(ds: T[]) => [...ds].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
const byVersion = <T extends { decisionId: string; version: number }>(cs: T[]) =>
  [...cs].sort((a, b) => (a.decisionId < b.decisionId ? -1 : a.decisionId > b.decisionId ? 1 : a.version - b.version))

/** Durations on every scale, so that events fall both within and beyond the lateness of each other. */
const span = (max: number) =>
  fc.oneof(fc.integer({ min: 0, max: Math.min(max, 2 * MINUTE) }), fc.integer({ min: 0, max: Math.min(max, 6 * HOUR) }), fc.integer({ min: 0, max }))
const signedSpan = (max: number) => fc.tuple(fc.boolean(), span(max)).map(([neg, d]) => (neg ? -d : d))

// Birthdays in and around the simulated weeks; time zones on both sides of UTC.
const BIRTHDATES = ['1990-10-05', '1985-10-09', '1992-02-29', '2000-10-20', '1979-12-31', '1995-11-02']
const ZONES = ['Asia/Shanghai', 'America/New_York', 'Europe/London']

/** Times are measured from an anchor: the approval, the activation, or the nudge and incentive due times. */
const ANCHORS = ['approved', 'activated', 'activated', 'bindDue', 'swipeDue'] as const

const purchaseArb = fc.record({
  anchor: fc.constantFrom(...ANCHORS),
  delta: signedSpan(4 * DAY),
  // `old`: a card the pipeline never saw a lifecycle event of (bought on before the approval too).
  card: fc.constantFrom('main', 'main', 'main', 'second', 'old'),
  amount: fc.constantFrom(12.5, 88, 260, 5000, 7200),
  status: fc.constantFrom('approved', 'approved', 'approved', 'declined'),
  country: fc.constantFrom('CN', 'CN', 'CN', 'JP', 'US'),
})

const customerArb = fc.record({
  approvedAt: fc.integer({ min: 0, max: 5 * DAY }),
  profile: fc.record({ birthDate: fc.option(fc.constantFrom(...BIRTHDATES), { nil: undefined }), timezone: fc.option(fc.constantFrom(...ZONES), { nil: undefined }) }),
  /** A later correction: on the issued event, or on its own lifecycle event around the first birthday greeting. */
  change: fc.option(
    fc.record({
      birthDate: fc.option(fc.constantFrom(...BIRTHDATES), { nil: undefined }),
      timezone: fc.option(fc.constantFrom(...ZONES), { nil: undefined }),
      homeCountry: fc.option(fc.constantFrom('CN', 'JP'), { nil: undefined }),
      creditLimit: fc.option(fc.constantFrom(300, 20_000), { nil: undefined }),
      nearBirthday: fc.option(signedSpan(L), { nil: undefined }),
    }),
    { freq: 3, nil: undefined },
  ),
  toIssue: span(3 * DAY),
  /** Absent: never activated. */
  toActivate: fc.option(span(5 * DAY), { freq: 6, nil: undefined }),
  toBind: fc.option(span(6 * DAY), { nil: undefined }),
  /** A second card, issued (and maybe activated) after the first one's activation. */
  second: fc.option(fc.record({ after: span(10 * DAY), toActivate: span(2 * DAY), activated: fc.boolean() }), { freq: 3, nil: undefined }),
  expiring: fc.option(fc.record({ after: span(20 * DAY), dated: fc.boolean() }), { freq: 3, nil: undefined }),
  closedAfter: fc.option(span(15 * DAY), { freq: 4, nil: undefined }),
  purchases: fc.array(purchaseArb, { maxLength: 8 }),
  /** A few approved purchases seconds apart. */
  burst: fc.option(fc.record({ anchor: fc.constantFrom(...ANCHORS), delta: signedSpan(3 * DAY), n: fc.integer({ min: 2, max: 6 }), gap: span(90 * SECOND) }), { freq: 3, nil: undefined }),
  logins: fc.array(fc.record({ anchor: fc.constantFrom(...ANCHORS, 'birthday'), delta: signedSpan(8 * DAY), name: fc.constantFrom('login', 'login', 'offer_clicked') }), { maxLength: 4 }),
})
type CustomerSpec = typeof customerArb extends fc.Arbitrary<infer T> ? T : never

const defined = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined))

/** One customer's events in event-time order: a card's stages in the order it lives them, purchases and logins around them. */
function customerEvents(id: string, c: CustomerSpec): Ev[] {
  const evs: Ev[] = []
  let n = 0
  const eid = (kind: string) => `${id}-${kind}-${++n}`
  const main = `tok_${id}_1`
  const second = `tok_${id}_2`
  const stage = (stage: string, at: number, cardId = main, extra: Ev = {}) => evs.push(lifecycle(id, stage, iso(at), { eventId: eid('lc'), cardId, ...extra }))

  const approvedAt = T0 + c.approvedAt
  const profile = defined(c.profile)
  stage('approved', approvedAt, main, Object.keys(profile).length ? { profile } : {})
  const issuedAt = approvedAt + 1 + c.toIssue
  const change = c.change && defined({ birthDate: c.change.birthDate, timezone: c.change.timezone, homeCountry: c.change.homeCountry })
  const changeOnIssued = change && Object.keys(change).length && c.change?.nearBirthday === undefined
  const limit = c.change?.creditLimit === undefined ? {} : { creditLimit: c.change.creditLimit }
  stage('issued', issuedAt, main, changeOnIssued ? { profile: change, ...limit } : limit)
  // The first greeting's due time, as armed from the approval's profile.
  const birthday = c.profile.birthDate ? nextBirthday(c.profile.birthDate, c.profile.timezone ?? 'Asia/Shanghai', '09:00', approvedAt) : approvedAt
  if (change && Object.keys(change).length && c.change?.nearBirthday !== undefined)
    stage('limit_changed', Math.max(issuedAt + 1, birthday + c.change.nearBirthday), main, { profile: change })
  let last = issuedAt
  const activatedAt = c.toActivate === undefined ? undefined : issuedAt + 1 + c.toActivate
  if (activatedAt !== undefined) {
    stage('activated', (last = activatedAt))
    if (c.toBind !== undefined) stage('bound', (last = activatedAt + 1 + c.toBind))
    if (c.second) {
      const issued2 = activatedAt + 1 + c.second.after
      stage('issued', issued2, second)
      if (c.second.activated) stage('activated', issued2 + 1 + c.second.toActivate, second)
    }
  }
  if (c.expiring) stage('expiring', last + 1 + c.expiring.after, main, c.expiring.dated ? { attributes: { expiresOn: '2027-03-31' } } : {})
  if (c.closedAfter !== undefined) stage('closed', last + 1 + c.closedAfter)

  const base = activatedAt ?? issuedAt
  const anchors: Record<(typeof ANCHORS)[number] | 'birthday', number> = { approved: approvedAt, activated: base, bindDue: base + 3 * DAY, swipeDue: base + 7 * DAY, birthday }
  const buy = (at: number, amount: number, extra: Ev) => evs.push(transaction(id, iso(at), amount, { eventId: eid('tx'), ...extra }))
  for (const p of c.purchases) {
    const cardId = p.card === 'main' ? main : p.card === 'second' ? second : `tok_${id}_old`
    buy(anchors[p.anchor] + p.delta, p.amount, { cardId, status: p.status, merchant: { id: `m_${p.country}`, mcc: '5411', country: p.country } })
  }
  if (c.burst) for (let i = 0; i < c.burst.n; i++) buy(anchors[c.burst.anchor] + c.burst.delta + i * c.burst.gap, 30, { cardId: main })
  for (const l of c.logins) evs.push(app(id, l.name, iso(anchors[l.anchor] + l.delta), { eventId: eid('app') }))
  // Stable: events of one instant keep the order above.
  return evs.sort((a, b) => timeOf(a) - timeOf(b))
}

/**
 * An arrival order: each event is read at its event time plus a delay under L, but never before an
 * earlier event of its customer's topic, so each topic keeps its order. Nothing is late: whatever
 * was read before an event occurred less than L after it (its read time, or an earlier event's of
 * its topic, bounds theirs).
 */
function arrivalOrder(sorted: Ev[], delays: number[]): Ev[] {
  const readAt = new Map<string, number>()
  return sorted
    .map((e, i) => {
      const topic = `${e.customerId}/${e.type}`
      const t = Math.max(timeOf(e) + delays[i % delays.length], readAt.get(topic) ?? -Infinity)
      readAt.set(topic, t)
      return { e, t, i }
    })
    .sort((x, y) => x.t - y.t || x.i - y.i)
    .map((x) => x.e)
}

async function decisionsOf(events: Ev[], end: number) {
  const h = new PipelineHarness(defaultCatalogForTests(), { maxDisorder: L })
  for (const e of events) await h.send(e)
  await h.advanceTo(end)
  return h
}

describe('topics interleaved within the allowed lateness', () => {
  it('give the same decisions as the same events sorted by time', async () => {
    // Equal is only worth something if there is something to compare: tallied over the runs.
    const seen = { runs: 0, runsWithDecisions: 0, runsWithAlerts: 0, triggers: new Set<string>() }
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
          expect(byId(interleaved.decisions)).toEqual(byId(inOrder.decisions))
          expect(byId(interleaved.alerts)).toEqual(byId(inOrder.alerts))
          expect(byVersion(interleaved.conversions)).toEqual(byVersion(inOrder.conversions))
          seen.runs++
          if (inOrder.decisions.length) seen.runsWithDecisions++
          if (inOrder.alerts.length) seen.runsWithAlerts++
          for (const d of inOrder.decisions) seen.triggers.add(d.trigger)
        },
      ),
      { numRuns: 200 },
    )
    // Every customer is approved, so nearly every run decides something (a card closed early may
    // leave none); bursts raise night_burst alerts in about a quarter of the runs. Over 200 runs
    // every marketing trigger of the default catalogue comes up (the rarest in about a quarter);
    // compliance_notice cannot, as no generated merchant is of a barred category.
    expect(seen.runsWithDecisions).toBeGreaterThanOrEqual(0.9 * seen.runs)
    expect(seen.runsWithAlerts).toBeGreaterThanOrEqual(0.1 * seen.runs)
    const marketing = Object.entries(defaultCatalogForTests().triggers)
      .filter(([name]) => name !== 'compliance_notice')
      .map(([name]) => name)
    expect(marketing).toHaveLength(12)
    expect([...seen.triggers]).toEqual(expect.arrayContaining(marketing))
  })
})
