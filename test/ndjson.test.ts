import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { peekLine, readNdjsonBatches, type SourceItem } from '../pipeline/sources/ndjson.ts'

const login = (customerId: string, occurredAt: string, eventId = 'e1') => ({ type: 'app', eventId, occurredAt, customerId, name: 'login' })

describe('peekLine', () => {
  it('reads the customer and event time of a compact or spaced line, as parsing would', () => {
    const event = login('c-1', '2026-03-01T08:00:00+08:00')
    expect(peekLine(JSON.stringify(event))).toEqual({ customerId: 'c-1', at: Date.parse('2026-03-01T00:00:00Z') })
    expect(peekLine(JSON.stringify(event, null, 1).replace(/\n/g, ''))).toEqual({ customerId: 'c-1', at: Date.parse('2026-03-01T00:00:00Z') })
  })

  it('declines whenever a scan could disagree with parsing', () => {
    const line = JSON.stringify(login('c-1', '2026-03-01T00:00:00Z'))
    // an escape anywhere: a key or value may not be what its characters say
    expect(peekLine(JSON.stringify({ ...login('c-1', '2026-03-01T00:00:00Z'), attributes: { note: 'say "hi"' } }))).toBeUndefined()
    expect(peekLine(line.replace('"customerId"', '"customer\\u0049d"'))).toBeUndefined()
    // a key twice (parsing keeps the last), or its name also appearing as a value
    expect(peekLine(line.replace('}', ',"customerId":"c-2"}'))).toBeUndefined()
    expect(peekLine(line.replace('"login"', '"customerId"'))).toBeUndefined()
    // missing, not a string, or not a time
    expect(peekLine(line.replace('"customerId":"c-1",', ''))).toBeUndefined()
    expect(peekLine(line.replace('"c-1"', '7'))).toBeUndefined()
    expect(peekLine(line.replace('2026-03-01T00:00:00Z', 'soon'))).toBeUndefined()
  })
})

describe('readNdjsonBatches with shards', () => {
  const customers = ['c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6']
  const base = Date.parse('2026-03-01T00:00:00Z')
  const line = fc.oneof(
    fc
      .record({
        customer: fc.constantFrom(...customers),
        minute: fc.integer({ min: 0, max: 600 }),
        form: fc.constantFrom('compact', 'spaced', 'escaped'),
      })
      .map(({ customer, minute, form }) => (eventId: string) => {
        const event = login(customer, new Date(base + minute * 60_000).toISOString(), eventId)
        if (form === 'spaced') return JSON.stringify(event).replace(/":/g, '": ').replace(/,"/g, ', "')
        if (form === 'escaped') return JSON.stringify({ ...event, attributes: { note: 'a "quoted" note' } })
        return JSON.stringify(event)
      }),
    fc.constantFrom(
      // bad lines: some name a customer and a time (and keep their place in the merge), some do not
      () => '{not json',
      () => '[1,2]',
      (eventId: string) => JSON.stringify({ ...login('c3', '2026-03-01T05:00:00Z', eventId), type: 'fax' }),
      (eventId: string) => JSON.stringify({ ...login('c4', '2026-03-01T02:00:00Z', eventId), name: 'unknown' }),
      () => '{"customerId":"c5"}',
    ),
  )
  const files = fc.array(fc.array(line, { maxLength: 40 }), { minLength: 1, maxLength: 3 })

  const collect = async (paths: string[], shard?: { owns: (c: string) => boolean; first: boolean }) => {
    const items: SourceItem[] = []
    for await (const batch of readNdjsonBatches(paths, { shard })) items.push(...batch)
    return items
  }
  const key = (i: SourceItem) => (i.ok ? `${i.source.topic}:${i.source.offset}` : `${i.deadLetter.source.topic}:${i.deadLetter.source.offset}`)

  it('gives each shard its customers’ events in the order one reader gives them, and every bad line to exactly one shard', async () => {
    await fc.assert(
      fc.asyncProperty(files, fc.integer({ min: 2, max: 4 }), async (contents, shards) => {
        const dir = mkdtempSync(join(tmpdir(), 'cardpulse-ndjson-'))
        const paths = contents.map((lines, f) => {
          const path = join(dir, `${f}.ndjson`)
          writeFileSync(path, lines.map((make, i) => make(`f${f}-${i}`)).join('\n') + '\n')
          return path
        })
        const owner = (customerId: string) => customers.indexOf(customerId) % shards
        const whole = await collect(paths)
        const badLines: string[] = []
        for (let s = 0; s < shards; s++) {
          const mine = await collect(paths, { owns: (c) => owner(c) === s, first: s === 0 })
          expect(mine.filter((i) => i.ok).map(key)).toEqual(whole.filter((i) => i.ok && owner(i.event.customerId) === s).map(key))
          badLines.push(...mine.filter((i) => !i.ok).map(key))
        }
        expect(badLines.sort()).toEqual(whole.filter((i) => !i.ok).map(key).sort())
      }),
      { numRuns: 100 },
    )
  })
})
