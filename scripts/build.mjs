#!/usr/bin/env node
// Compiles the TypeScript sources to plain JavaScript in dist/ (with declarations), and copies the
// files the code reads at run time (catalogue, Lua scripts, SQL, the dashboard page, the sample
// bank) beside them, so an installed copy runs on `node` alone: `npm ci --omit=dev`, no compiler.
// Runs as `npm run build`, and as the `prepare` step of every `npm ci` in a checkout.
import { spawnSync } from 'node:child_process'
import { cpSync, existsSync, readdirSync, rmSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const dist = join(root, 'dist')
const SOURCES = ['commands', 'core', 'pipeline', 'operators', 'schemas', 'sinks', 'dashboards', 'simulator']

let tsc
try {
  tsc = join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc')
} catch {
  // An install without dev dependencies cannot compile; a build made before it still runs.
  console.warn(existsSync(join(dist, 'commands', 'cli.js'))
    ? 'cardpulse build: TypeScript is not installed; keeping the existing dist/'
    : 'cardpulse build: TypeScript is not installed and there is no dist/: run `npm ci` with dev dependencies, then `npm run build`')
  process.exit(0)
}

rmSync(dist, { recursive: true, force: true })
const compiled = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' })
if (compiled.status !== 0) process.exit(compiled.status ?? 1)

// Everything but code: sources are compiled above, and hand-written .js (the tsx entry of a
// replay thread) has a compiled twin that needs no loader.
function copyAssets(dir) {
  for (const name of readdirSync(join(root, dir))) {
    const rel = join(dir, name)
    if (statSync(join(root, rel)).isDirectory()) copyAssets(rel)
    else if (!['.ts', '.js'].includes(extname(name))) cpSync(join(root, rel), join(dist, rel))
  }
}
for (const dir of SOURCES) copyAssets(dir)
console.log('cardpulse build: dist/ ready')
