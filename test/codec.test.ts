import { describe, expect, it } from 'vitest'
import { decodeRecord, encodeRecord } from '../pipeline/store/codec.ts'
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

  it('writes the current format and reads it back; plain JSON is read too', () => {
    const stored = encodeRecord(record)
    expect(String.fromCharCode(stored[0])).toBe('2')
    expect(decodeRecord(stored)).toEqual(record)
    expect(decodeRecord(Buffer.from(JSON.stringify(record)))).toEqual(record)
  })

  it('refuses a format it does not know, naming its first byte', () => {
    expect(() => decodeRecord(Buffer.from('9xyz'))).toThrow(/unknown format \(first byte 0x39\)/)
  })
})
