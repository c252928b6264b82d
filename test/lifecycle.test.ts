import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { PipelineHarness, defaultCatalogForTests, lifecycle, transaction, app } from './helpers/harness.ts'
import { LIFECYCLE_OPERATORS } from '../operators/lifecycle/index.ts'
import { firstSwipe } from '../operators/lifecycle/firstSwipe.ts'
import { firstPurchase } from '../operators/lifecycle/firstPurchase.ts'
import { crossBorderOffer } from '../operators/lifecycle/crossBorder.ts'
import { birthdayGreeting, nextBirthday } from '../operators/lifecycle/birthday.ts'
import type { Decision } from '../schemas/decision.ts'
import { OperatorHarness } from './helpers/operatorHarness.ts'

const SECOND = 1000
const MINUTE = 60 * SECOND
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR
const T0 = Date.parse('2026-10-01T02:00:00.000Z')
const iso = (ms: number) => new Date(ms).toISOString()
const at = (ms: number) => iso(T0 + ms)

const harness = (maxDisorder = 0) =>
  new PipelineHarness(defaultCatalogForTests(), { operators: [...LIFECYCLE_OPERATORS], maxDisorder })

const of = (h: PipelineHarness, trigger: string) => h.decisions.filter((d) => d.trigger === trigger)
const byId = (ds: Decision[]) => [...ds].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))

/** Feeds the events one by one in the given order, then moves the watermark to `end`. */
async function run(events: Record<string, unknown>[], end: number, maxDisorder = 0) {
  const h = harness(maxDisorder)
  for (const e of events) await h.send(e)
  await h.advanceTo(end)
  return h
}

/** Runs the arrival order and the same events sorted by event time; both must decide the same. */
async function sameAsSorted(arrival: Record<string, unknown>[], end: number, maxDisorder = MINUTE) {
  const sorted = [...arrival].sort((a, b) => Date.parse(String(a.occurredAt)) - Date.parse(String(b.occurredAt)))
  const late = await run(arrival, end, maxDisorder)
  const inOrder = await run(sorted, end, maxDisorder)
  expect(late.deadLetters).toEqual([])
  expect(byId(late.decisions)).toEqual(byId(inOrder.decisions))
  return late
}

describe('first_swipe_incentive', () => {
  it('fires 7 d after activation when nothing was bought, as of the due time', async () => {
    const h = harness()
    await h.send(lifecycle('c', 'activated', at(0)))
    await h.advanceTo(T0 + 7 * DAY - 1)
    expect(of(h, 'first_swipe_incentive')).toEqual([])
    await h.advanceTo(T0 + 7 * DAY)
    expect(of(h, 'first_swipe_incentive')).toEqual([
      expect.objectContaining({
        customerId: 'c',
        cardId: 'tok_c',
        outcome: 'send',
        eventTime: at(7 * DAY),
        reason: { activatedAt: at(0), daysWithoutPurchase: 7 },
      }),
    ])
    await h.advanceTo(T0 + 100 * DAY)
    expect(of(h, 'first_swipe_incentive')).toHaveLength(1)
  })

  it('a purchase just before the due time prevents it; one at exactly the due time does not', async () => {
    const before = await run([lifecycle('c', 'activated', at(0)), transaction('c', at(7 * DAY - 1), 10)], T0 + 30 * DAY)
    expect(of(before, 'first_swipe_incentive')).toEqual([])
    const exactly = await run([lifecycle('c', 'activated', at(0)), transaction('c', at(7 * DAY), 10)], T0 + 30 * DAY)
    expect(of(exactly, 'first_swipe_incentive')).toHaveLength(1)
  })

  it('counts a purchase on any card of the customer, but not one before the activation or a declined one', async () => {
    const other = await run([lifecycle('c', 'activated', at(0)), transaction('c', at(DAY), 10, { cardId: 'tok_other' })], T0 + 30 * DAY)
    expect(of(other, 'first_swipe_incentive')).toEqual([])
    const earlier = await run([transaction('c', at(-HOUR), 10), lifecycle('c', 'activated', at(0))], T0 + 30 * DAY)
    expect(of(earlier, 'first_swipe_incentive')).toHaveLength(1)
    const declined = await run([lifecycle('c', 'activated', at(0)), transaction('c', at(DAY), 10, { status: 'declined' })], T0 + 30 * DAY)
    expect(of(declined, 'first_swipe_incentive')).toHaveLength(1)
  })

  it('a purchase before the due time that arrives after a later event still prevents it', async () => {
    const due = 7 * DAY
    const h = await sameAsSorted(
      [lifecycle('c', 'activated', at(0)), app('c', 'login', at(due + 30 * SECOND)), transaction('c', at(due - 10 * SECOND), 10)],
      T0 + 30 * DAY,
    )
    expect(of(h, 'first_swipe_incentive')).toEqual([])
  })

  it('a purchase after the due time that arrives before the timer fires does not prevent it', async () => {
    const due = 7 * DAY
    const h = await sameAsSorted([lifecycle('c', 'activated', at(0)), transaction('c', at(due + 10 * SECOND), 10)], T0 + 30 * DAY)
    expect(of(h, 'first_swipe_incentive')).toHaveLength(1)
  })

  it('an activation arriving after a purchase that followed it counts that purchase', async () => {
    const h = await sameAsSorted([lifecycle('c', 'issued', at(-DAY)), transaction('c', at(20 * SECOND), 10), lifecycle('c', 'activated', at(0))], T0 + 30 * DAY)
    expect(of(h, 'first_swipe_incentive')).toEqual([])
    expect(of(h, 'first_purchase_reward')).toHaveLength(1)
  })

  it('one per card: a repeated activation does not re-arm; a card closed before the due time cancels', async () => {
    const repeated = await run([lifecycle('c', 'activated', at(0)), lifecycle('c', 'activated', at(2 * DAY)), lifecycle('c', 'activated', at(9 * DAY))], T0 + 30 * DAY)
    expect(of(repeated, 'first_swipe_incentive').map((d) => d.eventTime)).toEqual([at(7 * DAY)])
    const closed = await run([lifecycle('c', 'activated', at(0)), lifecycle('c', 'closed', at(DAY))], T0 + 30 * DAY)
    expect(of(closed, 'first_swipe_incentive')).toEqual([])
    // Closed after the due time, arriving before the timer fired: it was due while the card was open.
    const closedLate = await sameAsSorted([lifecycle('c', 'activated', at(0)), lifecycle('c', 'closed', at(7 * DAY + SECOND))], T0 + 30 * DAY)
    expect(of(closedLate, 'first_swipe_incentive')).toHaveLength(1)
  })

  it('is pure: the state it is given is left as it was', () => {
    // The harness freezes every state it hands the operator: a mutation would throw.
    const h = new OperatorHarness(firstSwipe, { params: { delay: '7d' } })
    const s0 = h.state
    h.event(lifecycle('c', 'activated', at(0)))
    expect(s0).toEqual({})
    const s1 = h.state
    const frozen = structuredClone(s1)
    h.event(transaction('c', at(DAY), 10))
    expect(s1).toEqual(frozen)
    const unbought = new OperatorHarness(firstSwipe, { params: { delay: '7d' } })
    unbought.event(lifecycle('c', 'activated', at(0)))
    const armed = unbought.state
    unbought.advanceTo(T0 + 7 * DAY)
    expect(unbought.moments).toHaveLength(1)
    expect(armed).toEqual(frozen)
  })
})

