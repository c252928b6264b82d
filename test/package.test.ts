import { afterAll, describe, expect, it } from 'vitest'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * The project as a newcomer and an operator meet it: `npm start` in a checkout, a production
 * install without dev dependencies (what the Docker image holds), and a receiver's own npm project
 * that installs cardpulse by path to verify webhook signatures.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const scratch = mkdtempSync(join(tmpdir(), 'cardpulse-package-'))
let started: ChildProcess | undefined

afterAll(() => {
  if (started?.pid && started.exitCode === null) process.kill(-started.pid, 'SIGKILL')
  rmSync(scratch, { recursive: true, force: true })
})

function run(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 240_000 })
  return { code: r.status, out: `${r.stdout}${r.stderr}`, stdout: r.stdout }
}

describe('the package', () => {
  it('`npm start` in a checkout serves the dashboard', async () => {
    const port = 20_000 + Math.floor(Math.random() * 20_000)
    // Exactly what a newcomer types, through npm (which does not link the root package's own bin).
    started = spawn('npm', ['start'], { cwd: ROOT, detached: true, env: { ...process.env, HTTP_PORT: String(port), LOG_FORMAT: 'json' }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    started.stdout!.on('data', (c: Buffer) => (out += c))
    started.stderr!.on('data', (c: Buffer) => (out += c))
    const deadline = Date.now() + 90_000
    let page: string | undefined
    while (Date.now() < deadline && started.exitCode === null && page === undefined) {
      page = await fetch(`http://127.0.0.1:${port}/`).then((r) => (r.ok ? r.text() : undefined), () => undefined)
      if (page === undefined) await new Promise((r) => setTimeout(r, 500))
    }
    expect(page, `npm start did not serve / on ${port}:\n${out}`).toMatch(/<title>cardpulse/)
    process.kill(-started.pid!, 'SIGTERM')
  }, 120_000)

  const prod = join(scratch, 'cardpulse')
  it('installed without dev dependencies, runs on plain node from the build', () => {
    expect(run(process.execPath, ['scripts/build.mjs'], ROOT).code).toBe(0)
    mkdirSync(prod)
    // What the Docker image holds: the package files, the bin and the build, no sources; and the
    // build script, which npm runs as `prepare` when a receiver installs this copy by path.
    for (const name of ['package.json', 'package-lock.json', 'bin', 'dist', 'scripts/build.mjs']) cpSync(join(ROOT, name), join(prod, name), { recursive: true })
    const install = run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund'], prod)
    expect(install.code, install.out).toBe(0)
    expect(existsSync(join(prod, 'node_modules', 'tsx'))).toBe(false)
    expect(existsSync(join(prod, 'node_modules', 'typescript'))).toBe(false)

    const cli = join(prod, 'bin', 'cardpulse.js')
    const help = run(process.execPath, [cli, '--help'], prod)
    expect(help.code, help.out).toBe(0)
    expect(help.stdout).toMatch(/Usage: cardpulse/)
    const runHelp = run(process.execPath, [cli, 'run', '--help'], prod)
    expect(runHelp.code, runHelp.out).toBe(0)
    expect(runHelp.stdout).toMatch(/KAFKA_BROKERS/)

    const sample = join(prod, 'dist', 'simulator', 'sample')
    const out = join(scratch, 'replay')
    const replay = run(process.execPath, [cli, 'replay', '--input', ...readdirSync(sample).map((f) => join(sample, f)), '--out', out, '--no-progress'], prod, { LOG_FORMAT: 'json' })
    expect(replay.code, replay.out).toBe(0)
    expect(replay.stdout).toMatch(/"msg":"replayed \d+ events/)
    expect(readdirSync(out).sort()).toEqual(expect.arrayContaining(['alerts.ndjson', 'decisions.ndjson', 'dlq.ndjson', 'summary.json']))
  }, 300_000)

  it('gives receivers `cardpulse/webhooks` to verify signatures, from their own npm project', () => {
    expect(existsSync(join(prod, 'dist')), 'needs the production copy of the test before').toBe(true)
    const receiver = join(scratch, 'receiver')
    mkdirSync(receiver)
    writeFileSync(join(receiver, 'package.json'), JSON.stringify({ name: 'receiver', version: '1.0.0', private: true, type: 'module' }))
    const install = run('npm', ['install', prod, '--prefer-offline', '--no-audit', '--no-fund'], receiver)
    expect(install.code, install.out).toBe(0)
    writeFileSync(
      join(receiver, 'check.js'),
      `import { signWebhook, verifyWebhook } from 'cardpulse/webhooks'
const body = '{"id":"d1"}', secret = 'receiver-secret-0123456789', ts = Math.floor(Date.now() / 1000)
const headers = { 'x-cardpulse-timestamp': String(ts), 'x-cardpulse-signature': signWebhook(secret, ts, body) }
console.log(JSON.stringify([verifyWebhook(secret, headers, body).ok, verifyWebhook(secret, headers, body + ' ').ok]))
`,
    )
    const check = run(process.execPath, ['check.js'], receiver)
    expect(check.code, check.out).toBe(0)
    expect(check.stdout.trim()).toBe('[true,false]')

    // TypeScript receivers get the types.
    writeFileSync(join(receiver, 'check.ts'), `import { verifyWebhook, type VerifyResult } from 'cardpulse/webhooks'\nconst r: VerifyResult = verifyWebhook('s', {}, '')\nexport const ok: boolean = r.ok\n`)
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
    const types = run(process.execPath, [tsc, '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--types', 'node', '--typeRoots', join(ROOT, 'node_modules', '@types'), 'check.ts'], receiver)
    expect(types.code, types.out).toBe(0)
  }, 120_000)
})
