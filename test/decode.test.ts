import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { decode, MAX_MESSAGE_BYTES, type Decoded } from '../pipeline/decode.ts'
import { containsPan, luhnValid, maskPans } from '../pipeline/pan.ts'
import { DeadLetter, DeadLetterCode } from '../schemas/deadLetter.ts'
import { InputEvent } from '../schemas/events.ts'
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

  it('makes every input an event or a dead letter with a reason, whatever the bytes (fuzz)', () => {
    let events = 0
    let deadLetters = 0
    /** Either a valid event of the stream's type, or a dead letter naming its source, code and reason. */
    const outcome = (d: Decoded, expected?: string) => {
      if (d.ok) {
        events++
        expect(InputEvent.parse(d.event)).toEqual(d.event)
        if (expected) expect(d.event.type).toBe(expected)
        return
      }
      deadLetters++
      expect(DeadLetter.parse(d.deadLetter)).toEqual(d.deadLetter)
      expect(DeadLetterCode.options).toContain(d.deadLetter.error.code)
      expect(d.deadLetter.error.message.trim().length).toBeGreaterThan(5)
      expect(d.deadLetter.error.path).toMatch(/^\$/)
      expect(d.deadLetter.source).toEqual(source)
    }
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        outcome(decode(Buffer.from(bytes), source))
      }),
    )
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const d = decode(JSON.stringify(value) ?? 'null', source, 'transaction')
        expect(d.ok).toBe(false)
        outcome(d, 'transaction')
      }),
    )
    // A valid transaction with fields dropped or replaced by any JSON: some stay valid, most not.
    const keys = [...Object.keys(tx), 'currency', 'merchant.name', 'merchant.mcc', 'merchant.country']
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom(...keys), fc.option(fc.jsonValue(), { freq: 4, nil: undefined })), { maxLength: 3 }), fc.constantFrom(undefined, 'transaction', 'app'), (edits, expected) => {
        const value: Record<string, any> = structuredClone(tx)
        for (const [key, v] of edits) {
          const [outer, inner] = key.split('.')
          const target = inner ? (value[outer] = typeof value[outer] === 'object' && value[outer] ? value[outer] : {}) : value
          if (v === undefined) delete target[inner ?? outer]
          else target[inner ?? outer] = v
        }
        outcome(decode(JSON.stringify(value), source, expected as 'transaction' | 'app' | undefined), expected)
      }),
      { numRuns: 500 },
    )
    // Both outcomes were exercised.
    expect(events).toBeGreaterThan(20)
    expect(deadLetters).toBeGreaterThan(500)
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