describe('bind_wallet_nudge', () => {
  it('fires 3 d after activation when the card is not bound', async () => {
    const h = await run([lifecycle('c', 'activated', at(0))], T0 + 30 * DAY)
    expect(of(h, 'bind_wallet_nudge')).toEqual([
      expect.objectContaining({ cardId: 'tok_c', eventTime: at(3 * DAY), reason: { activatedAt: at(0), daysUnbound: 3 } }),
    ])
  })

  it('bound just before 3 d prevents it; bound at 3 d or after does not', async () => {
    const before = await run([lifecycle('c', 'activated', at(0)), lifecycle('c', 'bound', at(3 * DAY - 1))], T0 + 30 * DAY)
    expect(of(before, 'bind_wallet_nudge')).toEqual([])
    const exactly = await run([lifecycle('c', 'activated', at(0)), lifecycle('c', 'bound', at(3 * DAY))], T0 + 30 * DAY)
    expect(of(exactly, 'bind_wallet_nudge')).toHaveLength(1)
    const after = await sameAsSorted([lifecycle('c', 'activated', at(0)), lifecycle('c', 'bound', at(3 * DAY + 5 * SECOND))], T0 + 30 * DAY)
    expect(of(after, 'bind_wallet_nudge')).toHaveLength(1)
  })

  it('bound before the due time but arriving after a later event still prevents it', async () => {
    const h = await sameAsSorted(
      [lifecycle('c', 'activated', at(0)), app('c', 'login', at(3 * DAY + 40 * SECOND)), lifecycle('c', 'bound', at(3 * DAY - 10 * SECOND))],
      T0 + 30 * DAY,
    )
    expect(of(h, 'bind_wallet_nudge')).toEqual([])
  })

  it('is per card, and a card bound before its activation arrives is not nudged', async () => {
    const h = await sameAsSorted(
      [
        lifecycle('c', 'activated', at(0), { cardId: 'tok_a' }),
        lifecycle('c', 'activated', at(HOUR), { cardId: 'tok_b' }),
        lifecycle('c', 'bound', at(HOUR + 30 * SECOND), { cardId: 'tok_b' }),
      ],
      T0 + 30 * DAY,
    )
    expect(of(h, 'bind_wallet_nudge').map((d) => d.cardId)).toEqual(['tok_a'])
    const reversed = await sameAsSorted([lifecycle('c', 'bound', at(30 * SECOND)), lifecycle('c', 'activated', at(0))], T0 + 30 * DAY)
    expect(of(reversed, 'bind_wallet_nudge')).toEqual([])
  })
})

