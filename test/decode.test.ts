import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { decode, MAX_MESSAGE_BYTES } from '../pipeline/decode.ts'
import { containsPan, luhnValid, maskPans } from '../pipeline/pan.ts'
import { DeadLetter } from '../schemas/deadLetter.ts'
import { badInputSamples } from '../simulator/bank.ts'

const source = { topic: 'cards.transactions', partition: 2, offset: '41' }
const tx = {
  type: 'transaction',
  eventId: 'e1',
  occurredAt: '2026-11-01T10:00:00+08:00',
  customerId: 'cust_1',
  cardId: 'tok_1',
  amount: 12.5,
  status: 'approved',
  channel: 'pos',
  cardPresent: true,
  merchant: { id: 'm1', mcc: '5411', country: 'CN' },
}

describe('decode at the edge', () => {
  it('accepts a valid event and fills defaults', () => {
    const d = decode(JSON.stringify(tx), source, 'transaction')
    expect(d.ok && d.event).toMatchObject({ ...tx, currency: 'CNY' })
  })

  it.each([
    ['{"type":', 'invalid_json', '$'],
    ['[1]', 'not_an_object', '$'],
    [JSON.stringify({ ...tx, type: 'refund' }), 'unknown_type', '$.type'],
    [JSON.stringify({ ...tx, type: 'app', name: 'login' }), 'wrong_stream', '$.type'],
    [JSON.stringify({ ...tx, amount: 0 }), 'schema_violation', '$.amount'],
    [JSON.stringify({ ...tx, amount: 1.234 }), 'schema_violation', '$.amount'],
    [JSON.stringify({ ...tx, customerId: 'bad id!' }), 'schema_violation', '$.customerId'],
    [JSON.stringify({ ...tx, occurredAt: '2026-11-01 10:00' }), 'schema_violation', '$.occurredAt'],
    [JSON.stringify({ ...tx, merchant: { id: 'm', mcc: '54' } }), 'schema_violation', '$.merchant.mcc'],
    [JSON.stringify({ ...tx, cardId: '4111 1111 1111 1111' }), 'pan_detected', '$'],
    [JSON.stringify({ ...tx, merchant: { id: 'm', name: 'card 5500-0000-0000-0004' } }), 'pan_detected', '$'],
  ])('dead-letters %s as %s', (input, code, path) => {
    const d = decode(input, source, 'transaction', Date.parse('2026-11-02T00:00:00Z'))
    expect(d.ok).toBe(false)
    if (d.ok) return
    expect(DeadLetter.parse(d.deadLetter)).toEqual(d.deadLetter)
    expect(d.deadLetter.error.code).toBe(code)
    expect(d.deadLetter.error.path).toBe(path)
    expect(d.deadLetter.source).toEqual(source)
    expect(d.deadLetter.receivedAt).toBe('2026-11-02T00:00:00.000Z')
  })

  it('dead-letters values over 64 KiB', () => {
    const big = JSON.stringify({ ...tx, merchant: { id: 'm', name: 'x'.repeat(MAX_MESSAGE_BYTES) } })
    const d = decode(big, source, 'transaction')
    expect(!d.ok && d.deadLetter.error.code).toBe('too_large')
  })

  it('never lets a PAN into a dead letter', () => {
    const d = decode(JSON.stringify({ ...tx, cardId: '4111111111111111', note: 'also 4012888888881881' }), source)
    expect(d.ok).toBe(false)
    if (d.ok) return
    const text = JSON.stringify(d.deadLetter)
    expect(text).not.toMatch(/4111111111111111|4012888888881881/)
    expect(d.deadLetter.original).toContain('************1111')
    expect(d.deadLetter.original).toContain('************1881')
  })

  it('keeps non-UTF-8 bytes as masked base64', () => {
    const d = decode(Buffer.from([0xff, 0xfe, 0x7b]), source)
    expect(!d.ok && d.deadLetter.originalEncoding).toBe('base64')
  })

  it('gives every kind of bad sample a dead letter (none lost, none crash)', () => {
    for (const line of badInputSamples('2026-09-20T10:00:00Z')) expect(decode(line, source).ok).toBe(false)
  })

  it('never throws, whatever the bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const d = decode(Buffer.from(bytes), source)
        expect(typeof d.ok).toBe('boolean')
      }),
    )
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const d = decode(JSON.stringify(value) ?? 'null', source, 'transaction')
        expect(d.ok).toBe(false)
      }),
    )
  })
})

describe('PAN detection', () => {
  it('knows the Luhn check', () => {
    expect(luhnValid('4111111111111111')).toBe(true)
    expect(luhnValid('4111111111111112')).toBe(false)
  })

  it('finds runs of 13–19 digits that pass Luhn, and only those', () => {
    expect(containsPan('4111111111111111')).toBe(true)
    expect(containsPan('x378282246310005y')).toBe(true) // 15-digit Amex
    expect(containsPan('4111111111111112')).toBe(false)
    expect(containsPan('41111111111111110000')).toBe(false) // 20 digits: not a card number
    expect(containsPan('2026-11-28T10:00:00Z 1234')).toBe(false)
  })

  it('masks to the last four digits, leaving other digits alone', () => {
    expect(maskPans('pan 4111111111111111 amount 12345')).toBe('pan ************1111 amount 12345')
    expect(maskPans('4111-1111-1111-1111')).toBe('************1111')
  })
})
