import { describe, expect, it } from 'vitest'
import { CircuitBreaker, Slots, TokenBucket, type CircuitChange } from '../sinks/webhook/endpoint.ts'
import { parseCatalog } from '../pipeline/catalog/index.ts'
import { readFileSync } from 'node:fs'
import { DEFAULT_CATALOG_FILE } from '../pipeline/catalog/index.ts'

describe('CircuitBreaker', () => {
  const setup = () => {
    let now = 0
    const changes: CircuitChange[] = []
    const breaker = new CircuitBreaker(() => ({ failures: 3, openFor: 1_000 }), () => now)
    return { breaker, changes, on: (c: CircuitChange) => void changes.push(c), advance: (ms: number) => (now += ms) }
  }

  it('opens after the set number of consecutive failures; a success in between starts the count again', () => {
    const { breaker, changes, on } = setup()
    breaker.failed(on)
    breaker.failed(on)
    breaker.succeeded(on)
    breaker.failed(on)
    breaker.failed(on)
    expect(breaker.state()).toBe('closed')
    breaker.failed(on)
    expect(breaker.state()).toBe('open')
    expect(changes).toEqual([{ to: 'open', failures: 3, reopened: false }])
    expect(breaker.admit()).toEqual({ ok: false, probe: false })
  })

  it('lets one probe through after the cool-down: its failure opens it again, its success closes it', () => {
    const { breaker, changes, on, advance } = setup()
    for (let i = 0; i < 3; i++) breaker.failed(on)
    advance(999)
    expect(breaker.admit(on).ok).toBe(false)
    advance(1)
    expect(breaker.admit(on)).toEqual({ ok: true, probe: true })
    expect(breaker.admit(on)).toEqual({ ok: false, probe: false })
    breaker.failed(on)
    expect(breaker.state()).toBe('open')
    expect(breaker.openSince).toBe(0)
    advance(1_000)
    expect(breaker.admit(on).probe).toBe(true)
    advance(250)
    breaker.succeeded(on)
    expect(breaker.state()).toBe('closed')
    expect(breaker.openSince).toBeNull()
    expect(changes.map((c) => c.to)).toEqual(['open', 'half_open', 'open', 'half_open', 'closed'])
    expect(changes.at(-1)).toEqual({ to: 'closed', openMs: 2_250 })
  })
})

describe('TokenBucket', () => {
  it('allows a second of burst, then the rate', () => {
    let now = 0
    const bucket = new TokenBucket(() => now)
    const taken = () => Array.from({ length: 10 }, () => bucket.take(4)).filter(Boolean).length
    expect(taken()).toBe(4)
    expect(bucket.waitMs(4)).toBe(250)
    now += 500
    expect(taken()).toBe(2)
    expect(bucket.take(undefined)).toBe(true)
  })
})

describe('Slots', () => {
  it('holds at most the limit, in order, and follows a changed limit', async () => {
    let limit = 2
    const slots = new Slots(() => limit)
    const order: number[] = []
    const hold = (n: number) => slots.acquire().then(() => void order.push(n))
    await Promise.all([hold(1), hold(2)])
    const third = hold(3)
    const fourth = hold(4)
    await new Promise((r) => setTimeout(r, 5))
    expect(order).toEqual([1, 2])
    limit = 3
    slots.release()
    await Promise.all([third, fourth])
    expect(order).toEqual([1, 2, 3, 4])
  })
})

describe('catalogue delivery section', () => {
  const base = readFileSync(DEFAULT_CATALOG_FILE, 'utf8')

  it('has defaults for every channel when left out', () => {
    const catalog = parseCatalog(base.replace(/^delivery:[\s\S]*?\n(?=triggers:)/m, ''), 'test.yaml')
    expect(catalog.delivery.channels.sms).toEqual({ concurrency: 8 })
    expect(catalog.delivery.circuitBreaker).toEqual({ failures: 5, openFor: 30_000 })
    expect(catalog.delivery.degradedAfter).toBe(120_000)
  })

  it('reads the shipped limits', () => {
    const catalog = parseCatalog(base, 'default.yaml')
    expect(catalog.delivery.channels.sms).toEqual({ ratePerSecond: 50, concurrency: 8 })
  })

  it('says in one line what is wrong with a bad limit', () => {
    expect(() => parseCatalog(base.replace('sms: { ratePerSecond: 50, concurrency: 8 }', 'sms: { ratePerSecond: 0, concurrency: 8 }'), 'c.yaml')).toThrow(
      'c.yaml: delivery.channels.sms.ratePerSecond: must be above 0 (leave it out for no limit)',
    )
    expect(() => parseCatalog(base.replace('openFor: 30s', 'openFor: soon'), 'c.yaml')).toThrow('delivery.circuitBreaker.openFor: "soon" is not a duration')
    expect(() => parseCatalog(base.replace('degradedAfter: 2m', 'degradedAfter: 10s'), 'c.yaml')).toThrow('delivery.degradedAfter: must be at least circuitBreaker.openFor (30s)')
    expect(() => parseCatalog(base.replace('push: { concurrency: 16 }', 'push: { concurency: 16 }'), 'c.yaml')).toThrow(/delivery\.channels\.push: Unrecognized key/)
  })
})
