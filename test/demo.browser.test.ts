import { afterAll, describe, expect, it } from 'vitest'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser } from 'playwright-core'

/**
 * `npm start` as a newcomer sees it: the demo plays the bundled sample, then serves the dashboard,
 * which a real browser (Debian's chromium) renders with the numbers from embedded ClickHouse.
 */

const CLI = fileURLToPath(new URL('../bin/cardpulse.js', import.meta.url))
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
let demo: ChildProcess | undefined
let browser: Browser | undefined

afterAll(async () => {
  await browser?.close()
  if (demo && demo.exitCode === null) demo.kill('SIGKILL')
})

function startDemo(): Promise<{ port: number; played: Record<string, unknown> }> {
  demo = spawn(process.execPath, [CLI, 'demo'], { env: { ...process.env, HTTP_PORT: '0', LOG_FORMAT: 'json' }, stdio: ['ignore', 'pipe', 'pipe'] })
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
  it('plays the sample, delivers every send as a signed webhook, and shows it on the dashboard', async () => {
    expect(existsSync(CHROMIUM), `browser tests need Debian's chromium at ${CHROMIUM} (.ci/run installs it)`).toBe(true)
    const { port, played } = await startDemo()
    expect(Number(played.decisions)).toBeGreaterThan(50)
    expect(played.webhooksReceived).toBe(Number(played.sent))

    const base = `http://127.0.0.1:${port}`
    expect(await (await fetch(`${base}/healthz`)).json()).toMatchObject({ status: 'ok', mode: 'demo' })
    expect(await (await fetch(`${base}/metrics`)).text()).toMatch(/cardpulse_dead_letters_total\{code="pan_detected"\} 1/)

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    })
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } })
    await page.goto(`${base}/`)
    const decisionsKpi = page.locator('[data-kpi="Decisions"] .v')
    await decisionsKpi.waitFor()
    expect(Number((await decisionsKpi.textContent())!.replace(/,/g, ''))).toBe(Number(played.decisions))
    expect(Number((await page.locator('[data-kpi="Webhooks delivered"] .v').textContent())!.replace(/,/g, ''))).toBe(Number(played.sent))
    await expect.poll(() => page.locator('#recent tr').count()).toBeGreaterThan(10)
    expect(await page.locator('#problems').textContent()).toContain('pan_detected')
    expect(await page.locator('#decisionsChart canvas').count()).toBe(1)
    await page.waitForTimeout(800) // let the charts finish drawing
    await page.screenshot({ path: `${process.env.SCREENSHOT_DIR ?? '/tmp'}/cardpulse-dashboard.png` })

    demo!.kill('SIGINT')
    expect(await new Promise((r) => demo!.once('exit', r))).toBe(0)
  })
})
