import { afterAll, describe, expect, it } from 'vitest'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser } from 'playwright-core'

/**
 * `npm start` as a newcomer sees it: the demo simulates a bank through the pipeline and serves the
 * dashboard, which a real browser (Debian's chromium) renders with the numbers from embedded
 * ClickHouse; the numbers agree with the API and with the summary.json that replay would write.
 */

const CLI = fileURLToPath(new URL('../bin/cardpulse.js', import.meta.url))
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
let demo: ChildProcess | undefined
const OUT = mkdtempSync(join(tmpdir(), 'cardpulse-demo-out-'))
let browser: Browser | undefined

afterAll(async () => {
  await browser?.close()
  if (demo && demo.exitCode === null) demo.kill('SIGKILL')
})

function startDemo(): Promise<{ port: number; played: Record<string, unknown> }> {
  // A smaller bank than the default, so the test does not wait for two minutes of simulation.
  demo = spawn(process.execPath, [CLI, 'demo', '--out', OUT], { env: { ...process.env, HTTP_PORT: '0', LOG_FORMAT: 'json', DEMO_CUSTOMERS: '600', DEMO_DAYS: '60' }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  return new Promise((resolve, reject) => {
    demo!.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      const port = /"dashboard":"http:\/\/127\.0\.0\.1:(\d+)\/"/.exec(out)
      const played = out.split('\n').find((l) => l.includes('"msg":"played '))
      if (port && played) resolve({ port: Number(port[1]), played: JSON.parse(played) })
    })
    demo!.stderr!.on('data', (chunk: Buffer) => (out += chunk.toString()))
    demo!.once('exit', (code) => reject(new Error(`demo exited with ${code}:\n${out}`)))
  })
}

