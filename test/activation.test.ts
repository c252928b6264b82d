import { describe, expect, it } from 'vitest'
import { parseCatalog } from '../pipeline/catalog/index.ts'
import { PipelineHarness, lifecycle, app } from './helpers/harness.ts'
import { testCatalogYaml } from './helpers/services.ts'
import { activationReminder } from '../operators/activation.ts'
import { OperatorHarness } from './helpers/operatorHarness.ts'

const HOUR = 3_600_000
const at = (iso: string, hours = 0) => new Date(Date.parse(iso) + hours * HOUR).toISOString()
const T0 = '2026-10-01T02:00:00.000Z'

describe('activation_reminder operator (pure)', () => {
  const harness = () => new OperatorHarness(activationReminder, { params: { delay: '72h' } })
  const ev = (stage: string, hours: number) => lifecycle('c', stage, at(T0, hours))

  it('sets a timer at approval and emits a moment when it fires without activation', () => {
    const t = Date.parse(T0)
    const h = harness()
    expect(h.event(ev('approved', 0))).toEqual([{ kind: 'setTimer', key: 'tok_c', at: t + 72 * HOUR }])
    expect(h.advanceTo(t + 72 * HOUR)).toEqual([
      expect.objectContaining({ kind: 'moment', trigger: 'activation_reminder', cardId: 'tok_c', eventTime: t + 72 * HOUR, reason: { approvedAt: T0, hoursWithoutActivation: 72 } }),
    ])
    // A second firing of the same occurrence yields nothing.
    expect(h.fire({ key: 'tok_c', at: t + 72 * HOUR })).toEqual([])
    expect(h.moments).toHaveLength(1)
  })

  it('cancels on activation before the due time, not after it', () => {
    const inTime = harness()
    inTime.event(ev('approved', 0))
    expect(inTime.event(ev('activated', 10))).toEqual([{ kind: 'cancelTimer', key: 'tok_c' }])
    expect(inTime.timers).toEqual([])
    const late = harness()
    late.event(ev('approved', 0))
    late.advanceTo(Date.parse(at(T0, 72)) - 1)
    // At the due time itself the activation is applied first, and is too late to cancel.
    expect(late.event(ev('activated', 72))).toEqual([])
    late.advanceTo(at(T0, 73))
    expect(late.moments).toHaveLength(1)
  })

  it('does not return the state object it was given mutated', () => {
    const h = harness()
    const s = h.state
    h.event(ev('approved', 0))
    expect(s).toEqual({})
  })
})

describe('activation_reminder through the processor, in event time', () => {
  it('fires exactly 72 h after approval when the watermark passes it', async () => {
    const h = new PipelineHarness()
    await h.send(lifecycle('c1', 'approved', T0))
    await h.advanceTo(Date.parse(at(T0, 72)) - 1)
    expect(h.decisions).toHaveLength(0)
    await h.advanceTo(at(T0, 72))
    expect(h.decisions).toHaveLength(1)
    expect(h.decisions[0]).toMatchObject({ trigger: 'activation_reminder', customerId: 'c1', outcome: 'send', eventTime: at(T0, 72), decidedAt: at(T0, 72), sendAt: at(T0, 72) })
  })

  it('fires from the next event of any customer, not only on idle advance', async () => {
    const h = new PipelineHarness()
    await h.send(lifecycle('c1', 'approved', T0))
    await h.send(app('someone_else', 'login', at(T0, 100)))
    expect(h.decisions.map((d) => d.customerId)).toEqual(['c1'])
  })

  it('does not fire when the card was activated in time, even within the same batch', async () => {
    const h = new PipelineHarness()
    await h.send(lifecycle('c1', 'approved', T0), lifecycle('c1', 'activated', at(T0, 71.9)), app('x', 'login', at(T0, 200)))
    expect(h.decisions).toHaveLength(0)
  })

  it('fires when activation comes after the due time, even in the same batch', async () => {
    const h = new PipelineHarness()
    await h.send(lifecycle('c1', 'approved', T0), lifecycle('c1', 'activated', at(T0, 73)))
    await h.advanceTo(at(T0, 200))
    expect(h.decisions).toHaveLength(1)
  })

  it('starts the clock at the first of approved and issued, once per card', async () => {
    const h = new PipelineHarness()
    await h.send(lifecycle('c1', 'approved', T0), lifecycle('c1', 'issued', at(T0, 30)))
    await h.advanceTo(at(T0, 500))
    expect(h.decisions.map((d) => d.eventTime)).toEqual([at(T0, 72)])
  })

  it('gives the same decision ids for the same input, whatever the batch cuts', async () => {
    const events = [
      lifecycle('a', 'approved', T0),
      lifecycle('b', 'approved', at(T0, 1)),
      lifecycle('c', 'issued', at(T0, 2)),
      lifecycle('b', 'activated', at(T0, 5)),
      app('a', 'login', at(T0, 80)),
      app('z', 'login', at(T0, 200)),
    ]
    const one = new PipelineHarness()
    await one.send(...events)
    const many = new PipelineHarness()
    for (const e of events) await many.send(e)
    expect(many.decisions).toEqual(one.decisions)
    expect(one.decisions.map((d) => d.customerId).sort()).toEqual(['a', 'c'])
  })

  it('honours the delay from the catalogue', async () => {
    const yaml = testCatalogYaml().replace('delay: 72h', 'delay: 24h')
    const h = new PipelineHarness(parseCatalog(yaml, 'test'))
    await h.send(lifecycle('c1', 'approved', T0))
    await h.advanceTo(at(T0, 24))
    expect(h.decisions[0]).toMatchObject({ eventTime: at(T0, 24), reason: { hoursWithoutActivation: 24 } })
  })
})

describe('activation_reminder state from the previous release (version 1)', () => {
  it('is version 2 and migrates version-1 cards: reminded or activated are done, an open window keeps its start', () => {
    expect(activationReminder.version).toBe(2)
    const v1 = {
      cards: {
        waiting: { startedAt: 1000 },
        reminded: { startedAt: 1000, reminded: true },
        remindedThenActivated: { startedAt: 1000, activatedAt: 9000, reminded: true },
        activatedInTime: { startedAt: 1000, activatedAt: 2000 },
        activatedBeforeApproval: { activatedAt: 500 },
      },
    }
    expect(activationReminder.migrate!(v1, 1)).toEqual({
      cards: {
        waiting: { startedAt: 1000 },
        reminded: { done: true },
        remindedThenActivated: { done: true },
        activatedInTime: { done: true },
        activatedBeforeApproval: { done: true },
      },
    })
    expect(activationReminder.migrate!({ cards: {} }, 1)).toEqual({})
    const v2 = { cards: { a: { startedAt: 1000 } } }
    expect(activationReminder.migrate!(v2, 2)).toBe(v2)
  })

  it('a migrated waiting card still fires, and a migrated done card does not', () => {
    const state = activationReminder.migrate!({ cards: { tok_a: { startedAt: 0 }, tok_b: { startedAt: 0, activatedAt: HOUR } } }, 1)
    // tok_b's timer was cancelled by its activation; a stale delivery of it must do nothing either.
    const h = new OperatorHarness(activationReminder, { params: { delay: '72h' }, state, timers: [{ key: 'tok_a', at: 72 * HOUR }] })
    h.advanceTo(100 * HOUR)
    expect(h.moments).toEqual([expect.objectContaining({ kind: 'moment', occurrence: 'tok_a@0', cardId: 'tok_a' })])
    expect(h.fire({ key: 'tok_b', at: 72 * HOUR })).toEqual([])
  })
})
