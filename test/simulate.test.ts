import { describe, expect, it } from 'vitest'
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { SimulatedBank } from '../simulator/bank.ts'
import { loadBankConfig, FRAUD_KINDS } from '../simulator/config.ts'
import type { TruthRecord } from '../simulator/truth.ts'
import { signWebhook } from '../sinks/webhook/signature.ts'
import type { WebhookBody } from '../schemas/decision.ts'
import { createTopics, kafka, uniqueId, waitFor } from './helpers/services.ts'

/** `cardpulse simulate` as a user runs it: files with ground truth, a bad config, and the closed loop over HTTP and Kafka. */

const CLI = fileURLToPath(new URL('../bin/cardpulse.js', import.meta.url))
const FILES = ['transactions.ndjson', 'app-events.ndjson', 'lifecycle.ndjson', 'truth.ndjson']
const DAY = 86_400_000

function cardpulse(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: process.env.HOME, LOG_FORMAT: 'json', ...env }, timeout: 180_000 })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

const lines = (file: string) => readFileSync(file, 'utf8').trim().split('\n')

describe('cardpulse simulate', () => {
  it('writes the same four files byte for byte for a seed, and different ones for another seed', () => {
    const [a, b, c] = [0, 1, 2].map(() => mkdtempSync(join(tmpdir(), 'cardpulse-bank-')))
    const args = ['simulate', '--customers', '120', '--days', '30', '--malformed', '0.002']
    expect(cardpulse([...args, '--seed', '3', '--out', a]).code).toBe(0)
    expect(cardpulse([...args, '--seed', '3', '--out', b]).code).toBe(0)
    expect(cardpulse([...args, '--seed', '4', '--out', c]).code).toBe(0)
    for (const f of FILES) {
      expect(readFileSync(join(a, f)).length, f).toBeGreaterThan(100)
      expect(readFileSync(join(a, f)), f).toEqual(readFileSync(join(b, f)))
      expect(readFileSync(join(a, f)), f).not.toEqual(readFileSync(join(c, f)))
    }
  })

  it('injects every fraud kind and malformed lines; `cardpulse replay` alerts on each case and dead-letters each bad line', { timeout: 300_000 }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardpulse-bank-'))
    const config = join(dir, 'bank.yaml')
    writeFileSync(config, `population: { existingShare: 0.8 }\nfraud: { ${FRAUD_KINDS.map((k) => `${k}: 0.6`).join(', ')} }\n`)
    const sim = cardpulse(['simulate', '--customers', '300', '--days', '45', '--seed', '6', '--config', config, '--malformed', '0.001', '--out', dir])
    expect(sim.code, sim.stderr).toBe(0)
    const out = join(dir, 'out')
    const replay = cardpulse(['replay', '--input', ...FILES.slice(0, 3).map((f) => join(dir, f)), '--out', out, '--no-progress'])
    expect(replay.code, replay.stderr).toBe(0)
    const truth = lines(join(dir, 'truth.ndjson')).map((l) => JSON.parse(l) as TruthRecord)
    expect(truth[0].kind).toBe('config')
    const alerts = lines(join(out, 'alerts.ndjson')).map((l) => JSON.parse(l) as { kind: string; customerId: string; evidence: { eventIds: string[] } })
    const cases = truth.filter((r): r is Extract<TruthRecord, { kind: 'fraud' }> => r.kind === 'fraud')
    expect(new Set(cases.map((c) => c.fraudKind))).toEqual(new Set(FRAUD_KINDS))
    const missed = cases.filter((c) => !alerts.some((a) => a.kind === c.fraudKind && a.customerId === c.customerId && a.evidence.eventIds.some((id) => c.eventIds.includes(id))))
    expect(missed).toEqual([])
    const malformed = truth.filter((r) => r.kind === 'malformed')
    expect(malformed.length).toBeGreaterThan(5)
    const dlq = lines(join(out, 'dlq.ndjson'))
    expect(dlq).toHaveLength(malformed.length)
  })

  it('answers a bad bank configuration with one line naming the field', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardpulse-bank-'))
    writeFileSync(join(dir, 'bad.yaml'), 'fraud:\n  velocity: lots\n')
    const r = cardpulse(['simulate', '--customers', '10', '--out', dir, '--config', join(dir, 'bad.yaml')])
    expect(r.code).not.toBe(0)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr.trim()).toMatch(/^cardpulse: .*bad\.yaml: fraud\.velocity: /)
    const listen = cardpulse(['simulate', '--listen', '0', '--kafka-brokers', '127.0.0.1:19092'])
    expect(listen.code).toBe(2)
    expect(listen.stderr.trim()).toMatch(/^cardpulse: WEBHOOK_SECRET \(--webhook-secret\) is required with --listen/)
  })

  it('--listen: produces to Kafka in simulated time, verifies and deduplicates webhooks, and customers react', { timeout: 180_000 }, async () => {
    const id = uniqueId()
    const topics = { transactions: `sim-${id}.transactions`, app: `sim-${id}.app-events`, lifecycle: `sim-${id}.lifecycle` }
    const admin = kafka().admin()
    await admin.connect()
    await createTopics(admin, Object.values(topics), 1)
    await admin.disconnect()
    const secret = 'simulate-listen-secret-0123'
    const dir = mkdtempSync(join(tmpdir(), 'cardpulse-listen-'))
    const configFile = join(dir, 'bank.yaml')
    writeFileSync(configFile, 'population: { existingShare: 0 }\nlifecycle: { activationRate: 0.3 }\neffects: { activation_reminder: { probability: 1, within: 2h } }\n')
    const start = '2026-03-01'
    const days = 12

    // The same bank in process: a customer whose card is issued early and never activated untouched.
    const twin = new SimulatedBank({ customers: 60, days, start: Date.parse(`${start}T00:00:00Z`), seed: 2, config: loadBankConfig(configFile) })
    const issued = new Map<string, { cardId: string; at: number }>()
    const activated = new Set<string>()
    for (const e of twin.until(Infinity))
      if (e.type === 'lifecycle' && e.stage === 'issued') issued.set(e.customerId, { cardId: e.cardId, at: Date.parse(e.occurredAt) })
      else if (e.type === 'lifecycle' && e.stage === 'activated') activated.add(e.customerId)
    const [customerId, card] = [...issued].find(([c, x]) => !activated.has(c) && x.at < Date.parse(`${start}T00:00:00Z`) + 4 * DAY)!
    expect(customerId).toBeDefined()

    const child = spawn(
      process.execPath,
      [CLI, 'simulate', '--listen', '0', '--customers', '60', '--days', String(days), '--start', start, '--seed', '2', '--config', configFile, '--speed', String(86_400 / 2), '--linger', '1', '--out', dir,
        '--kafka-brokers', '127.0.0.1:19092', '--transactions-topic', topics.transactions, '--app-events-topic', topics.app, '--lifecycle-topic', topics.lifecycle],
      { env: { PATH: process.env.PATH, HOME: process.env.HOME, LOG_FORMAT: 'json', WEBHOOK_SECRET: secret } },
    )
    let stdout = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stdout += d))
    const exited = new Promise<number | null>((r) => child.once('exit', r))
    const port = await waitFor('the receiver', () => /http:\/\/127\.0\.0\.1:(\d+)\/webhooks/.exec(stdout)?.[1])
    const url = `http://127.0.0.1:${port}/webhooks`

    // Wait until the bank is past the card's issue plus 72 h, as the reminder would be.
    const remindAt = card.at + 72 * 3_600_000
    await waitFor('the reminder time', async () => Date.parse((await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()).time) > remindAt, 60_000, 100)
    const at = new Date(remindAt).toISOString()
    const body: WebhookBody = { id: `dec-${id}`, trigger: 'activation_reminder', customerId, cardId: card.cardId, channel: 'push', eventTime: at, decidedAt: at, sendAt: at, expiresAt: new Date(remindAt + 2 * DAY).toISOString(), offer: { code: 'ACTIVATE50', value: 50, currency: 'CNY' }, reason: {}, group: 'treatment', attributionWindowDays: 7 }
    const raw = JSON.stringify(body)
    const post = (signature: string) => {
      const ts = Math.floor(Date.now() / 1000)
      return fetch(url, { method: 'POST', body: raw, headers: { 'Content-Type': 'application/json', 'Idempotency-Key': body.id, 'X-Cardpulse-Timestamp': String(ts), 'X-Cardpulse-Signature': signature || signWebhook(secret, ts, raw) } })
    }
    expect((await post('v1=' + '0'.repeat(64))).status).toBe(401)
    const first = await post('')
    expect(first.status).toBe(200)
    expect(await first.json()).toMatchObject({ duplicate: false })
    expect(await (await post('')).json()).toMatchObject({ duplicate: true })

    expect(await exited).toBe(0)
    const truth = lines(join(dir, 'truth.ndjson')).map((l) => JSON.parse(l) as TruthRecord)
    const treatment = truth.filter((r) => r.kind === 'treatment')
    expect(treatment).toHaveLength(1)
    expect(treatment[0]).toMatchObject({ customerId, trigger: 'activation_reminder', persuaded: true, action: 'activate', naturalActionAt: null })

    // Everything reached Kafka, keyed by customer; the reminded customer activated.
    const consumer = kafka().consumer({ groupId: `sim-${id}` })
    await consumer.connect()
    await consumer.subscribe({ topics: Object.values(topics), fromBeginning: true })
    const seen: { topic: string; key: string; value: { customerId: string; stage?: string } }[] = []
    await consumer.run({ eachMessage: async ({ topic, message }) => void seen.push({ topic, key: String(message.key), value: JSON.parse(String(message.value)) }) })
    const total = FILES.slice(0, 3).reduce((n, f) => n + lines(join(dir, f)).length, 0)
    await waitFor('every event on Kafka', () => seen.length >= total, 60_000)
    await consumer.disconnect()
    expect(seen).toHaveLength(total)
    expect(seen.every((m) => m.key === m.value.customerId)).toBe(true)
    expect(seen.some((m) => m.topic === topics.lifecycle && m.value.customerId === customerId && m.value.stage === 'activated')).toBe(true)
  })
})
