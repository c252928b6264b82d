import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { boundOriginal, decode, MAX_MESSAGE_BYTES, MAX_ORIGINAL_BYTES, type Decoded } from '../pipeline/decode.ts'
import { containsPan, luhnValid, maskPanBytes, maskPans } from '../pipeline/pan.ts'
import { DeadLetter, DeadLetterCode } from '../schemas/deadLetter.ts'
import { InputEvent } from '../schemas/events.ts'
import { badInputSamples } from '../simulator/bank.ts'
import { leaksPan } from './helpers/leaks.ts'

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

  it('keeps at most the first 16 KiB of the original, and says so', () => {
    const small = decode('{"type":', source)
    expect(!small.ok && small.deadLetter).toMatchObject({ original: '{"type":', originalBytes: 8, originalTruncated: false })
    // Near the broker's 1 MiB message limit, in UTF-8 and not: the dead letter stays far below it.
    for (const bytes of [Buffer.alloc((1 << 20) - 100, 'é'), Buffer.concat([Buffer.from([0xff]), Buffer.alloc(1 << 20, 'x')])]) {
      const d = decode(bytes, source)
      expect(d.ok).toBe(false)
      if (d.ok) return
      expect(DeadLetter.parse(d.deadLetter)).toEqual(d.deadLetter)
      expect(d.deadLetter).toMatchObject({ originalBytes: bytes.length, originalTruncated: true })
      const kept = Buffer.from(d.deadLetter.original, d.deadLetter.originalEncoding)
      expect(kept.length).toBeLessThanOrEqual(MAX_ORIGINAL_BYTES)
      expect(kept.length).toBeGreaterThan(MAX_ORIGINAL_BYTES - 4)
      expect(bytes.subarray(0, kept.length)).toEqual(kept)
      expect(Buffer.byteLength(JSON.stringify(d.deadLetter))).toBeLessThan(32 * 1024)
    }
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

  // Card numbers as the text path finds them: one run, or groups split by spaces or dashes.
  const PAN = '4539148803436467'
  const written = [PAN, '4539 1488 0343 6467', '4539-1488-0343-6467']

  it.each(written)('masks a card number (%s) in bytes that are not UTF-8, before they are base64 encoded', (pan) => {
    const bytes = Buffer.concat([Buffer.from(`{"type":"transaction","cardId":"${pan}","note":"`), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"}')])
    const d = decode(bytes, source, 'transaction')
    expect(d.ok).toBe(false)
    if (d.ok) return
    expect(DeadLetter.parse(d.deadLetter)).toEqual(d.deadLetter)
    expect(d.deadLetter.error.code).toBe('pan_detected')
    expect(d.deadLetter).toMatchObject({ originalEncoding: 'base64', originalBytes: bytes.length, originalTruncated: false })
    const original = Buffer.from(d.deadLetter.original, 'base64')
    expect(original.toString('latin1')).toContain('"cardId":"************6467"')
    // Everything else is kept byte for byte.
    expect(original.subarray(original.length - 5)).toEqual(Buffer.from([0xff, 0xfe, 0xc3, 0x22, 0x7d]))
    expect(leaksPan(JSON.stringify(d.deadLetter), PAN)).toBe(false)
  })

  it.each(written)('masks a card number (%s) in an oversized message, whatever its encoding', (pan) => {
    for (const tail of [Buffer.from('x'), Buffer.from([0xff])]) {
      const bytes = Buffer.concat([Buffer.from(`{"cardId":"${pan}","pad":"${'x'.repeat(MAX_MESSAGE_BYTES)}`), tail])
      const d = decode(bytes, source, 'transaction')
      expect(!d.ok && d.deadLetter.error.code).toBe('too_large')
      if (d.ok) return
      expect(leaksPan(JSON.stringify(d.deadLetter), PAN)).toBe(false)
      const original = Buffer.from(d.deadLetter.original, d.deadLetter.originalEncoding)
      expect(original.toString('latin1')).toContain('************6467')
    }
  })

  it('masks the bytes as the text path masks the same text read as UTF-8', () => {
    const piece = fc.constantFrom(...written, '4111 1111 1111 1111', '12345', ' ', '-', '7', 'é', '中', '💳', '"', 'a')
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 12 }), (pieces) => {
        const text = pieces.join('')
        expect(maskPanBytes(Buffer.from(text, 'utf8')).toString('utf8')).toBe(maskPans(text))
      }),
    )
  })

  it('never lets a planted card number into a dead letter, whatever bytes surround it', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.constantFrom(...written), fc.uint8Array({ maxLength: 64 }), (before, pan, after) => {
        // A digit right next to it makes a longer run: no longer a card number, by the rule.
        const bytes = Buffer.concat([Buffer.from(before), Buffer.from(` ${pan} `), Buffer.from(after)])
        const d = decode(bytes, source)
        expect(d.ok).toBe(false)
        if (!d.ok) expect(leaksPan(JSON.stringify(d.deadLetter), PAN)).toBe(false)
      }),
    )
  })

  it('takes event times from 1970 to 2199 only', () => {
    const at = (occurredAt: string) => decode(JSON.stringify({ ...tx, occurredAt }), source, 'transaction', null)
    for (const ok of ['1970-01-01T00:00:00Z', '2199-12-31T23:59:59.999Z', '2026-11-01T10:00:00+08:00']) expect(at(ok).ok).toBe(true)
    for (const bad of ['0000-01-01T00:00:00Z', '1969-12-31T23:59:59.999Z', '2200-01-01T00:00:00Z', '9999-12-31T23:59:59.999+14:00']) {
      const d = at(bad)
      expect(!d.ok && d.deadLetter.error).toMatchObject({ code: 'schema_violation', path: '$.occurredAt', message: '$.occurredAt: must be between 1970-01-01 and 2199-12-31' })
    }
  })

  it('dead-letters a live event from further ahead than the clock skew allows, and replay takes it', () => {
    const now = Date.parse('2026-11-01T02:00:00Z') // tx happened at 02:00Z (10:00+08:00)
    const ahead = (minutes: number) => JSON.stringify({ ...tx, occurredAt: new Date(now + minutes * 60_000).toISOString() })
    expect(decode(ahead(5), source, 'transaction', now).ok).toBe(true)
    const d = decode(ahead(6), source, 'transaction', now)
    expect(!d.ok && d.deadLetter.error).toMatchObject({ code: 'future_event', path: '$.occurredAt' })
    expect(!d.ok && d.deadLetter.error.message).toMatch(/360 s ahead .* at most 300 s/)
    expect(decode(ahead(6), source, 'transaction', now, 10 * 60_000).ok).toBe(true)
    expect(decode(ahead(60 * 24 * 365), source, 'transaction', null).ok).toBe(true)
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
        const text = JSON.stringify(value)
        const d = decode(text, source, expected as 'transaction' | 'app' | undefined)
        outcome(d, expected)
        // The compiled schemas decide as Zod's own parser does, and give the same event.
        const runtime = InputEvent.safeParse(value)
        if (!containsPan(text)) expect(d.ok ? d.event : null).toEqual(runtime.success && (!expected || runtime.data.type === expected) ? runtime.data : null)
      }),
      { numRuns: 500 },
    )
    // Both outcomes were exercised.
    expect(events).toBeGreaterThan(20)
    expect(deadLetters).toBeGreaterThan(500)
  })
})