describe('first_purchase_reward', () => {
  it('fires on the first approved transaction after activation, once per customer', async () => {
    const h = await run(
      [
        lifecycle('c', 'activated', at(0)),
        transaction('c', at(DAY), 88.5, { eventId: 'tx-first', merchant: { id: 'm_cafe', mcc: '5814', country: 'CN' } }),
        transaction('c', at(2 * DAY), 20),
        lifecycle('c', 'activated', at(3 * DAY), { cardId: 'tok_second' }),
        transaction('c', at(4 * DAY), 30, { cardId: 'tok_second' }),
      ],
      T0 + 30 * DAY,
    )
    expect(of(h, 'first_purchase_reward')).toEqual([
      expect.objectContaining({
        cardId: 'tok_c',
        eventTime: at(DAY),
        reason: { activatedAt: at(0), transactionId: 'tx-first', amount: 88.5, currency: 'CNY', merchantId: 'm_cafe', mcc: '5814' },
      }),
    ])
  })

  it('a transaction before activation neither counts nor uses it up; one at the activation instant counts', async () => {
    const h = await run([transaction('c', at(-HOUR), 10), lifecycle('c', 'activated', at(0)), transaction('c', at(HOUR), 20)], T0 + 30 * DAY)
    expect(of(h, 'first_purchase_reward').map((d) => [d.eventTime, d.reason.amount])).toEqual([[at(HOUR), 20]])
    const same = await run([lifecycle('c', 'activated', at(0)), transaction('c', at(0), 20)], T0 + 30 * DAY)
    expect(of(same, 'first_purchase_reward')).toHaveLength(1)
  })

  it('nothing without an activation; declined transactions do not count', async () => {
    const h = await run([transaction('c', at(0), 10), lifecycle('c', 'activated', at(HOUR)), transaction('c', at(2 * HOUR), 10, { status: 'declined' })], T0 + 30 * DAY)
    expect(of(h, 'first_purchase_reward')).toEqual([])
  })

  it('the earliest purchase wins when a later one arrives first', async () => {
    const h = await sameAsSorted(
      [lifecycle('c', 'activated', at(0)), transaction('c', at(HOUR + 40 * SECOND), 20), transaction('c', at(HOUR), 10)],
      T0 + 30 * DAY,
    )
    expect(of(h, 'first_purchase_reward').map((d) => d.reason.amount)).toEqual([10])
  })

  it('rewards a purchase whose card lifecycle arrives after it (issued and activated in seconds)', async () => {
    const h = await sameAsSorted(
      [
        transaction('c', at(20 * SECOND), 10),
        lifecycle('c', 'approved', at(0)),
        lifecycle('c', 'issued', at(5 * SECOND)),
        lifecycle('c', 'activated', at(10 * SECOND)),
      ],
      T0 + 30 * DAY,
    )
    expect(of(h, 'first_purchase_reward').map((d) => d.eventTime)).toEqual([at(20 * SECOND)])
  })

  it('rewards it for a customer seen only through older purchases, a day of lateness after them', async () => {
    // The new card is approved, issued and activated in seconds; the lifecycle topic lags the
    // transactions by most of a day, so the purchase after the activation arrives first.
    const h = await sameAsSorted(
      [
        transaction('c', at(-3 * DAY), 40, { cardId: 'tok_old' }),
        transaction('c', at(-HOUR), 40, { cardId: 'tok_old' }),
        transaction('c', at(20 * SECOND), 10, { cardId: 'tok_old', eventId: 'tx-first' }),
        transaction('c', at(20 * HOUR), 30),
        lifecycle('c', 'approved', at(0)),
        lifecycle('c', 'issued', at(5 * SECOND)),
        lifecycle('c', 'activated', at(10 * SECOND)),
      ],
      T0 + 30 * DAY,
      DAY,
    )
    expect(of(h, 'first_purchase_reward').map((d) => d.reason.transactionId)).toEqual(['tx-first'])
  })

  it('counts a purchase at the activation instant even when the activation arrives once the watermark is there', async () => {
    // The watermark reaches the purchase time but not past it: an activation at that instant is not late.
    const h = await sameAsSorted([transaction('c', at(0), 10), app('c', 'login', at(MINUTE)), lifecycle('c', 'activated', at(0))], T0 + 30 * DAY)
    expect(of(h, 'first_purchase_reward').map((d) => d.eventTime)).toEqual([at(0)])
  })

  it('keeps nothing for a purchase before any activation once the watermark has passed it', async () => {
    const h = harness(MINUTE)
    await h.send(transaction('c', at(0), 10), transaction('c', at(SECOND), 20))
    const held = (await h.store.load(0, ['c'], -Infinity)).customers.get('c')!
    // Held by the runtime, in event-time order, until the watermark passes them.
    expect(held.inbox?.map((e) => e.eventId)).toHaveLength(2)
    await h.send(app('c', 'login', at(MINUTE + SECOND + 1)))
    const after = (await h.store.load(0, ['c'], -Infinity)).customers.get('c')!
    expect(after.inbox?.map((e) => e.occurredAt)).toEqual([at(MINUTE + SECOND + 1)])
    expect(after.ops.first_purchase_reward).toBeUndefined()
    // An activation now comes after both: neither counts.
    await h.send(lifecycle('c', 'activated', at(2 * MINUTE)))
    await h.advanceTo(T0 + 30 * DAY)
    expect(of(h, 'first_purchase_reward')).toEqual([])
  })

  it('is decided as soon as the watermark reaches the purchase', async () => {
    const h = harness()
    await h.send(lifecycle('c', 'activated', at(0)))
    // Another event of that very millisecond may still come: the purchase waits for it.
    expect((await h.send(transaction('c', at(HOUR), 10))).decisions).toEqual([])
    const out = await h.send(app('c', 'login', new Date(T0 + HOUR + 1).toISOString()))
    expect(out.decisions.map((d) => d.trigger)).toEqual(['first_purchase_reward'])
  })

  it('keeps only a flag once rewarded', () => {
    const h = new OperatorHarness(firstPurchase, { params: {} })
    h.event(lifecycle('c', 'activated', at(0)))
    expect(h.state).toEqual({ activatedAt: T0 })
    const rewarded = h.event(transaction('c', at(HOUR), 10))
    expect(h.state).toEqual({ done: true })
    expect(rewarded).toEqual([expect.objectContaining({ trigger: 'first_purchase_reward', occurrence: 'first', eventTime: T0 + HOUR })])
    expect(h.event(transaction('c', at(2 * HOUR), 10))).toEqual([])
  })
})

