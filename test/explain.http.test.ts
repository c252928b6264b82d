import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Decision } from '../schemas/decision.ts'

/** GET /api/customers/:id/explain on the demo's HTTP server: its embedded state and ClickHouse. */

const CLI = fileURLToPath(new URL('../bin/cardpulse.js', import.meta.url))
const OUT = mkdtempSync(join(tmpdir(), 'cardpulse-explain-demo-'))
let demo: ChildProcess | undefined
let base = ''

beforeAll(async () => {
  demo = spawn(process.execPath, [CLI, 'demo', '--out', OUT, '--customers', '80', '--days', '45'], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, HTTP_PORT: '0', LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  base = await new Promise<string>((resolve, reject) => {
    demo!.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      const port = /"dashboard":"http:\/\/127\.0\.0\.1:(\d+)\/"/.exec(out)
      if (port && out.includes('"msg":"wrote what replay writes')) resolve(`http://127.0.0.1:${port[1]}`)
    })
    demo!.stderr!.on('data', (chunk: Buffer) => (out += chunk.toString()))
    demo!.once('exit', (code) => reject(new Error(`demo exited with ${code}:\n${out}`)))
  })
}, 120_000)

afterAll(() => {
  if (demo && demo.exitCode === null) demo.kill('SIGTERM')
})

const decisions = () =>
  readFileSync(join(OUT, 'decisions.ndjson'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Decision)

describe('GET /api/customers/:id/explain', () => {
  it('explains a customer with state and every decision the demo made for it', async () => {
    const all = decisions()
    // The customer with the most decisions, a suppressed one among them.
    const counts = new Map<string, number>()
    for (const d of all) counts.set(d.customerId, (counts.get(d.customerId) ?? 0) + 1)
    const customer = [...counts].filter(([c]) => all.some((d) => d.customerId === c && d.outcome === 'suppressed')).sort((a, b) => b[1] - a[1])[0][0]
    const mine = all.filter((d) => d.customerId === customer)

    const res = await fetch(`${base}/api/customers/${customer}/explain?limit=1000`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('application/json')
    const doc = await res.json()
    expect(doc).toMatchObject({ customerId: customer, state: { available: true, cards: expect.any(Array) }, decisions: { total: mine.length, shown: mine.length } })
    expect(doc.state.valueTier).toMatch(/^(new|inactive|low|mid|high)$/)
    expect(doc.decisions.items.map((d: { id: string }) => d.id).sort()).toEqual(mine.map((d) => d.id).sort())
    const suppressed = doc.decisions.items.find((d: { outcome: string }) => d.outcome === 'suppressed')
    expect(suppressed.rule.rule).toBe(suppressed.suppressedBy)
    expect(suppressed.why).toMatch(/^Suppressed /)

    const limited = await (await fetch(`${base}/api/customers/${customer}/explain?limit=1`)).json()
    expect(limited.decisions).toMatchObject({ total: mine.length, shown: 1 })
  })

  it('answers 404 in JSON for an unknown customer', async () => {
    const res = await fetch(`${base}/api/customers/c-123/explain`)
    expect(res.status).toBe(404)
    expect(await res.json()).toEqual({ error: expect.stringMatching(/^no customer c-123 in the demo's embedded state and ClickHouse database cardpulse \(searched/) })
  })

  it('answers 400 for a bad id, a bad limit or since, never repeating a card number', async () => {
    const pan = await fetch(`${base}/api/customers/4111111111111111/explain`)
    expect(pan.status).toBe(400)
    const body = await pan.text()
    expect(body).not.toContain('4111111111111111')
    expect(JSON.parse(body).error).toMatch(/looks like a card number/)
    for (const path of ['/api/customers/%20/explain', `/api/customers/${'x'.repeat(65)}/explain`, '/api/customers/a%2Fb/explain', '/api/customers/%E0%A4%A/explain', '/api/customers/c1/explain?limit=0', '/api/customers/c1/explain?since=soon'])
      expect((await fetch(`${base}${path}`)).status, path).toBe(400)
  })
})
