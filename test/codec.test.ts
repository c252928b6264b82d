import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { decodeRecord, encodeRecord, encodeRecordDeflated } from '../pipeline/store/codec.ts'
import { TABLE } from '../pipeline/store/compact.ts'
import type { CustomerRecord } from '../pipeline/store/types.ts'

/** Records stay readable in every format ever written, whatever the current one is. */

const record = {
  v: 1,
  seen: [['tx-1', 1790000000000]],
  profile: { timezone: 'Asia/Shanghai', homeCountry: 'CN', consent: {} },
  facts: { cards: { tok_1: { stage: 'activated' } } },
  policy: {},
  ops: { activation: { cards: { tok_1: { startedAt: 1790000000000, activatedAt: 1790000100000 } } }, 'risk.velocity': { h: [], c: 1790000000000 } },
} as unknown as CustomerRecord

describe('customer record codec', () => {
  it('reads a record written in format 1 (dictionary v1, the operators under their former names)', () => {
    const v1 = Buffer.from('MavGUoMbKukYmlsawEEsdSrxWpx1nSH2yg6cFuDFfi28oMCT4A0xUjySPzASO1jOEBJFOPM9LH8jGQQMNwA=', 'base64')
    expect(String.fromCharCode(v1[0])).toBe('1')
    expect(decodeRecord(v1)).toEqual(record)
  })

  it('reads a record written in format 2 (dictionary v2) and in plain JSON', () => {
    const v2 = encodeRecordDeflated(record)
    expect(String.fromCharCode(v2[0])).toBe('2')
    expect(decodeRecord(v2)).toEqual(record)
    expect(decodeRecord(Buffer.from(JSON.stringify(record)))).toEqual(record)
  })

  it('writes format 3 (compact) and reads it back, smaller than JSON', () => {
    const stored = encodeRecord(record)
    expect(String.fromCharCode(stored[0])).toBe('3')
    expect(decodeRecord(stored)).toEqual(record)
    expect(stored.length).toBeLessThan(JSON.stringify(record).length / 2)
  })

  it('reads a record written in format 3 by an earlier release: its table never changes', () => {
    const v3 = Buffer.from(FORMAT_3_RECORD, 'base64')
    expect(decodeRecord(v3)).toEqual(compactSample)
    expect(encodeRecord(compactSample as unknown as CustomerRecord).toString('base64')).toBe(FORMAT_3_RECORD)
  })

  it('format 3 holds exactly what a JSON round trip holds, for any JSON-like value', () => {
    const value = fc.oneof(
      fc.jsonValue(),
      fc.double(),
      fc.integer({ min: -(2 ** 53) + 1, max: 2 ** 53 - 1 }),
      fc.constantFrom(undefined, 1.5e12, -1.5e12, 39.83, 0.1 + 0.2, -0, 2 ** 60, TABLE[3], '__proto__'),
    )
    const record = fc.dictionary(fc.oneof(fc.string(), fc.constantFrom(...TABLE, '__proto__')), fc.oneof(value, fc.array(value), fc.dictionary(fc.string(), value)))
    fc.assert(
      fc.property(record, (r) => {
        const back = decodeRecord(encodeRecord(r as unknown as CustomerRecord))
        expect(JSON.stringify(back)).toBe(JSON.stringify(r))
        expect(back).toStrictEqual(JSON.parse(JSON.stringify(r)))
      }),
      { numRuns: 500 },
    )
  })

  it('refuses a truncated or damaged format 3 record instead of reading garbage', () => {
    const stored = encodeRecord(record)
    expect(() => decodeRecord(stored.subarray(0, stored.length - 3))).toThrow(/compact record/)
    expect(() => decodeRecord(Buffer.concat([stored, Buffer.from([0])]))).toThrow(/bytes left/)
  })

  it('refuses a format it does not know, naming its first byte', () => {
    expect(() => decodeRecord(Buffer.from('9xyz'))).toThrow(/unknown format \(first byte 0x39\)/)
  })
})

/** A record with a bit of everything, and its bytes as format 3 wrote them when it was introduced. */
const compactSample = {
  v: 1,
  seen: [['cust_000730-a362.0', 1790582014000], ['cust_000730-a362.0.p0', 1790582058000]],
  profile: { timezone: 'Asia/Shanghai', homeCountry: 'CN', consent: { sms: false }, birthDate: '1973-05-28', homeLat: 39.83, homeLon: 116.43, segment: 'mass_market' },
  facts: { cards: { tok_2bmkll: { stage: 'limit_changed', creditLimit: 20000 } }, approved: 291, spend: { day: 20724, d: [80, 0, 271], block: 2068, b: [1304] }, alerts: [{ at: 1781510460000, severity: 'low' }], month: { month: '2026-09', cents: 215303 } },
  policy: { lastContact: { churn_retention: 1787709600000 }, contacts: [1787709600000] },
  ops: { amount_anomaly: { w: 1296000000, b: 1381, k: [[7, 69205, 110943]] }, velocity: { h: [{ t: 1790582014000, id: 'x', a: -12.5 }] }, other: { ratio: 0.1 + 0.2, big: 2 ** 60, none: null, yes: true } },
}
const FORMAT_3_RECORD =
  'Mw4GEAMBEQ0CDQILEmN1c3RfMDAwNzMwLWEzNjIuMAXggIrwnGgNAgsVY3VzdF8wMDA3MzAtYTM2Mi4wLnAwBcCvBRIOBxrIG8EcDgG0AR0LCjE5NzMtMDUtMjgfCJ4+IAj2tQEhvBMOBSQOAQsKdG9rXzJibWtsbA4CJasmA6CcASkDowIqDgQrA/ShASwNAwNQAwADjwItA5QQLg0BA5gKMQ0BDgIyBd/mrMtDM7AvDgIvCwcyMDI2LTA5MAOHkg0UDgI2DgFwBcD6+pcuNw0BBQAYDgN3DgNPA4DI/ekELgPlClANAQ0DAwcD1ZwEA9/iBnkOAVsNAQ4DXgXgvKyzFV0LAXhjB/kBCwVvdGhlcg4ECwVyYXRpbwY0MzMzMzPTPwsDYmlnBgAAAAAAALBDCwRub25lAAsDeWVzAg=='
