import { describe, expect, it } from 'vitest'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Decision } from '../schemas/decision.ts'
import { DeadLetter } from '../schemas/deadLetter.ts'
import { Conversion } from '../schemas/conversion.ts'
import { partitionOf } from '../pipeline/partitioner.ts'
import { REPLAY_PARTITIONS } from '../pipeline/replayShard.ts'
import { MAX_ORIGINAL_BYTES } from '../pipeline/decode.ts'
import { leaksPan } from './helpers/leaks.ts'

/** The command line as a user runs it: `npx cardpulse …` through bin/cardpulse.js. */

const CLI = fileURLToPath(new URL('../bin/cardpulse.js', import.meta.url))
const SAMPLE = fileURLToPath(new URL('../simulator/sample/', import.meta.url))
const sample = readdirSync(SAMPLE).map((f) => join(SAMPLE, f))

function cardpulse(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, HOME: process.env.HOME, LOG_FORMAT: 'json', ...env },
    timeout: 120_000,
  })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

describe('cardpulse command line', () => {
  it('has --help on every command', () => {
    for (const cmd of [[], ['run'], ['demo'], ['replay'], ['simulate'], ['deliveries'], ['deliveries', 'resend']]) {
      const r = cardpulse([...cmd, '--help'])
      expect(r.code).toBe(0)
      expect(r.stdout).toMatch(/Usage: cardpulse/)
    }
    expect(cardpulse(['run', '--help']).stdout).toMatch(/KAFKA_BROKERS/)
    expect(cardpulse(['deliveries', 'resend', '--help']).stdout).toMatch(/REDIS_URL/)
  })

  it('answers a bad setting with one line naming it', () => {
    const r = cardpulse(['run'], { KAFKA_BROKERS: 'not a broker', REDIS_URL: 'redis://127.0.0.1:6379', WEBHOOK_SECRET: 'x'.repeat(20) })
    expect(r.code).toBe(2)
    expect(r.stderr.trim()).toBe('cardpulse: KAFKA_BROKERS (--kafka-brokers) must be host:port[,host:port…]')
    const missing = cardpulse(['run'], { REDIS_URL: 'redis://127.0.0.1:6379', WEBHOOK_SECRET: 'x'.repeat(20) })
    expect(missing.stderr.trim()).toMatch(/^cardpulse: KAFKA_BROKERS \(--kafka-brokers\) is required/)
    const noFile = cardpulse(['replay', '--input', '/nonexistent/transactions.ndjson', '--out', '/tmp/cardpulse-never'])
    expect(noFile.code).toBe(2)
    expect(noFile.stderr.trim()).toBe('cardpulse: INPUT (--input) names a file that does not exist: /nonexistent/transactions.ndjson')
    // The setting is named by its own environment twin, and text that is no number says so.
    expect(cardpulse(['demo', '--customers', 'many']).stderr.trim()).toBe('cardpulse: DEMO_CUSTOMERS (--customers) must be a number')
    expect(cardpulse(['replay', '--input', sample[0], '--out', '/tmp/cardpulse-never', '--threads', '0']).stderr.trim()).toBe('cardpulse: REPLAY_THREADS (--threads) Too small: expected number to be >=1')
    expect(cardpulse(['simulate', '--out', '/tmp/cardpulse-never'], { SIM_DAYS: 'x' }).stderr.trim()).toBe('cardpulse: SIM_DAYS (--days) must be a number')
  })

  it('refuses to serve HTTP beyond loopback without a token, in one line that says what to set, before connecting to anything', () => {
    for (const [cmd, env] of [
      ['run', { KAFKA_BROKERS: '127.0.0.1:1', REDIS_URL: 'redis://127.0.0.1:1', WEBHOOK_SECRET: 'x'.repeat(20), HTTP_HOST: '0.0.0.0' }],
      ['demo', { HTTP_HOST: '0.0.0.0' }],
    ] as const) {
      const r = cardpulse([cmd], env)
      expect(r.code, cmd).toBe(2)
      expect(r.stderr.trim()).toBe(
        'cardpulse: HTTP_HOST 0.0.0.0 is not a loopback address and no HTTP_TOKEN is set: set HTTP_TOKEN (or HTTP_TOKEN_FILE) to a long random token, bind to 127.0.0.1, or set HTTP_ALLOW_UNAUTHENTICATED=true if a proxy in front authenticates',
      )
    }
  })

  it('logs at the level and in the format the flags ask for', () => {
    const out = mkdtempSync(join(tmpdir(), 'cardpulse-cli-'))
    const quiet = cardpulse(['replay', '--input', sample[0], '--out', out, '--no-progress', '--log-level', 'silent'])
    expect(quiet.code).toBe(0)
    expect(quiet.stdout + quiet.stderr).toBe('')
    // The flag wins over its environment twin, as for every other setting.
    const debug = cardpulse(['replay', '--input', sample[0], '--out', out, '--no-progress', '--log-level', 'warn'], { LOG_LEVEL: 'silent' })
    expect(debug.stdout).toBe('')
    const info = cardpulse(['replay', '--input', sample[0], '--out', out, '--no-progress'], { LOG_LEVEL: 'info' })
    expect(JSON.parse(info.stdout.trim().split('\n').at(-1)!)).toMatchObject({ level: 30, cmd: 'replay' })
    const pretty = cardpulse(['replay', '--input', sample[0], '--out', out, '--no-progress', '--log-format', 'pretty'])
    expect(pretty.code).toBe(0)
    expect(pretty.stdout).toMatch(/INFO.*replayed \d+ events/)
    expect(() => JSON.parse(pretty.stdout.trim().split('\n')[0])).toThrow()
    const bad = cardpulse(['replay', '--input', sample[0], '--out', out, '--log-format', 'xml'])
    expect(bad.code).toBe(2)
    expect(bad.stderr.trim()).toBe('cardpulse: LOG_FORMAT (--log-format) must be pretty or json')
  })

  it('answers an unreachable server with one line, not a stack trace', () => {
    const r = cardpulse(['run'], { KAFKA_BROKERS: '127.0.0.1:1', REDIS_URL: 'redis://127.0.0.1:1', WEBHOOK_SECRET: 'x'.repeat(20), CONNECT_TIMEOUT: '1s' })
    expect(r.code).toBe(1)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toMatch(/cannot reach Redis at redis:\/\/127\.0\.0\.1:1 \(ECONNREFUSED\): start Redis or set REDIS_URL/)
  })

  it('rejects a bad catalogue with a message a marketer can act on', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardpulse-cli-'))
    const file = join(dir, 'bad.yaml')
    writeFileSync(file, 'version: "x"\ntriggers:\n  activation_reminder: { goal: { kind: lifecycle, stage: activated }, attributionWindow: soon }\n')
    const r = cardpulse(['replay', '--input', sample[0], '--out', dir, '--catalog-file', file])
    expect(r.code).toBe(2) // a file to fix, like any other setting
    expect(r.stderr.trim()).toMatch(/triggers\.activation_reminder\.attributionWindow: "soon" is not a duration; write e\.g\. 90s, 30m, 72h or 7d/)
  })

  it('replays deterministically: the same input gives byte-identical output, whatever the file order and thread count', () => {
    const a = mkdtempSync(join(tmpdir(), 'cardpulse-replay-a-'))
    const b = mkdtempSync(join(tmpdir(), 'cardpulse-replay-b-'))
    expect(cardpulse(['replay', '--input', ...sample, '--out', a, '--threads', '2']).code).toBe(0)
    expect(cardpulse(['replay', '--input', ...[...sample].reverse(), '--out', b, '--threads', '1']).code).toBe(0)
    for (const f of ['decisions.ndjson', 'alerts.ndjson', 'dlq.ndjson', 'conversions.ndjson', 'summary.json']) expect(readFileSync(join(a, f))).toEqual(readFileSync(join(b, f)))

    const decisions = readFileSync(join(a, 'decisions.ndjson'), 'utf8').trim().split('\n').map((l) => Decision.parse(JSON.parse(l)))
    expect(decisions.length).toBeGreaterThan(50)
    expect(decisions.every((d) => d.decidedAt === d.eventTime)).toBe(true)
    const dlq = readFileSync(join(a, 'dlq.ndjson'), 'utf8').trim().split('\n').map((l) => DeadLetter.parse(JSON.parse(l)))
    expect(dlq.map((q) => q.error.code).sort()).toEqual(['invalid_json', 'not_an_object', 'pan_detected', 'schema_violation', 'unknown_type'])
    // One conversion row per send or control decision, in its state at the end of input.
    const conversions = readFileSync(join(a, 'conversions.ndjson'), 'utf8').trim().split('\n').map((l) => Conversion.parse(JSON.parse(l)))
    const treated = decisions.filter((d) => d.outcome !== 'suppressed')
    expect(conversions.map((c) => c.decisionId).sort()).toEqual(treated.map((d) => d.id).sort())

    // Every input line is accounted for: applied, a duplicate, or a dead letter.
    const summary = JSON.parse(readFileSync(join(a, 'summary.json'), 'utf8'))
    const lines = sample.reduce((n, f) => n + readFileSync(f, 'utf8').trim().split('\n').length, 0)
    expect(summary.input.events).toBe(lines)
    expect(summary.input.applied + summary.input.duplicates + summary.input.deadLetters).toBe(lines)
    expect(summary.decisions.byTrigger.activation_reminder.send).toBe(decisions.filter((d) => d.trigger === 'activation_reminder' && d.outcome === 'send').length)
    // ROI per trigger, computed by embedded ClickHouse: treated and control are the send and control decisions.
    const assigned = Object.entries(summary.decisions.byTrigger as Record<string, Record<string, number>>).filter(([, o]) => o.send + o.control > 0)
    expect(summary.roi.map((r: { trigger: string }) => r.trigger)).toEqual(assigned.map(([t]) => t).sort())
    for (const r of summary.roi) {
      expect([r.treated, r.control, r.delivered]).toEqual([summary.decisions.byTrigger[r.trigger].send, summary.decisions.byTrigger[r.trigger].control, r.treated])
      for (const k of ['treatedConversions', 'controlConversions', 'lift', 'liftCi95', 'incrementalSpend', 'cost', 'roi', 'verdict']) expect(r).toHaveProperty(k)
    }
  })

  it('ends every thread at the last event time of the whole input, not of its own customers', () => {
    // `early` (first thread) goes quiet long before `late` (second thread) sends its last event:
    // its activation reminder, due 72 h after approval, falls between the two.
    const ids = Array.from({ length: 50 }, (_, i) => `c${i}`)
    const [early, late] = [0, 1].map((shard) => ids.find((c) => partitionOf(c, REPLAY_PARTITIONS) % 2 === shard)!)
    const dir = mkdtempSync(join(tmpdir(), 'cardpulse-ends-'))
    const input = join(dir, 'events.ndjson')
    const lifecycle = (customerId: string, occurredAt: string) => ({ type: 'lifecycle', eventId: `${customerId}-approved`, occurredAt, customerId, cardId: `${customerId}-card`, stage: 'approved' })
    const events = [
      lifecycle(early, '2026-03-01T02:00:00Z'),
      lifecycle(late, '2026-03-01T03:00:00Z'),
      { type: 'lifecycle', eventId: `${late}-activated`, occurredAt: '2026-03-02T03:00:00Z', customerId: late, cardId: `${late}-card`, stage: 'activated' },
      { type: 'app', eventId: `${late}-login`, occurredAt: '2026-03-06T00:00:00Z', customerId: late, name: 'login' },
    ]
    writeFileSync(input, events.map((e) => JSON.stringify(e)).join('\n') + '\n')
    const outputs = [1, 2].map((threads) => {
      const out = join(dir, `out-${threads}`)
      expect(cardpulse(['replay', '--input', input, '--out', out, '--threads', String(threads)]).code).toBe(0)
      return readFileSync(join(out, 'decisions.ndjson'), 'utf8')
    })
    expect(outputs[1]).toEqual(outputs[0])
    const reminders = outputs[1].trim().split('\n').map((l) => JSON.parse(l)).filter((d) => d.trigger === 'activation_reminder')
    expect(reminders.map((d) => [d.customerId, d.eventTime])).toEqual([[early, '2026-03-04T02:00:00.000Z']])
  })

  it('replays a card number planted in bad input into none of its outputs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardpulse-pan-'))
    const pan = '4539148803436467'
    const tx = (customerId: string, extra: Record<string, unknown> = {}) =>
      JSON.stringify({ type: 'transaction', eventId: `${customerId}-1`, occurredAt: '2026-03-01T10:00:00Z', customerId, cardId: `tok_${customerId}`, amount: 42, status: 'approved', channel: 'pos', cardPresent: true, merchant: { id: 'm1', mcc: '5411', country: 'CN' }, ...extra })
    const bad = [
      Buffer.concat([Buffer.from(`{"cardId":"${pan}","note":"`), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]), // not UTF-8
      Buffer.from(tx('cust_big', { cardId: '4539 1488 0343 6467', note: 'x'.repeat(100_000), last: pan })), // over 64 KiB
      Buffer.from(tx('cust_event', { cardId: pan })), // valid-looking
      Buffer.from(tx('cust_named', { merchant: { id: 'm1', name: 'ref 1234-4539-1488-0343-6467', mcc: '5411', country: 'CN' } })),
    ]
    const input = join(dir, 'events.ndjson')
    writeFileSync(input, Buffer.concat([...bad, Buffer.from(tx('cust_good'))].flatMap((line) => [line, Buffer.from('\n')])))
    const out = join(dir, 'out')
    const r = cardpulse(['replay', '--input', input, '--out', out])
    expect(r.code).toBe(0)

    const dlq = readFileSync(join(out, 'dlq.ndjson'), 'utf8').trim().split('\n').map((l) => DeadLetter.parse(JSON.parse(l)))
    expect(dlq.map((q) => q.error.code)).toEqual(['pan_detected', 'too_large', 'pan_detected', 'pan_detected'])
    expect(dlq[1]).toMatchObject({ originalBytes: bad[1].length, originalTruncated: true })
    expect(Buffer.byteLength(dlq[1].original)).toBeLessThanOrEqual(MAX_ORIGINAL_BYTES)
    const originals = dlq.map((q) => Buffer.from(q.original, q.originalEncoding).toString('latin1'))
    for (const original of originals) expect(original).toContain('************6467')
    const outputs = {
      ...Object.fromEntries(['decisions.ndjson', 'alerts.ndjson', 'dlq.ndjson', 'summary.json'].map((f) => [f, readFileSync(join(out, f), 'latin1')])),
      'originals, decoded': originals.join('\n'),
      stdout: r.stdout,
      stderr: r.stderr,
    }
    for (const [where, text] of Object.entries(outputs)) expect({ where, leaks: leaksPan(text, pan) }).toEqual({ where, leaks: false })
  })

  it('reads NDJSON from stdin with -', () => {
    const out = mkdtempSync(join(tmpdir(), 'cardpulse-stdin-'))
    const r = spawnSync(process.execPath, [CLI, 'replay', '--input', '-', '--out', out], { input: readFileSync(sample.find((f) => f.includes('lifecycle'))!), encoding: 'utf8', env: { ...process.env, LOG_FORMAT: 'json' } })
    expect(r.status).toBe(0)
    expect(JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')).decisions.total).toBeGreaterThan(0)
  })
})

