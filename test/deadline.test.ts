import { describe, expect, it } from 'vitest'
import { deadlines } from '../operators/deadline.ts'

const DELAY = 100
const w = deadlines('openedAt')
const kept = deadlines('openedAt', { keepClosed: true })
const opened = w.open({}, 'a', 1000, DELAY).state

describe('deadline window (pure)', () => {
  it('opens once per card: a timer at open + delay, and a repeated opening keeps the first window', () => {
    expect(w.open({}, 'a', 1000, DELAY)).toEqual({ state: { cards: { a: { openedAt: 1000 } } }, effects: [{ kind: 'setTimer', key: 'a', at: 1100 }] })
    expect(w.open(opened, 'a', 1050, DELAY)).toEqual({ state: opened })
  })

  it('is resolved only inside the half-open window [start, due)', () => {
    expect(w.resolve(opened, 'a', 1099, DELAY)).toEqual({ state: { cards: { a: { done: true } } }, effects: [{ kind: 'cancelTimer', key: 'a' }] })
    expect(w.resolve(opened, 'a', 1100, DELAY)).toEqual({ state: opened })
  })

  it('resolved before it opened, the card is done and never opens', () => {
    const early = w.resolve({}, 'a', 900, DELAY).state
    expect(early).toEqual({ cards: { a: { done: true } } })
    expect(w.open(early, 'a', 1000, DELAY)).toEqual({ state: early })
  })

  it('resolveOpen resolves every card whose window holds the time, and leaves unopened cards alone', () => {
    const two = w.open(w.open({}, 'a', 1000, DELAY).state, 'b', 1050, DELAY).state
    expect(w.resolveOpen(two, 1120, DELAY)).toEqual({ state: { cards: { a: { openedAt: 1000 }, b: { done: true } } }, effects: [{ kind: 'cancelTimer', key: 'b' }] })
    expect(w.resolveOpen({}, 1120, DELAY)).toEqual({ state: {}, effects: [] })
  })

  it('a close before the due time cancels; at or after it the timer still fires, then the card is forgotten', () => {
    expect(w.close(opened, 'a', 1099, DELAY)).toEqual({ state: {}, effects: [{ kind: 'cancelTimer', key: 'a' }] })
    const closedLate = w.close(opened, 'a', 1100, DELAY)
    expect(closedLate).toEqual({ state: { cards: { a: { openedAt: 1000, closed: true } } } })
    expect(w.fire(closedLate.state, 'a')).toEqual({ state: {}, expired: { cardId: 'a', startedAt: 1000 } })
  })

  it('with keepClosed, a card closed late stays done after its timer, so opening it again does not re-arm', () => {
    const closedLate = kept.close(opened, 'a', 1100, DELAY).state
    const fired = kept.fire(closedLate, 'a').state
    expect(fired).toEqual({ cards: { a: { done: true } } })
    expect(kept.open(fired, 'a', 1200, DELAY)).toEqual({ state: fired })
  })

  it('fires once, and not for a resolved, closed or unknown card', () => {
    const fired = w.fire(opened, 'a')
    expect(fired).toEqual({ state: { cards: { a: { done: true } } }, expired: { cardId: 'a', startedAt: 1000 } })
    expect(w.fire(fired.state, 'a')).toEqual({ state: fired.state })
    expect(w.fire({}, 'a')).toEqual({ state: {} })
  })

  it('leaves the state it is given as it was', () => {
    const frozen = structuredClone(opened)
    w.resolve(opened, 'a', 1001, DELAY)
    w.close(opened, 'a', 1101, DELAY)
    w.fire(opened, 'a')
    expect(opened).toEqual(frozen)
  })
})
