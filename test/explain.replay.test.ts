import { describe, expect, it } from 'vitest'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { holdoutBucket } from '../pipeline/ids.ts'

/** `cardpulse explain --dir` on what `cardpulse replay` wrote, through the command line as a user runs it. */

const CLI = fileURLToPath(new URL('../bin/cardpulse.js', import.meta.url))
const HOUR = 3_600_000

function cardpulse(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: process.env.HOME, LOG_LEVEL: 'warn' }, timeout: 120_000 })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

// A customer outside activation_reminder's 10% holdout of the shipped catalogue.
const customer = Array.from({ length: 50 }, (_, i) => `cust_replay_${i}`).find((c) => holdoutBucket(c, 'activation_reminder') >= 1000)!
// 02:00 UTC = 10:00 in Shanghai: the reminders 72 h later fall outside quiet hours.
const T = Date.parse('2026-10-01T02:00:00Z')
const iso = (ms: number) => new Date(ms).toISOString()
const lifecycle = (customerId: string, cardId: string, stage: string, at: number) => ({ type: 'lifecycle', eventId: `${customerId}-${cardId}-${stage}`, occurredAt: iso(at), customerId, cardId, stage })

describe('cardpulse explain --dir', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cardpulse-explain-'))
  const input = join(dir, 'lifecycle.ndjson')
  // Two cards approved an hour apart, neither activated: the second card's reminder falls in the first's cooldown.
  const events = [lifecycle(customer, 'tok_one', 'approved', T), lifecycle(customer, 'tok_two', 'approved', T + HOUR), lifecycle('cust_other', 'tok_x', 'approved', T + 80 * HOUR)]
  writeFileSync(input, events.map((e) => JSON.stringify(e)).join('\n') + '\n')
  const out = join(dir, 'out')
  const replayed = cardpulse(['replay', '--input', input, '--out', out, '--no-progress'])

  it('explains a send and the cooldown that suppressed the next, from the replay output', () => {
    expect(replayed.code, replayed.stderr).toBe(0)
    const r = cardpulse(['explain', '--dir', out, '--customer', customer])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toContain(`Customer ${customer}`)
    expect(r.stdout).toContain('a replay keeps no customer state')
    expect(r.stdout).toContain('Recent decisions (2 of 2, newest first)')
    expect(r.stdout).toMatch(/activation_reminder {2}SUPPRESSED by cooldown\n {4}why +Suppressed by the cooldown: activation_reminder was already decided \(send, d_[0-9a-f]+\) at 2026-10-04 10:00 Asia\/Shanghai, and its cooldown of 7 days runs until 2026-10-11 10:00 Asia\/Shanghai\./)
    expect(r.stdout).toMatch(/activation_reminder {2}SENT\n {4}why +Sent by push/)
    expect(r.stdout).toMatch(/hours without activation +72/)
    expect(r.stdout).toMatch(/catalogue +2026\.\d+\.\d+/)
    expect(r.stdout).not.toContain('\u001b[') // not a terminal: no colour
  })

  it('explains only what happened since --since, still naming the earlier decision a cooldown runs from', () => {
    const r = cardpulse(['explain', '--dir', out, '--customer', customer, '--since', '2026-10-04T02:30:00Z'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toContain('Recent decisions (1 of 1, newest first)')
    expect(r.stdout).toMatch(/SUPPRESSED by cooldown\n {4}why +Suppressed by the cooldown: activation_reminder was already decided \(send, d_[0-9a-f]+\) at 2026-10-04 10:00/)
  })

  it('writes the same explanation as JSON with --json, limited by --limit', () => {
    const r = cardpulse(['explain', '--dir', out, '--customer', customer, '--json', '--limit', '1'])
    expect(r.code, r.stderr).toBe(0)
    const doc = JSON.parse(r.stdout)
    expect(doc).toMatchObject({ customerId: customer, state: { available: false }, decisions: { total: 2, shown: 1 } })
    expect(doc.decisions.items[0]).toMatchObject({ trigger: 'activation_reminder', outcome: 'suppressed', suppressedBy: 'cooldown', rule: { rule: 'cooldown', cooldown: '7 days' } })
  })

  it('says in one line that a customer is unknown, or that an id is bad, never repeating a card number', () => {
    const unknown = cardpulse(['explain', '--dir', out, '--customer', 'c-123'])
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toBe(`cardpulse: no customer c-123 in the replay output ${out} (searched decisions.ndjson, alerts.ndjson, conversions.ndjson)\n`)
    const pan = cardpulse(['explain', '--dir', out, '--customer', '4111111111111111'])
    expect(pan.code).toBe(2)
    expect(pan.stderr).toBe('cardpulse: EXPLAIN_CUSTOMER (--customer): the customer id looks like a card number; give the customer id, never a card number\n')
    for (const [id, message] of [
      ['', 'give a customer id'],
      ['x'.repeat(65), 'at most 64'],
      ['cust/1', 'characters of A-Z'],
    ]) {
      const bad = cardpulse(['explain', '--dir', out, '--customer', id])
      expect(bad.code).toBe(2)
      expect(bad.stderr.trim().split('\n')).toHaveLength(1)
      expect(bad.stderr).toContain(message)
    }
    const noDir = cardpulse(['explain', '--dir', join(dir, 'missing'), '--customer', customer])
    expect(noDir.code).toBe(2)
    expect(noDir.stderr).toMatch(/^cardpulse: EXPLAIN_DIR \(--dir\) .* holds no decisions\.ndjson/)
    const since = cardpulse(['explain', '--dir', out, '--customer', customer, '--since', 'last week'])
    expect(since.code).toBe(2)
    expect(since.stderr).toMatch(/^cardpulse: EXPLAIN_SINCE \(--since\) must be a duration/)
  })

  it('has --help', () => {
    const r = cardpulse(['explain', '--help'])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/--customer <id>.*\n?.*EXPLAIN_CUSTOMER/)
  })
})
