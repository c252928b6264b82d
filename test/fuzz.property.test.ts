import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import YAML from 'yaml'
import { readFileSync } from 'node:fs'
import { decode, MAX_MESSAGE_BYTES, type Decoded } from '../pipeline/decode.ts'
import { CatalogError, DEFAULT_CATALOG_FILE, parseCatalog } from '../pipeline/catalog/index.ts'
import { decodeRecord, encodeRecord } from '../pipeline/store/codec.ts'
import { peekLine } from '../pipeline/sources/ndjson.ts'
import { Decision } from '../schemas/decision.ts'
import { RiskAlert } from '../schemas/alert.ts'
import { DeadLetter } from '../schemas/deadLetter.ts'
import { PipelineHarness, defaultCatalogForTests } from './helpers/harness.ts'

/**
 * Bad input of every shape, at the edge and past it: whatever arrives is an event the pipeline
 * processes without failing, or a dead letter with its reason; a catalogue is loaded or refused
 * with one readable line; a stored record that is not one fails cleanly.
 */

const source = { topic: 'cards.transactions', partition: 0, offset: '1' }

/** Strings that break naive code: surrogates, controls, joiners, right-to-left, very long. */
const nastyString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom('', '\u0000', '\ud800', '\udfff\ud800', '\u202e\u202d', '\ufeff', 'e\u0301', '👩‍👩‍👧‍👦', '𝕏'.repeat(64), '\\', '"', '</script>', 'null', '__proto__', 'constructor'),
  fc.string({ minLength: 200, maxLength: 2000 }),
)
/** Numbers at the edges of what JSON and the schemas take. */
const nastyNumber = fc.oneof(
  fc.constantFrom(0, -0, 0.01, 0.005, 1e-7, 1e15, 1e21, 1e300, Number.MAX_SAFE_INTEGER, -1, 90, -90, 180, -180, 90.0000001),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.integer(),
)
/** Times at and around the limits the edge sets, and ordinary ones. */
const nastyTime = fc.oneof(
  fc.constantFrom('1970-01-01T00:00:00Z', '1969-12-31T23:59:59.999Z', '2199-12-31T23:59:59.999Z', '2200-01-01T00:00:00Z', '0000-01-01T00:00:00Z', '9999-12-31T23:59:59.999+14:00', '2026-02-29T00:00:00Z', '2028-02-29T23:59:59.999-12:00', '2026-10-01T00:00:00+14:00', '2026-03-29T02:30:00+01:00'),
  fc.date({ min: new Date('2026-09-01T00:00:00Z'), max: new Date('2026-12-31T00:00:00Z'), noInvalidDate: true }).map((d) => d.toISOString()),
)
/** Mostly an ordinary value, sometimes a nasty one: events must get past the edge to reach the operators. */
const mostly = <T, U>(ordinary: fc.Arbitrary<T>, nasty: fc.Arbitrary<U>) => fc.oneof({ arbitrary: ordinary, weight: 5 }, { arbitrary: nasty, weight: 1 })

/** A value where a field's value goes: mostly of the right kind, sometimes not. */
const anyValue = fc.oneof(nastyString, nastyNumber, fc.boolean(), fc.constant(null), fc.jsonValue({ maxDepth: 3 }))

/** A JSON value nested `depth` deep, as text: parsers that recurse run out of stack. */
const deeplyNested = (depth: number) => '{"type":"transaction","merchant":' + '['.repeat(depth) + ']'.repeat(depth) + '}'

