// Adds to package-lock.json the optional, other-platform packages that a registry mirror
// without them leaves out (chDB's macOS and arm64 engines, vite's Windows helper). Without
// their entries `npm ci` calls the lock out of sync everywhere; on a platform that does not
// match their os/cpu, npm skips them without fetching. Run after `npm install` on such a mirror.
import { readFileSync, writeFileSync } from 'node:fs'

const lock = JSON.parse(readFileSync('package-lock.json', 'utf8'))
const FOREIGN = {
  '@chdb/lib-darwin-arm64': { cpu: ['arm64'], os: ['darwin'] },
  '@chdb/lib-darwin-x64': { cpu: ['x64'], os: ['darwin'] },
  '@chdb/lib-linux-arm64-gnu': { cpu: ['arm64'], os: ['linux'], libc: ['glibc'] },
  'napi-windows-process-start-time': { os: ['win32'], dev: true, version: '0.1.0' },
}
const chdb = lock.packages['node_modules/chdb']
for (const [name, extra] of Object.entries(FOREIGN)) {
  const key = `node_modules/${name}`
  if (lock.packages[key]) continue
  const version = extra.version ?? chdb.optionalDependencies[name]
  const { version: _, ...fields } = extra
  lock.packages[key] = { version, resolved: `https://registry.npmjs.org/${name}/-/${name.split('/').pop()}-${version}.tgz`, optional: true, ...fields }
}
const sorted = Object.fromEntries(Object.entries(lock.packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : 1)))
writeFileSync('package-lock.json', JSON.stringify({ ...lock, packages: sorted }, null, 2) + '\n')
