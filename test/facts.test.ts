import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { addSpend, emptyLedger, epochDay, spendBetween, activeDaysBetween, spendInLastDays, DAY } from '../operators/ledger.ts'
import { foldFacts, initialFacts, recordAlert, riskLevel, valueTier } from '../operators/facts.ts'
import { transaction, lifecycle } from './helpers/harness.ts'
import { InputEvent } from '../schemas/events.ts'

const T0 = Date.parse('2026-01-01T12:00:00Z')

describe('spend ledger', () => {
  it('is exact inside the daily window', () => {
    let l = emptyLedger()
    l = addSpend(l, T0, 10.4)
    l = addSpend(l, T0 + DAY, 20.25)
    l = addSpend(l, T0 + DAY, 1)
    l = addSpend(l, T0 + 3 * DAY, 5)
    const d0 = epochDay(T0)
    expect(spendBetween(l, d0, d0 + 3)).toBe(36)
    expect(spendBetween(l, d0 + 1, d0 + 1)).toBe(21)
    expect(activeDaysBetween(l, d0, d0 + 3)).toBe(3)
    expect(spendInLastDays(l, T0 + 3 * DAY, 3)).toBe(26)
  })

  it('keeps totals when days leave the daily window for blocks', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ day: fc.integer({ min: 0, max: 120 }), amount: fc.integer({ min: 1, max: 100_000 }).map((n) => n * 100) }), { maxLength: 60 }), (txs) => {
        let l = emptyLedger()
        for (const t of [...txs].sort((a, b) => a.day - b.day)) l = addSpend(l, T0 + t.day * DAY, t.amount / 100)
        const total = txs.reduce((s, t) => s + t.amount, 0) / 100
        const d0 = epochDay(T0)
        expect(spendBetween(l, d0 - 10, d0 + 200)).toBeCloseTo(total, 2)
        // The most recent 35 days are exact.
        const last = Math.max(0, ...txs.map((t) => t.day))
        const exact = txs.filter((t) => t.day > last - 30).reduce((s, t) => s + t.amount, 0) / 100
        expect(spendBetween(l, d0 + last - 29, d0 + last)).toBeCloseTo(exact, 2)
      }),
    )
  })

  it('dates old spend correctly after a long gap', () => {
    let l = addSpend(emptyLedger(), T0, 1000)
    l = addSpend(l, T0 + 200 * DAY, 1)
    const d0 = epochDay(T0)
    expect(spendBetween(l, d0 + 100, d0 + 200)).toBe(1)
    l = addSpend(addSpend(emptyLedger(), T0, 1000), T0 + 50 * DAY, 1)
    expect(spendBetween(l, d0 - 5, d0 + 5)).toBe(1000)
    expect(spendBetween(l, d0 + 20, d0 + 50)).toBe(1)
  })

  it('stays small for a customer who spends every day', () => {
    let l = emptyLedger()
    for (let d = 0; d < 365; d++) l = addSpend(l, T0 + d * DAY, 123.45)
    expect(l.d.length).toBeLessThanOrEqual(35)
    expect(l.b.length).toBeLessThanOrEqual(10)
    expect(JSON.stringify(l).length).toBeLessThan(300)
  })
})

describe('customer facts and derived attributes', () => {
  const fold = (events: Record<string, unknown>[]) =>
    events.reduce((f, e) => {
      const ev = InputEvent.parse(e)
      return foldFacts(f, ev, Date.parse(ev.occurredAt))
    }, initialFacts())

  it('follows card stages, limits and approved spend', () => {
    const f = fold([
      lifecycle('c', 'approved', '2026-01-01T00:00:00Z', { creditLimit: 20000 }),
      lifecycle('c', 'activated', '2026-01-02T00:00:00Z'),
      transaction('c', '2026-01-03T00:00:00Z', 100),
      transaction('c', '2026-01-04T00:00:00Z', 50, { status: 'declined' }),
    ])
    expect(f.stage).toBe('activated')
    expect(f.cards.tok_c).toMatchObject({ stage: 'activated', creditLimit: 20000, activatedAt: Date.parse('2026-01-02T00:00:00Z') })
    expect(f.approved).toBe(1)
    expect(f.firstApprovedAt).toBe(Date.parse('2026-01-03T00:00:00Z'))
  })

  it('derives the value tier from recency, frequency and monetary value', () => {
    expect(valueTier(initialFacts(), T0)).toBe('new')
    const spender = fold(Array.from({ length: 20 }, (_, i) => transaction('c', new Date(T0 + i * DAY).toISOString(), 1000)))
    expect(valueTier(spender, T0 + 20 * DAY)).toBe('high')
    expect(valueTier(spender, T0 + 90 * DAY)).toBe('inactive')
    const small = fold([transaction('c', new Date(T0).toISOString(), 20)])
    expect(valueTier(small, T0 + DAY)).toBe('low')
  })

  it('derives the risk level from alerts of the last 30 days', () => {
    let f = initialFacts()
    expect(riskLevel(f, T0)).toBe('none')
    f = recordAlert(f, T0, 'medium')
    expect(riskLevel(f, T0 + DAY)).toBe('medium')
    f = recordAlert(f, T0 + DAY, 'critical')
    expect(riskLevel(f, T0 + 2 * DAY)).toBe('high')
    expect(riskLevel(f, T0 + 40 * DAY)).toBe('none')
    for (let i = 0; i < 20; i++) f = recordAlert(f, T0 + i, 'low')
    expect(f.alerts.length).toBeLessThanOrEqual(8)
  })
})