describe('the demo', () => {
  it('simulates a bank, delivers every send not cancelled as a signed webhook, and shows what each trigger earns on the dashboard', async () => {
    expect(existsSync(CHROMIUM), `browser tests need Debian's chromium at ${CHROMIUM} (.ci/run installs it)`).toBe(true)
    const { port, played } = await startDemo()
    expect(Number(played.decisions)).toBeGreaterThan(50)
    // A send still waiting when its goal is reached (or consent withdrawn, or a high alert raised) is cancelled, not sent.
    expect(played.webhooksReceived).toBe(Number(played.sent) - Number(played.cancelled))

    const base = `http://127.0.0.1:${port}`
    expect(await (await fetch(`${base}/healthz`)).json()).toMatchObject({ status: 'ok', mode: 'demo' })
    const deadLetters = (await (await fetch(`${base}/metrics`)).text()).match(/cardpulse_dead_letters_total\{code="[a-z_]+"\} \d+/g) ?? []
    expect(deadLetters.length, 'the demo bank sends some malformed messages').toBeGreaterThan(0)
    const summary = await (await fetch(`${base}/api/summary`)).json()
    expect(summary.simulation).toMatchObject({ customers: 600, days: 60 })
    expect(summary.simulation.persuaded).toBeGreaterThan(0)

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    })
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } })
    await page.goto(`${base}/`)
    const kpi = async (name: string) => Number((await page.locator(`[data-kpi="${name}"] .v`).textContent())!.replace(/[^0-9.-]/g, ''))
    await page.locator('[data-kpi="Decisions"] .v').waitFor()
    expect(await kpi('Decisions')).toBe(Number(played.decisions))
    expect(await kpi('Webhooks delivered')).toBe(Number(played.sent) - Number(played.cancelled))
    expect(await page.locator('#shadow').textContent()).toContain('No shadow catalogue')
    await expect.poll(() => page.locator('#recent tr').count()).toBeGreaterThan(10)
    expect(await page.locator('#problems tr').count()).toBeGreaterThan(1)
    expect(await page.locator('#meta').textContent()).toContain('simulated 60 days')

    // Every chart has data: ECharts holds each chart's series, which the page filled from the API.
    const seriesPoints = () =>
      page.evaluate(() => {
        const w = window as unknown as { echarts: { getInstanceByDom(el: Element): { getOption(): { series: { data: unknown[] }[] } } } }
        return Object.fromEntries(
          [...document.querySelectorAll('.chart')].map((el) => {
            const series = w.echarts.getInstanceByDom(el)?.getOption().series ?? []
            return [el.id, series.reduce((n, s) => n + s.data.filter((v) => (typeof v === 'number' ? v !== 0 : v !== null)).length, 0)]
          }),
        )
      })
    await expect.poll(async () => Math.min(...Object.values(await seriesPoints())), { timeout: 15_000 }).toBeGreaterThan(0)
    const charts = await seriesPoints()
    expect(Object.keys(charts).sort()).toEqual(['alertsChart', 'funnelChart', 'liftChart', 'outcomesChart', 'spendChart', 'suppressionChart'])

    // The ROI table says what /api/analytics/roi says, and that is what replay would put in summary.json (same query).
    const roi = (await (await fetch(`${base}/api/analytics/roi`)).json()) as { trigger: string; treated: number; control: number; lift: number | null }[]
    expect(roi.length).toBeGreaterThan(5)
    const rows = page.locator('#roiTable tr[data-trigger]')
    expect(await rows.count()).toBe(roi.length)
    const first = roi.find((r) => r.lift !== null)!
    const cells = await page.locator(`#roiTable tr[data-trigger="${first.trigger}"] td`).allTextContents()
    expect(Number(cells[1].replace(/,/g, ''))).toBe(first.treated)
    expect(Number(cells[2].replace(/,/g, ''))).toBe(first.control)
    expect(cells[4]).toContain(`${first.lift! >= 0 ? '+' : ''}${(first.lift! * 100).toFixed(1)} pp`)
    expect(await kpi('Sent')).toBe(roi.reduce((n, r) => n + r.treated, 0))
    // summary.json (what replay writes, from its own rows) says what the live tables say.
    await expect.poll(() => existsSync(join(OUT, 'summary.json')), { timeout: 30_000 }).toBe(true)
    const pick = (r: Record<string, unknown>) => ({ trigger: r.trigger, treated: r.treated, control: r.control, treatedConversions: r.treatedConversions, controlConversions: r.controlConversions, lift: r.lift, liftCi95: r.liftCi95 })
    const summaryRoi = JSON.parse(readFileSync(join(OUT, 'summary.json'), 'utf8')).roi as Record<string, unknown>[]
    expect(summaryRoi.map(pick)).toEqual(roi.map(pick))
    // Sums of spend in another order may differ in the last cent.
    const spend = (rows: Record<string, unknown>[]) => rows.map((r) => Math.round(Number(r.incrementalSpend ?? 0)))
    spend(summaryRoi).forEach((v, i) => expect(Math.abs(v - spend(roi)[i]), String(summaryRoi[i].trigger)).toBeLessThanOrEqual(1))
    // Beside each measured lift, the effect the simulated bank was given.
    expect(await page.locator('#roiTable th').allTextContents()).toContain('Simulated effect')
    expect(await page.locator('#roiTable tr[data-trigger="activation_reminder"]').textContent()).toMatch(/30% activate within 2 d/)
    await page.waitForTimeout(800) // let the charts finish drawing
    await page.screenshot({ path: `${process.env.SCREENSHOT_DIR ?? '/tmp'}/cardpulse-dashboard.png`, fullPage: true })

    // A filter changes what the page shows: one trigger, then a date range.
    await page.selectOption('select[name="trigger"]', first.trigger)
    await expect.poll(() => page.locator('#roiTable tr[data-trigger]').count(), { timeout: 10_000 }).toBe(1)
    await expect.poll(() => kpi('Sent'), { timeout: 10_000 }).toBe(first.treated)
    expect(page.url()).toContain(`trigger=${first.trigger}`)
    await page.screenshot({ path: `${process.env.SCREENSHOT_DIR ?? '/tmp'}/cardpulse-dashboard-${first.trigger}.png`, fullPage: true })
    await page.click('button[type="reset"]')
    await expect.poll(() => page.locator('#roiTable tr[data-trigger]').count(), { timeout: 10_000 }).toBe(roi.length)
    const before = await kpi('Decisions')
    await page.fill('input[name="to"]', '2026-09-15')
    await page.locator('input[name="to"]').dispatchEvent('change')
    await expect.poll(() => kpi('Decisions'), { timeout: 10_000 }).toBeLessThan(before)
    expect(await kpi('Decisions')).toBeGreaterThan(0)

    // A bad filter gets a 400 that says what is wrong, never a SQL error.
    const bad = await fetch(`${base}/api/analytics/roi?from=2026-13-45`)
    expect(bad.status).toBe(400)
    expect((await bad.json()).error).toMatch(/^bad filter: from /)
    const unknown = await fetch(`${base}/api/analytics/roi?trigger=x%27%20OR%201=1`)
    expect(unknown.status).toBe(400)

    demo!.kill('SIGINT')
    expect(await new Promise((r) => demo!.once('exit', r))).toBe(0)
  }, 180_000)
})