describe('renewal_reminder', () => {
  it('fires on expiring with the expiry date, once per card and date', async () => {
    const h = await run(
      [
        lifecycle('c', 'expiring', at(0), { attributes: { expiresOn: '2026-12-31' } }),
        lifecycle('c', 'expiring', at(DAY), { attributes: { expiresOn: '2026-12-31' } }),
        lifecycle('c', 'expiring', at(2 * DAY), { cardId: 'tok_other', attributes: { expiresOn: '2026-12-31' } }),
        lifecycle('c', 'renewed', at(10 * DAY)),
        lifecycle('c', 'expiring', at(20 * DAY), { attributes: { expiresOn: '2026-12-31' } }),
        lifecycle('c', 'expiring', at(900 * DAY), { attributes: { expiresOn: '2029-12-31' } }),
      ],
      T0 + 1000 * DAY,
    )
    const reminders = of(h, 'renewal_reminder')
    expect(reminders.map((d) => [d.cardId, d.eventTime, d.reason])).toEqual([
      ['tok_c', at(0), { expiresOn: '2026-12-31' }],
      ['tok_other', at(2 * DAY), { expiresOn: '2026-12-31' }],
      ['tok_c', at(900 * DAY), { expiresOn: '2029-12-31' }],
    ])
    expect(new Set(reminders.map((d) => d.id)).size).toBe(3)
  })

  it('without a date: once per card until it is renewed', async () => {
    const h = await run(
      [lifecycle('c', 'expiring', at(0)), lifecycle('c', 'expiring', at(DAY)), lifecycle('c', 'renewed', at(5 * DAY)), lifecycle('c', 'expiring', at(800 * DAY))],
      T0 + 900 * DAY,
    )
    expect(of(h, 'renewal_reminder').map((d) => [d.eventTime, d.reason])).toEqual([
      [at(0), {}],
      [at(800 * DAY), {}],
    ])
  })
})

