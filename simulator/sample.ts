import { fileURLToPath } from 'node:url'
import { simulateSampleBank, badInputSamples, fraudScenarios } from './legacy.ts'
import { writeStreams } from './write.ts'

/** Regenerates the demo's bundled sample (simulator/sample/): `npx tsx simulator/sample.ts`. */
const dir = fileURLToPath(new URL('./sample/', import.meta.url))
const events = [...simulateSampleBank({ customers: 300, days: 45, start: new Date('2026-09-01T00:00:00Z'), seed: 7 }), ...fraudScenarios(new Date('2026-09-22T00:00:00Z'), 8)].sort((a, b) =>
  a.occurredAt < b.occurredAt ? -1 : a.occurredAt > b.occurredAt ? 1 : a.eventId < b.eventId ? -1 : 1,
)
const bad = badInputSamples('2026-09-20T10:00:00Z')
await writeStreams(dir, events, { transaction: bad.slice(0, 3), app: bad.slice(3) })
console.log(`${events.length} events and ${bad.length} malformed messages in ${dir}`)