function shapedEvent() {
  const customerId = fc.constantFrom('c1', 'c2', 'c_3')
  const common = { eventId: fc.string({ minLength: 1, maxLength: 20 }), occurredAt: nastyTime, customerId }
  const transaction = fc.record({
    type: fc.constant('transaction'),
    ...common,
    cardId: fc.constantFrom('tok1', 'tok2'),
    amount: mostly(fc.integer({ min: 1, max: 20000 }), nastyNumber),
    status: fc.constantFrom('approved', 'declined', 'reversed'),
    channel: fc.constantFrom('pos', 'ecom', 'atm'),
    cardPresent: fc.boolean(),
    merchant: fc.record(
      { id: mostly(fc.constantFrom('m1', 'm2'), nastyString), name: nastyString, mcc: fc.constantFrom('5411', '6051', '7995', '0000', '9999'), country: fc.constantFrom('CN', 'US', 'ZZ'), lat: mostly(fc.double({ min: -90, max: 90, noNaN: true }), nastyNumber), lon: mostly(fc.double({ min: -180, max: 180, noNaN: true }), nastyNumber) },
      { requiredKeys: ['id'] },
    ),
    deviceId: mostly(fc.constantFrom('d1', 'd2'), nastyString),
  }, { requiredKeys: ['type', 'eventId', 'occurredAt', 'customerId', 'cardId', 'amount', 'status', 'channel', 'cardPresent', 'merchant'] })
  const appEvent = fc.record({
    type: fc.constant('app'),
    ...common,
    name: fc.constantFrom('login', 'consent_changed', 'device_registered', 'installment_applied', 'offer_clicked'),
    attributes: fc.oneof(
      fc.record({ channel: fc.constantFrom('sms', 'push', 'all', 'fax'), granted: fc.boolean() }),
      fc.constant({}),
      fc.dictionary(nastyString, fc.oneof(nastyString, nastyNumber, fc.boolean()), { maxKeys: 40 }),
    ),
  }, { requiredKeys: ['type', 'eventId', 'occurredAt', 'customerId', 'name'] })
  const lifecycleEvent = fc.record({
    type: fc.constant('lifecycle'),
    ...common,
    cardId: fc.constantFrom('tok1', 'tok2'),
    stage: fc.constantFrom('approved', 'issued', 'activated', 'bound', 'limit_changed', 'expiring', 'closed', 'blocked'),
    creditLimit: mostly(fc.integer({ min: 1000, max: 100000 }), nastyNumber),
    attributes: fc.record({ expiresOn: fc.constantFrom('2027-01-31', '2026-02-30', '0000-00-00'), wallet: nastyString }),
    profile: fc.record({
      birthDate: fc.constantFrom('2000-02-29', '1900-01-01', '2026-12-31', '0001-01-01'),
      timezone: fc.constantFrom('Asia/Shanghai', 'Pacific/Kiritimati', 'Pacific/Pago_Pago', 'America/St_Johns', 'UTC', 'Mars/Olympus'),
      homeLat: mostly(fc.double({ min: -90, max: 90, noNaN: true }), nastyNumber),
      homeLon: mostly(fc.double({ min: -180, max: 180, noNaN: true }), nastyNumber),
      tags: fc.array(nastyString, { maxLength: 5 }),
      preferredChannel: fc.constantFrom('sms', 'push', 'call', 'app_banner'),
    }, { requiredKeys: [] }),
  }, { requiredKeys: ['type', 'eventId', 'occurredAt', 'customerId', 'cardId', 'stage'] })
  return fc.oneof(transaction, appEvent, lifecycleEvent)
}

/** One field of a shaped event replaced by any value, or removed. */
const mutatedEvent = fc.tuple(shapedEvent(), fc.constantFrom('amount', 'occurredAt', 'customerId', 'merchant', 'attributes', 'profile', 'stage', 'type', 'eventId'), fc.option(anyValue, { nil: undefined })).map(([e, key, v]) => {
  const copy: Record<string, unknown> = { ...e }
  if (v === undefined) delete copy[key]
  else copy[key] = v
  return copy
})

/** Paths to numbers that are not finite, anywhere in a value. */
function nonFinite(v: unknown, path = '$'): string[] {
  if (typeof v === 'number') return Number.isFinite(v) ? [] : [`${path}=${v}`]
  if (v && typeof v === 'object') return Object.entries(v).flatMap(([k, c]) => nonFinite(c, `${path}.${k}`))
  return []
}

function expectOutcome(d: Decoded) {
  if (d.ok) return
  expect(DeadLetter.parse(d.deadLetter)).toEqual(d.deadLetter)
  expect(d.deadLetter.error.message.length).toBeGreaterThan(5)
}