describe('birthday_greeting', () => {
  const profile = (birthDate: string | undefined, timezone?: string) => ({ profile: { ...(birthDate ? { birthDate } : {}), ...(timezone ? { timezone } : {}) } })

  it('fires at 09:00 Asia/Shanghai (01:00Z) on the birthday, and again the next year', async () => {
    const h = harness()
    await h.send(lifecycle('c', 'approved', '2026-10-01T02:00:00Z', profile('1990-10-05')))
    await h.advanceTo(Date.parse('2026-10-05T01:00:00Z') - 1)
    expect(of(h, 'birthday_greeting')).toEqual([])
    await h.advanceTo('2028-01-01T00:00:00Z')
    const greetings = of(h, 'birthday_greeting')
    expect(greetings.map((d) => d.eventTime)).toEqual(['2026-10-05T01:00:00.000Z', '2027-10-05T01:00:00.000Z'])
    expect(greetings[0].reason).toEqual({ birthDate: '1990-10-05', age: 36, localDate: '2026-10-05', localTime: '09:00', timezone: 'Asia/Shanghai' })
    expect(greetings[0].cardId).toBeUndefined()
    expect(greetings[0].id).not.toBe(greetings[1].id)
  })

  it('follows the customer time zone, daylight saving included (America/New_York)', async () => {
    const h = harness()
    await h.send(lifecycle('c', 'approved', '2026-06-01T00:00:00Z', profile('1980-07-04', 'America/New_York')))
    await h.send(lifecycle('d', 'approved', '2026-06-01T00:00:00Z', profile('1980-11-20', 'America/New_York')))
    await h.advanceTo('2026-12-31T00:00:00Z')
    expect(of(h, 'birthday_greeting').map((d) => [d.customerId, d.eventTime])).toEqual([
      ['c', '2026-07-04T13:00:00.000Z'], // EDT, UTC−4
      ['d', '2026-11-20T14:00:00.000Z'], // EST, UTC−5
    ])
  })

  it('29 February: on 28 February in common years, on the day in leap years', async () => {
    const h = harness()
    await h.send(lifecycle('c', 'approved', '2026-10-01T00:00:00Z', profile('1992-02-29')))
    await h.advanceTo('2028-12-31T00:00:00Z')
    expect(of(h, 'birthday_greeting').map((d) => d.eventTime)).toEqual(['2027-02-28T01:00:00.000Z', '2028-02-29T01:00:00.000Z'])
  })

  it('a birth date change moves the timer; a second birthday in one year is not greeted', async () => {
    const moved = harness()
    await moved.send(lifecycle('c', 'approved', '2026-10-01T00:00:00Z', profile('1990-10-05')))
    await moved.send(lifecycle('c', 'issued', '2026-10-03T00:00:00Z', profile('1990-10-20')))
    await moved.advanceTo('2027-01-01T00:00:00Z')
    expect(of(moved, 'birthday_greeting').map((d) => [d.eventTime, d.reason.birthDate])).toEqual([['2026-10-20T01:00:00.000Z', '1990-10-20']])

    const corrected = harness()
    await corrected.send(lifecycle('c', 'approved', '2026-10-01T00:00:00Z', profile('1990-10-05')))
    await corrected.send(lifecycle('c', 'issued', '2026-10-06T00:00:00Z', profile('1990-10-20')))
    await corrected.advanceTo('2027-12-31T00:00:00Z')
    expect(of(corrected, 'birthday_greeting').map((d) => d.eventTime)).toEqual(['2026-10-05T01:00:00.000Z', '2027-10-20T01:00:00.000Z'])
  })

  it('a change that occurred after the due time but arrives before the timer fires does not cancel it', async () => {
    const h = await sameAsSorted(
      [lifecycle('c', 'approved', '2026-10-01T00:00:00Z', profile('1990-10-05')), lifecycle('c', 'issued', '2026-10-05T01:00:30Z', profile('1990-12-01'))],
      Date.parse('2028-01-01T00:00:00Z'),
    )
    // The greeting due before the change stands; the new date takes over from the next year.
    expect(of(h, 'birthday_greeting').map((d) => [d.eventTime, d.reason.birthDate])).toEqual([
      ['2026-10-05T01:00:00.000Z', '1990-10-05'],
      ['2027-12-01T01:00:00.000Z', '1990-12-01'],
    ])
  })

  it('a change at the due time, followed by an earlier event of another topic, still lets the greeting stand', async () => {
    const h = await sameAsSorted(
      [
        lifecycle('c', 'approved', '2026-10-03T15:00:00Z', profile('1990-10-05')),
        lifecycle('c', 'issued', '2026-10-05T01:00:00Z', profile('2000-10-20')),
        // From before the change, on the app topic: it must not re-arm from the new date.
        app('c', 'login', '2026-10-03T15:00:00Z'),
      ],
      Date.parse('2028-01-01T00:00:00Z'),
      2 * DAY,
    )
    expect(of(h, 'birthday_greeting').map((d) => [d.eventTime, d.reason.birthDate])).toEqual([
      ['2026-10-05T01:00:00.000Z', '1990-10-05'],
      ['2027-10-20T01:00:00.000Z', '2000-10-20'],
    ])
  })

  it('nothing for a birthday before the customer was known, nor without a birth date', async () => {
    const h = harness()
    await h.send(lifecycle('late', 'approved', '2026-10-05T01:00:01Z', profile('1990-10-05')))
    await h.send(lifecycle('none', 'approved', '2026-10-01T00:00:00Z'))
    await h.send(transaction('none', '2026-10-02T00:00:00Z', 10))
    await h.advanceTo('2027-10-01T00:00:00Z')
    expect(of(h, 'birthday_greeting')).toEqual([])
    await h.advanceTo('2027-10-05T01:00:00Z')
    expect(of(h, 'birthday_greeting').map((d) => [d.customerId, d.eventTime])).toEqual([['late', '2027-10-05T01:00:00.000Z']])
  })

  it('arms for a profile known before the operator first saw the customer', () => {
    const h = new OperatorHarness(birthdayGreeting, { params: { at: '09:00' }, profile: { birthDate: '1990-10-05' } })
    expect(h.event(transaction('c', at(0), 10))).toEqual([{ kind: 'setTimer', key: 'next', at: Date.parse('2026-10-05T01:00:00Z') }])
    // A transaction changes nothing once armed: no time-zone arithmetic per event.
    const armed = h.state
    expect(h.event(transaction('c', at(HOUR), 10))).toEqual([])
    expect(h.state).toBe(armed)
  })

  it('computes the next birthday in local time', () => {
    const from = Date.parse('2027-02-28T01:00:00Z')
    expect(iso(nextBirthday('1992-02-29', 'Asia/Shanghai', '09:00', from))).toBe('2027-02-28T01:00:00.000Z')
    expect(iso(nextBirthday('1992-02-29', 'Asia/Shanghai', '09:00', from + 1))).toBe('2028-02-29T01:00:00.000Z')
    expect(iso(nextBirthday('1990-01-01', 'Asia/Shanghai', '09:00', Date.parse('2026-12-31T17:00:00Z')))).toBe('2027-01-01T01:00:00.000Z')
    expect(iso(nextBirthday('1990-10-05', 'Asia/Shanghai', '09:00', from, 2027))).toBe('2028-10-05T01:00:00.000Z')
  })
})