describe('the bound on a dead letter\'s original', () => {
  const max = 16

  it('keeps what fits whole', () => {
    expect(boundOriginal(Buffer.from('0123456789abcdef'), max, true).toString()).toBe('0123456789abcdef')
  })

  it('cuts at most the limit, never inside a UTF-8 character', () => {
    const kept = boundOriginal(Buffer.from('abcdefghijklmn中文'), max, true) // 中 takes bytes 14–16
    expect(kept.toString()).toBe('abcdefghijklmn')
    // Bytes that are not UTF-8 anyway are cut at the limit.
    expect(boundOriginal(Buffer.alloc(40, 0x80), max, false)).toHaveLength(max)
  })

  it('does not cut a number in two', () => {
    expect(boundOriginal(Buffer.from('amount 123456789012'), max, true).toString()).toBe('amount ')
    expect(boundOriginal(Buffer.from('amount 12345678 9012'), max, true).toString()).toBe('amount 12345678 ')
  })

  it('makes no card number where it cuts, wherever that is', () => {
    const piece = fc.constantFrom('4539148803436467', '4539 1488 0343 6467', '4539-1488-0343-', '45391488034364', '1234', '5', ' ', '-', 'é', 'a')
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 16 }), fc.integer({ min: 0, max: 80 }), (pieces, limit) => {
        const masked = maskPanBytes(Buffer.from(pieces.join('')))
        const kept = boundOriginal(masked, limit, true)
        expect(kept.length).toBeLessThanOrEqual(limit)
        expect(kept).toEqual(masked.subarray(0, kept.length))
        expect(kept.length).toBeGreaterThanOrEqual(Math.min(masked.length, limit - 32)) // backs out of 32 digits at most
        // (Masking can leave a card number's last four beside other digits that read as one.)
        if (!containsPan(masked.toString())) expect(containsPan(kept.toString())).toBe(false)
      }),
      { numRuns: 2000 },
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

  it('finds a card number written in groups after another group of digits', () => {
    expect(containsPan('ref 1234 4539 1488 0343 6467')).toBe(true)
    expect(maskPans('ref 1234 4539 1488 0343 6467')).toBe('ref 1234 ************6467')
    expect(maskPans('1234-4539-1488-0343-6467')).toBe('1234-************6467')
    expect(containsPan('1234 5678 9012 3456 7890 1234')).toBe(false)
  })
})
