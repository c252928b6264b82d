import { createWriteStream, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { once } from 'node:events'
import type { InputEvent } from '../schemas/events.ts'

/** Writes events as three per-stream NDJSON files, the way the three Kafka topics carry them. */
export const STREAM_FILES = { transaction: 'transactions.ndjson', app: 'app-events.ndjson', lifecycle: 'lifecycle.ndjson' } as const

export async function writeStreams(dir: string, events: Iterable<InputEvent>, extraLines: Partial<Record<InputEvent['type'], string[]>> = {}) {
  mkdirSync(dir, { recursive: true })
  const streams = Object.fromEntries(
    Object.entries(STREAM_FILES).map(([type, file]) => [type, createWriteStream(join(dir, file))]),
  ) as Record<InputEvent['type'], ReturnType<typeof createWriteStream>>
  for (const e of events) if (!streams[e.type].write(JSON.stringify(e) + '\n')) await once(streams[e.type], 'drain')
  for (const [type, lines] of Object.entries(extraLines)) for (const l of lines ?? []) streams[type as InputEvent['type']].write(l + '\n')
  await Promise.all(Object.values(streams).map((s) => new Promise((resolve) => s.end(resolve))))
  return Object.values(STREAM_FILES).map((f) => join(dir, f))
}