describe('installment_offer', () => {
  it('fires on an approved purchase of exactly 5000, not 4999.99', async () => {
    const h = await run(
      [
        transaction('c', at(0), 5000, { eventId: 'tx-big', merchant: { id: 'm_elec', name: 'Digital City', mcc: '5732', country: 'CN' } }),
        transaction('c', at(HOUR), 4999.99),
        transaction('c', at(2 * HOUR), 9000, { status: 'declined' }),
        transaction('c', at(3 * HOUR), 9000, { channel: 'atm' }),
        transaction('c', at(4 * HOUR), 12000, { eventId: 'tx-big2' }),
      ],
      T0 + DAY,
    )
    const offers = of(h, 'installment_offer')
    expect(offers.map((d) => [d.eventTime, d.cardId, d.reason])).toEqual([
      [at(0), 'tok_c', { transactionId: 'tx-big', amount: 5000, currency: 'CNY', minAmount: 5000, merchantId: 'm_elec', merchantName: 'Digital City', mcc: '5732' }],
      [at(4 * HOUR), 'tok_c', { transactionId: 'tx-big2', amount: 12000, currency: 'CNY', minAmount: 5000, merchantId: 'm1', mcc: '5411' }],
    ])
    expect(offers[0].id).not.toBe(offers[1].id)
  })
})

describe('cross_border_offer', () => {
  const abroad = (customerId: string, ms: number, country = 'JP', extra: Record<string, unknown> = {}) =>
    transaction(customerId, at(ms), 300, { merchant: { id: `m_${country}`, mcc: '5812', country }, ...extra })

  it('fires on the first approved transaction abroad, with the countries', async () => {
    const h = await run([transaction('c', at(0), 10), abroad('c', DAY, 'JP', { eventId: 'tx-jp' })], T0 + 2 * DAY)
    expect(of(h, 'cross_border_offer')).toEqual([
      expect.objectContaining({
        cardId: 'tok_c',
        eventTime: at(DAY),
        reason: { transactionId: 'tx-jp', country: 'JP', homeCountry: 'CN', merchantId: 'm_JP', amount: 300, currency: 'CNY' },
      }),
    ])
  })

  it('not again within 30 d of the previous one; again at exactly 30 d and after', async () => {
    const within = await run([abroad('c', 0), abroad('c', 30 * DAY - 1, 'US')], T0 + 40 * DAY)
    expect(of(within, 'cross_border_offer').map((d) => d.eventTime)).toEqual([at(0)])
    const exactly = await run([abroad('c', 0), abroad('c', 30 * DAY, 'US')], T0 + 40 * DAY)
    expect(of(exactly, 'cross_border_offer').map((d) => d.eventTime)).toEqual([at(0), at(30 * DAY)])
    const after = await run([abroad('c', 0), abroad('c', 45 * DAY)], T0 + 50 * DAY)
    const second = of(after, 'cross_border_offer')[1]
    expect(second.reason).toMatchObject({ previousCrossBorderAt: at(0), daysSincePrevious: 45 })
  })

  it('the window runs from the last cross-border transaction, fired or not', async () => {
    const h = await run([abroad('c', 0), abroad('c', 20 * DAY), abroad('c', 40 * DAY), abroad('c', 71 * DAY)], T0 + 80 * DAY)
    expect(of(h, 'cross_border_offer').map((d) => d.eventTime)).toEqual([at(0), at(71 * DAY)])
  })

  it('uses the profile home country; declined and domestic transactions do not count', async () => {
    const h = await run(
      [
        lifecycle('us', 'approved', at(-DAY), { profile: { homeCountry: 'US', timezone: 'America/New_York' } }),
        abroad('us', 0, 'US'),
        abroad('us', HOUR, 'CN'),
        abroad('c', 0, 'JP', { status: 'declined' }),
        transaction('c', at(HOUR), 10, { merchant: { id: 'm_x' } }),
      ],
      T0 + DAY,
    )
    expect(of(h, 'cross_border_offer').map((d) => [d.customerId, d.reason.country, d.reason.homeCountry])).toEqual([['us', 'CN', 'US']])
  })

  it('the earlier of two close cross-border transactions wins when they arrive reversed', async () => {
    const h = await sameAsSorted([abroad('c', 40 * SECOND, 'JP', { eventId: 'tx-b' }), abroad('c', 0, 'KR', { eventId: 'tx-a' })], T0 + DAY)
    expect(of(h, 'cross_border_offer').map((d) => d.reason.transactionId)).toEqual(['tx-a'])
    const again = await sameAsSorted([abroad('c', 0), abroad('c', 31 * DAY + 40 * SECOND, 'US'), abroad('c', 31 * DAY, 'KR')], T0 + 40 * DAY)
    expect(of(again, 'cross_border_offer').map((d) => d.eventTime)).toEqual([at(0), at(31 * DAY)])
  })

  it('keeps just the last cross-border time', () => {
    const h = new OperatorHarness(crossBorderOffer, { params: { window: '30d' } })
    expect(h.event(abroad('c', 0))).toEqual([expect.objectContaining({ trigger: 'cross_border_offer', eventTime: T0 })])
    expect(h.state).toEqual({ last: T0 })
    expect(h.event(abroad('c', DAY))).toEqual([])
    expect(h.state).toEqual({ last: T0 + DAY })
  })
})