describe('bad input at the edge and past it (property-based)', () => {
  it('decodes deep nesting, huge values and odd unicode to an event or a dead letter, never a throw', () => {
    for (const depth of [10, 1_000, 10_000, 30_000]) {
      const d = decode(deeplyNested(depth), source, 'transaction', null)
      expect(d.ok).toBe(false)
      expectOutcome(d)
    }
    const deepSurrogate = '{"type":"transaction","merchant":' + '['.repeat(30_000) + '"\\ud800"' + ']'.repeat(30_000) + '}'
    expectOutcome(decode(deepSurrogate, source, 'transaction', null))
    // Half a surrogate pair would not survive the state's UTF-8 encoding: refused at the edge.
    const lone = decode(JSON.stringify({ type: 'lifecycle', eventId: 'e', occurredAt: '2026-10-01T00:00:00Z', customerId: 'c', cardId: 't', stage: 'approved', profile: { tags: ['ok', 'x\ud800'] } }), source, 'lifecycle', null)
    expect(!lone.ok && lone.deadLetter.error).toMatchObject({ code: 'schema_violation', path: '$.profile.tags[1]' })
    expect(decode(JSON.stringify({ type: 'app', eventId: 'e', occurredAt: '2026-10-01T00:00:00Z', customerId: 'c', name: 'login', attributes: { note: '👩‍👩‍👧‍👦' } }), source, 'app', null).ok).toBe(true)
    const justUnder = JSON.stringify({ type: 'app', eventId: 'e', occurredAt: '2026-10-01T00:00:00Z', customerId: 'c', name: 'login', attributes: { note: 'ü'.repeat((MAX_MESSAGE_BYTES - 200) / 2) } })
    expect(Buffer.byteLength(justUnder)).toBeLessThan(MAX_MESSAGE_BYTES)
    expect(decode(justUnder, source, 'app', null).ok).toBe(true)
    fc.assert(
      fc.property(mutatedEvent, (e) => {
        const text = JSON.stringify(e)
        expectOutcome(decode(text, source, undefined, Date.parse('2026-12-31T00:00:00Z')))
        expectOutcome(decode(Buffer.from(text, 'utf16le'), source))
        expect(() => peekLine(text)).not.toThrow()
      }),
      { numRuns: 2000 },
    )
  })

  it('runs whatever the edge accepts through every operator and the policy without failing', async () => {
    let accepted = 0
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof(shapedEvent(), mutatedEvent), { minLength: 1, maxLength: 25 }), async (candidates) => {
        const h = new PipelineHarness(defaultCatalogForTests(), { allowedLateness: 365 * 86_400_000 })
        const events = candidates.map((c, i) => decode(JSON.stringify({ ...c, eventId: `e${i}` }), source, undefined, null)).flatMap((d) => (d.ok ? [d.event] : []))
        accepted += events.length
        // In arrival order, a few at a time, then the end of input: timers fire, decisions are made.
        for (let i = 0; i < events.length; i += 4) await h.send(...(events.slice(i, i + 4) as unknown as Record<string, unknown>[]))
        await h.finish()
        for (const d of h.decisions) expect(Decision.parse(d)).toEqual(d)
        for (const a of h.alerts) expect(RiskAlert.parse(a)).toEqual(a)
        // Every figure that leaves is a finite number: JSON would turn the rest into null.
        expect(nonFinite([h.decisions, h.alerts, h.conversions])).toEqual([])
        // What was stored reads back as it was written.
        for (const id of ['c1', 'c2', 'c_3']) {
          const rec = (await h.store.load(0, [id], 0)).customers.get(id)
          if (rec) expect(decodeRecord(encodeRecord(rec))).toEqual(rec)
        }
      }),
      { numRuns: 300 },
    )
    expect(accepted).toBeGreaterThan(400)
  })

  it('fails cleanly on stored bytes that are not a record', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        try {
          decodeRecord(Buffer.from(bytes))
        } catch (e) {
          expect(e).toBeInstanceOf(Error)
        }
      }),
      { numRuns: 3000 },
    )
  })
})

describe('catalogue loader (property-based)', () => {
  const shipped = YAML.parse(readFileSync(DEFAULT_CATALOG_FILE, 'utf8'))
  /** Every path to a value in the shipped catalogue. */
  const paths: string[][] = []
  const walk = (v: unknown, path: string[]) => {
    if (v && typeof v === 'object') for (const [k, c] of Object.entries(v)) walk(c, [...path, k])
    if (path.length) paths.push(path)
  }
  walk(shipped, [])

  const loadsOrSaysWhy = (text: string) => {
    try {
      parseCatalog(text, 'fuzz.yaml')
    } catch (e) {
      expect(e).toBeInstanceOf(CatalogError)
      const message = (e as Error).message
      expect(message.startsWith('fuzz.yaml: ')).toBe(true)
      expect(message).not.toContain('\n')
      expect(message.length).toBeLessThan(2000)
    }
  }

  it('loads or refuses with one line, whatever the text', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 400 }), loadsOrSaysWhy), { numRuns: 1500 })
    for (const text of ['', '~', '[]', '- a', 'a: &x [*x]', '{'.repeat(5000), '!!js/function "x"', 'version: 1\n'.repeat(3000), deeplyNested(20_000)]) loadsOrSaysWhy(text)
  })

  it('loads or refuses with one line the shipped catalogue with any value changed or removed', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom(...paths), fc.option(anyValue, { nil: undefined })), { minLength: 1, maxLength: 3 }), fc.constantFrom('yaml', 'json'), (edits, format) => {
        const c = structuredClone(shipped)
        for (const [path, v] of edits) {
          let target = c
          for (const k of path.slice(0, -1)) target = target?.[k]
          if (!target || typeof target !== 'object') continue
          if (v === undefined) delete target[path[path.length - 1]]
          else target[path[path.length - 1]] = v
        }
        loadsOrSaysWhy(format === 'json' ? JSON.stringify(c) : YAML.stringify(c))
      }),
      { numRuns: 1500 },
    )
  })
})
