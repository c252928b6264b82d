import { createReadStream, statSync } from 'node:fs'
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import type { InputEvent } from '../../schemas/events.ts'
import type { DeadLetter } from '../../schemas/deadLetter.ts'
import { decode, type SourceCoordinates } from '../decode.ts'

/**
 * NDJSON files of input events (any mix of the three types; `-` is stdin), streamed line by line
 * and merged across files in event-time order, so that three per-stream files replay as one.
 */

export type SourceItem =
  | { ok: true; event: InputEvent; at: number; source: SourceCoordinates }
  | { ok: false; deadLetter: DeadLetter }

export interface NdjsonOptions {
  /** Called with the number of bytes read so far, for progress bars. */
  onBytes?: (bytes: number) => void
  /** Receive time for dead letters; null (the default) leaves it out so that output is reproducible. */
  now?: number | null
  stdin?: Readable
}

export function totalBytes(paths: string[]): number | undefined {
  if (paths.includes('-')) return undefined
  return paths.reduce((sum, p) => sum + statSync(p).size, 0)
}

async function* readOne(path: string, opts: NdjsonOptions, count: (n: number) => void): AsyncGenerator<SourceItem> {
  const input = path === '-' ? (opts.stdin ?? process.stdin) : createReadStream(path)
  const lines = createInterface({ input, crlfDelay: Infinity })
  let lineNo = 0
  for await (const line of lines) {
    lineNo++
    count(Buffer.byteLength(line) + 1)
    if (!line.trim()) continue
    const source = { topic: path === '-' ? 'stdin' : path, partition: 0, offset: String(lineNo) }
    const decoded = decode(line, source, undefined, opts.now ?? null)
    yield decoded.ok ? { ok: true, event: decoded.event, at: Date.parse(decoded.event.occurredAt), source } : decoded
  }
}

export async function* readNdjson(paths: string[], opts: NdjsonOptions = {}): AsyncGenerator<SourceItem> {
  let bytes = 0
  const count = (n: number) => {
    bytes += n
    opts.onBytes?.(bytes)
  }
  const readers = paths.map((p) => readOne(p, opts, count))
  const heads: (SourceItem | undefined)[] = await Promise.all(readers.map(async (r) => (await r.next()).value ?? undefined))
  for (;;) {
    let pick = -1
    for (let i = 0; i < heads.length; i++) {
      const h = heads[i]
      if (!h) continue
      if (!h.ok) {
        pick = i // dead letters carry no usable time: pass them on at once
        break
      }
      const best = pick < 0 ? undefined : heads[pick]
      if (!best || (best.ok && h.at < best.at)) pick = i
    }
    if (pick < 0) return
    yield heads[pick]!
    heads[pick] = (await readers[pick].next()).value ?? undefined
  }
}