describe('every lifecycle trigger together', () => {
  it('state stays small for a typical customer with one card after 200 days', async () => {
    const h = harness(5 * MINUTE)
    const events: Record<string, unknown>[] = [
      lifecycle('c', 'applied', at(-3 * DAY), { profile: { birthDate: '1991-03-15' } }),
      lifecycle('c', 'approved', at(-2 * DAY)),
      lifecycle('c', 'issued', at(-DAY)),
      lifecycle('c', 'activated', at(0)),
      lifecycle('c', 'bound', at(HOUR)),
    ]
    for (let d = 1; d <= 200; d++) {
      const country = d % 50 === 0 ? 'JP' : 'CN'
      events.push(transaction('c', at(d * DAY + 12 * HOUR), d % 40 === 0 ? 6000 : 50 + d, { merchant: { id: `m${d % 7}`, mcc: '5411', country } }))
    }
    events.push(lifecycle('c', 'expiring', at(190 * DAY), { attributes: { expiresOn: '2027-06-30' } }))
    events.sort((a, b) => Date.parse(String(a.occurredAt)) - Date.parse(String(b.occurredAt)))
    for (const e of events) await h.send(e)
    await h.advanceTo(T0 + 201 * DAY)
    const rec = (await h.store.load(0, ['c'], -Infinity)).customers.get('c')!
    // Empty states are not stored: a stateless operator (installment) leaves nothing.
    const ops = Object.fromEntries(LIFECYCLE_OPERATORS.filter((op) => op.name in rec.ops).map((op) => [op.name, rec.ops[op.name]]))
    const bytes = Buffer.byteLength(JSON.stringify(ops))
    expect(bytes).toBeLessThan(400)
    expect(ops).toEqual({
      first_swipe_incentive: { cards: { tok_c: { done: true } } },
      bind_wallet_nudge: { cards: { tok_c: { done: true } } },
      first_purchase_reward: { done: true },
      renewal_reminder: { cards: { tok_c: ['2027-06-30'] } },
      birthday_greeting: { birthDate: '1991-03-15', tz: 'Asia/Shanghai', due: Date.parse('2028-03-15T01:00:00Z'), greeted: 2027 },
      cross_border_offer: { last: T0 + 200 * DAY + 12 * HOUR },
    })
    expect(h.decisions.map((d) => d.trigger).sort()).toEqual(
      [...Array(5).fill('installment_offer'), ...Array(4).fill('cross_border_offer'), 'birthday_greeting', 'first_purchase_reward', 'renewal_reminder'].sort(),
    )
  })
})

// ——— properties ———

const CUSTOMERS = ['a', 'b', 'c']
const STAGES = ['approved', 'issued', 'activated', 'activated', 'bound', 'expiring', 'closed', 'renewed']
const BIRTHDATES = ['1990-10-05', '1992-02-29', '1985-12-31', '2000-01-01']

/** One event for a customer; its time comes from the gaps. */
const eventArb = (birthDate: (customer: string) => fc.Arbitrary<string>) =>
  fc.constantFrom(...CUSTOMERS).chain((customerId) =>
    fc.oneof(
      fc.record({
        customerId: fc.constant(customerId),
        kind: fc.constant('lifecycle' as const),
        stage: fc.constantFrom(...STAGES),
        card: fc.constantFrom('1', '2'),
        birthDate: fc.option(birthDate(customerId), { nil: undefined }),
        expiresOn: fc.option(fc.constantFrom('2027-01-31', '2028-01-31'), { nil: undefined }),
      }),
      fc.record({
        customerId: fc.constant(customerId),
        kind: fc.constant('transaction' as const),
        card: fc.constantFrom('1', '2'),
        amount: fc.constantFrom(10, 4999.99, 5000, 8000),
        status: fc.constantFrom('approved', 'approved', 'approved', 'declined'),
        country: fc.constantFrom('CN', 'CN', 'JP', 'US'),
      }),
    ),
  )

type Spec = { customerId: string; card: string } & (
  | { kind: 'lifecycle'; stage: string; birthDate?: string; expiresOn?: string }
  | { kind: 'transaction'; amount: number; status: string; country: string }
)

/** Gaps mostly of seconds (so events fall within the lateness of each other), sometimes of days. */
const gapArb = fc.oneof(
  { arbitrary: fc.integer({ min: 1, max: 90 }).map((s) => s * SECOND), weight: 3 },
  { arbitrary: fc.integer({ min: 1, max: (12 * DAY) / MINUTE }).map((m) => m * MINUTE), weight: 1 },
)

function build(specs: Spec[], gaps: number[]) {
  let t = T0
  return specs.map((s, i) => {
    t += gaps[i % gaps.length]
    const cardId = `tok_${s.customerId}_${s.card}`
    const occurredAt = iso(t)
    const eventId = `e${i}`
    if (s.kind === 'lifecycle')
      return lifecycle(s.customerId, s.stage, occurredAt, {
        eventId,
        cardId,
        ...(s.birthDate ? { profile: { birthDate: s.birthDate } } : {}),
        ...(s.expiresOn ? { attributes: { expiresOn: s.expiresOn } } : {}),
      })
    return transaction(s.customerId, occurredAt, s.amount, { eventId, cardId, status: s.status, merchant: { id: 'm', mcc: '5411', country: s.country } })
  })
}

