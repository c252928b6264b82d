import { describe, expect, it } from 'vitest'
import { OperatorHarness } from './helpers/operatorHarness.ts'
import { lifecycle, transaction } from './helpers/harness.ts'
import type { Operator } from '../operators/types.ts'
import { OPERATORS } from '../operators/index.ts'
import { simulateBank } from '../simulator/bank.ts'

const T0 = Date.parse('2026-10-01T02:00:00.000Z')
const iso = (ms: number) => new Date(ms).toISOString()

/** Records what it saw, in order; sets the timers its params list at its first event. */
const probe: Operator<{ seen: string[] }, { timers: [string, number][] }> = {
  name: 'probe',
  uses: 'probe',
  initial: () => ({ seen: [] }),
  parseParams: (raw) => raw as { timers: [string, number][] },
  onEvent: (state, event, at, { params, facts }) => ({
    state: { seen: [...state.seen, `event@${at - T0} approved=${facts.approved}`] },
    effects: state.seen.length ? [] : params.timers.map(([key, after]) => ({ kind: 'setTimer' as const, key, at: at + after })),
  }),
  onTimer: (state, timer) => ({
    state: { seen: [...state.seen, `timer ${timer.key}@${timer.at - T0}`] },
    effects: [{ kind: 'moment', trigger: 'probe', occurrence: timer.key, eventTime: timer.at, reason: {} }],
  }),
}

describe('operator harness', () => {
  it('applies an instant’s events before its timers, and fires timers in (at, key) order', () => {
    const h = new OperatorHarness(probe, { params: { timers: [['b', 10], ['a', 10], ['z', 5]] } })
    h.event(transaction('c', iso(T0), 1))
    h.event(transaction('c', iso(T0 + 10), 1))
    expect(h.timers).toEqual([{ key: 'a', at: T0 + 10 }, { key: 'b', at: T0 + 10 }])
    h.advanceTo(T0 + 10)
    expect(h.state.seen).toEqual(['event@0 approved=1', 'timer z@5', 'event@10 approved=2', 'timer a@10', 'timer b@10'])
    expect(h.moments.map((m) => m.occurrence)).toEqual(['z', 'a', 'b'])
    expect(h.timers).toEqual([])
  })

  it('validates input events and takes params from the catalogue entry when none are given', () => {
    const h = new OperatorHarness(probe, { params: { timers: [] } })
    expect(() => h.event({ ...lifecycle('c', 'activated', iso(T0)), stage: 'nonsense' })).toThrow()
    expect(() => new OperatorHarness(probe)).toThrow(/no catalogue entry probe/)
  })

  it('freezes the states it hands the operator, so a mutation throws', () => {
    const mutating: Operator<{ n: number }, unknown> = { ...probe, initial: () => ({ n: 0 }), onEvent: (state: { n: number }) => (state.n++, { state }) } as never
    const h = new OperatorHarness(mutating, { params: { timers: [] } })
    expect(() => h.event(transaction('c', iso(T0), 1))).toThrow()
  })

  it('holds an operator to the event types it declares: one it reacts to beyond them throws', () => {
    const declaresTransactions = { ...probe, eventTypes: ['transaction'] } as Operator<{ seen: string[] }, { timers: [string, number][] }>
    const h = new OperatorHarness(declaresTransactions, { params: { timers: [] } })
    h.event(transaction('c', iso(T0), 1))
    expect(() => h.event(lifecycle('c', 'activated', iso(T0 + 1)))).toThrow(/declares eventTypes transaction but reacted to a lifecycle event/)
  })

  it('every operator that declares its event types changes nothing on the others, over a simulated bank', () => {
    const events = simulateBank({ customers: 40, days: 150, start: new Date(Date.UTC(2025, 9, 1)), seed: 3 })
    const byCustomer = new Map<string, typeof events>()
    for (const e of events) byCustomer.set(e.customerId, [...(byCustomer.get(e.customerId) ?? []), e])
    const declaring = OPERATORS.filter((op) => op.eventTypes)
    expect(declaring.length).toBeGreaterThan(0)
    for (const op of declaring)
      for (const [customerId, own] of byCustomer) {
        const h = new OperatorHarness(op, { customerId })
        for (const e of own) h.event(e as unknown as Record<string, unknown>)
      }
  })
})
