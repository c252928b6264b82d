import { createReadStream, statSync } from 'node:fs'
import { StringDecoder } from 'node:string_decoder'
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

/** Lines handed on per batch: large enough that per-batch awaits cost nothing per line. */
const BATCH_LINES = 1024

/** One file's decoded lines, a batch at a time (chunked reading: no per-line promise). */
async function* readOne(path: string, opts: NdjsonOptions, count: (n: number) => void): AsyncGenerator<SourceItem[]> {
  const input = path === '-' ? (opts.stdin ?? process.stdin) : createReadStream(path, { highWaterMark: 256 * 1024 })
  const topic = path === '-' ? 'stdin' : path
  const text = new StringDecoder('utf8')
  let rest = ''
  let lineNo = 0
  const decodeLine = (line: string, out: SourceItem[]) => {
    lineNo++
    if (line.endsWith('\r')) line = line.slice(0, -1)
    if (!line.trim()) return
    const source = { topic, partition: 0, offset: String(lineNo) }
    const decoded = decode(line, source, undefined, opts.now ?? null)
    out.push(decoded.ok ? { ok: true, event: decoded.event, at: Date.parse(decoded.event.occurredAt), source } : decoded)
  }
  for await (const chunk of input) {
    count(typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length)
    const lines = (rest + (typeof chunk === 'string' ? chunk : text.write(chunk))).split('\n')
    rest = lines.pop()!
    let out: SourceItem[] = []
    for (const line of lines) {
      decodeLine(line, out)
      if (out.length >= BATCH_LINES) {
        yield out
        out = []
      }
    }
    if (out.length) yield out
  }
  const out: SourceItem[] = []
  rest += text.end()
  if (rest) decodeLine(rest, out)
  if (out.length) yield out
}

/**
 * The files merged in event-time order (each file is taken to be in order already, as a topic
 * is), in batches. Dead letters carry no usable time and are passed on as soon as they are read.
 */
export async function* readNdjsonBatches(paths: string[], opts: NdjsonOptions = {}): AsyncGenerator<SourceItem[]> {
  let bytes = 0
  const count = (n: number) => {
    bytes += n
    opts.onBytes?.(bytes)
  }
  const readers = paths.map((p) => readOne(p, opts, count))
  const buffers: SourceItem[][] = await Promise.all(readers.map(async (r) => (await r.next()).value ?? []))
  const next = buffers.map(() => 0)
  let out: SourceItem[] = []
  for (;;) {
    let pick = -1
    let best = Infinity
    for (let i = 0; i < buffers.length; i++) {
      const h = buffers[i][next[i]]
      if (!h) continue
      if (!h.ok) {
        pick = i
        break
      }
      if (h.at < best) {
        best = h.at
        pick = i
      }
    }
    if (pick < 0) break
    out.push(buffers[pick][next[pick]++])
    if (next[pick] === buffers[pick].length) {
      buffers[pick] = (await readers[pick].next()).value ?? []
      next[pick] = 0
    }
    if (out.length >= BATCH_LINES) {
      yield out
      out = []
    }
  }
  if (out.length) yield out
}