/** Reorders each card's lifecycle stages (keeping their slots in the stream) into the order a card lives them. */
function inLifecycleOrder(specs: Spec[]): Spec[] {
  const rank = (stage: string) => LIFE_ORDER.indexOf(stage)
  const out = [...specs]
  const slots = new Map<string, number[]>()
  specs.forEach((s, i) => {
    if (s.kind !== 'lifecycle') return
    const key = `${s.customerId}/${s.card}`
    slots.set(key, [...(slots.get(key) ?? []), i])
  })
  for (const idx of slots.values()) {
    const ordered = idx.map((i) => specs[i]).sort((a, b) => rank((a as { stage: string }).stage) - rank((b as { stage: string }).stage))
    idx.forEach((i, k) => (out[i] = ordered[k]))
  }
  return out
}
/**
 * A card is used only once activated: a transaction on a card not yet activated has the activation
 * put just before it (often seconds before: the overtaking case), and stages before activation that
 * would come after it are dropped.
 */
function usedOnceActivated(specs: Spec[]): Spec[] {
  const active = new Set<string>()
  const out: Spec[] = []
  for (const s of specs) {
    const key = `${s.customerId}/${s.card}`
    if (s.kind === 'transaction' && !active.has(key)) out.push({ customerId: s.customerId, card: s.card, kind: 'lifecycle', stage: 'activated' })
    if (s.kind === 'lifecycle' && active.has(key) && LIFE_ORDER.indexOf(s.stage) < LIFE_ORDER.indexOf('activated')) continue
    if (s.kind === 'transaction' || s.stage === 'activated') active.add(key)
    out.push(s)
  }
  return out
}
const LIFE_ORDER = ['applied', 'approved', 'issued', 'activated', 'bound', 'expiring', 'renewed', 'closed']

async function decisionsOf(batches: Record<string, unknown>[][], end: number, maxDisorder = 0) {
  const h = harness(maxDisorder)
  for (const b of batches) if (b.length) await h.send(...b)
  await h.advanceTo(end)
  return h
}

describe('properties', () => {
  it('cutting a sorted stream into different batches gives identical decisions', async () => {
    const anyBirthDate = () => fc.constantFrom(...BIRTHDATES)
    await fc.assert(
      fc.asyncProperty(
        fc.array(eventArb(anyBirthDate), { minLength: 1, maxLength: 40 }),
        fc.array(gapArb, { minLength: 1, maxLength: 40 }),
        fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 10 }),
        async (specs, gaps, cuts) => {
          const events = build(specs as Spec[], gaps)
          const end = Date.parse(String(events[events.length - 1].occurredAt)) + 400 * DAY
          const whole = await decisionsOf([events], end)
          const batches: Record<string, unknown>[][] = []
          for (let i = 0, k = 0; i < events.length; k++) {
            const size = cuts[k % cuts.length]
            batches.push(events.slice(i, i + size))
            i += size
          }
          const cut = await decisionsOf(batches, end)
          const single = await decisionsOf(events.map((e) => [e]), end)
          expect(cut.decisions).toEqual(whole.decisions)
          expect(single.decisions).toEqual(whole.decisions)
        },
      ),
      { numRuns: 60 },
    )
  })

  it('arrival out of order within the allowed lateness gives the same decisions as sorted input', async () => {
    // Every event arrives up to the allowed lateness after it occurred: transactions in any order
    // among themselves and around the lifecycle events (a purchase may overtake its activation);
    // the lifecycle topic keeps its own order, as a card's stages come from one producer.
    const lateness = MINUTE
    await fc.assert(
      fc.asyncProperty(
        fc.array(eventArb(() => fc.constantFrom(...BIRTHDATES)), { minLength: 1, maxLength: 40 }),
        fc.array(gapArb, { minLength: 1, maxLength: 40 }),
        fc.array(fc.oneof(fc.constant(0), fc.constant(lateness - 1), fc.integer({ min: 0, max: lateness - 1 })), { minLength: 1, maxLength: 40 }),
        async (specs, gaps, delays) => {
          // Each card lives its lifecycle in order and is used only once activated; a customer may be
          // seen through transactions first, and a card's whole lifecycle may arrive after a purchase
          // that followed its activation.
          const events = build(usedOnceActivated(inLifecycleOrder(specs as Spec[])), gaps)
          const end = Date.parse(String(events[events.length - 1].occurredAt)) + 400 * DAY
          let lifecycleReadAt = -Infinity
          const arrival = events
            .map((e, i) => {
              let t = Date.parse(String(e.occurredAt)) + delays[i % delays.length]
              if (e.type === 'lifecycle') t = lifecycleReadAt = Math.max(t, lifecycleReadAt)
              return { e, t, i }
            })
            .sort((x, y) => x.t - y.t || x.i - y.i)
            .map((x) => x.e)
          const sorted = await decisionsOf(events.map((e) => [e]), end, lateness)
          const interleaved = await decisionsOf(arrival.map((e) => [e]), end, lateness)
          expect(interleaved.deadLetters).toEqual([])
          expect(byId(interleaved.decisions)).toEqual(byId(sorted.decisions))
        },
      ),
      { numRuns: 100 },
    )
  })
})
