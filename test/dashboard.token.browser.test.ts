import { afterAll, describe, expect, it } from 'vitest'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser } from 'playwright-core'

/**
 * The dashboard of a cardpulse started with HTTP_TOKEN, in a real browser (Debian's chromium): the
 * page asks for the token once, then shows the data; or takes it from the address's fragment and
 * removes it from there.
 */

const CLI = fileURLToPath(new URL('../bin/cardpulse.js', import.meta.url))
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const TOKEN = 'dashboard-token-for-the-browser-test'
let demo: ChildProcess | undefined
let browser: Browser | undefined

afterAll(async () => {
  await browser?.close()
  if (demo && demo.exitCode === null) demo.kill('SIGKILL')
})

function startDemo(): Promise<number> {
  demo = spawn(process.execPath, [CLI, 'demo'], {
    env: { ...process.env, HTTP_PORT: '0', HTTP_TOKEN: TOKEN, LOG_FORMAT: 'json', DEMO_CUSTOMERS: '200', DEMO_DAYS: '20' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  return new Promise((resolve, reject) => {
    demo!.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      const port = /"dashboard":"http:\/\/127\.0\.0\.1:(\d+)\/"/.exec(out)
      if (port && out.includes('"msg":"played ')) resolve(Number(port[1]))
    })
    demo!.stderr!.on('data', (chunk: Buffer) => (out += chunk.toString()))
    demo!.once('exit', (code) => reject(new Error(`demo exited with ${code}:\n${out}`)))
  })
}

describe('the dashboard with a token', () => {
  it('asks for the token once, sends it as a bearer header, and accepts it in the URL fragment', async () => {
    expect(existsSync(CHROMIUM), `browser tests need Debian's chromium at ${CHROMIUM} (.ci/run installs it)`).toBe(true)
    const port = await startDemo()
    const base = `http://127.0.0.1:${port}`
    expect((await fetch(`${base}/api/summary`)).status).toBe(401)
    // The demo's own webhooks still reach its receiver: they are checked by signature, not by token.
    const summary = await (await fetch(`${base}/api/summary`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()
    expect(summary.webhooksReceived).toBeGreaterThan(0)

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    })
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } })
    const bearers: (string | undefined)[] = []
    page.on('request', (r) => r.url().includes('/api/') && bearers.push(r.headers().authorization))
    await page.goto(`${base}/`)
    await page.locator('#access').waitFor({ state: 'visible' })
    expect(await page.locator('#meta').textContent()).toBe('connecting…')
    await page.screenshot({ path: `${process.env.SCREENSHOT_DIR ?? '/tmp'}/cardpulse-dashboard-token.png` })

    await page.fill('#accessForm input[name="token"]', 'not the token')
    await page.click('#accessForm button')
    await expect.poll(() => page.locator('#accessError').textContent()).toBe('That token was not accepted.')
    expect(await page.locator('#access').isVisible()).toBe(true)

    await page.fill('#accessForm input[name="token"]', TOKEN)
    await page.click('#accessForm button')
    await expect.poll(() => page.locator('#meta').textContent(), { timeout: 15_000 }).toMatch(/^demo · catalogue/)
    expect(await page.locator('#access').isVisible()).toBe(false)
    expect(bearers.at(-1)).toBe(`Bearer ${TOKEN}`)
    // Asked once: a reload of the tab keeps it.
    await page.reload()
    await expect.poll(() => page.locator('#meta').textContent(), { timeout: 15_000 }).toMatch(/^demo · catalogue/)
    expect(await page.locator('#access').isVisible()).toBe(false)
    await page.waitForTimeout(800) // let the charts finish drawing
    await page.screenshot({ path: `${process.env.SCREENSHOT_DIR ?? '/tmp'}/cardpulse-dashboard-token-open.png`, fullPage: true })

    // In a fresh tab, the token in the fragment opens the page and leaves the address.
    const linked = await browser.newPage()
    await linked.goto(`${base}/?trigger=activation_reminder#token=${TOKEN}`)
    await expect.poll(() => linked.locator('#meta').textContent(), { timeout: 15_000 }).toMatch(/^demo · catalogue/)
    expect(await linked.locator('#access').isVisible()).toBe(false)
    expect(linked.url()).toBe(`${base}/?trigger=activation_reminder`)

    demo!.kill('SIGINT')
    expect(await new Promise((r) => demo!.once('exit', r))).toBe(0)
  }, 180_000)
})
