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
  /** `at`: the event time the line claims, where one can be read; it keeps the line's place in the merge. */
  | { ok: false; deadLetter: DeadLetter; at?: number }

/** Another shard's line: it takes its place in the merge, and is not handed on. */
type Skipped = { ok: false; skipped: true; at?: number }
type Line = SourceItem | Skipped

export interface NdjsonOptions {
  /** Called with the number of bytes read so far, for progress bars. */
  onBytes?: (bytes: number) => void
  /** Receive time for dead letters; null (the default) leaves it out so that output is reproducible. */
  now?: number | null
  stdin?: Readable
  /**
   * Reads one shard's share: the lines of the customers it owns, and, on the first shard, bad
   * lines that name no customer. The others are passed over unparsed where `peekLine` can place
   * them, and the merge order is that of the whole input, so shards see what one reader would.
   */
  shard?: { owns: (customerId: string) => boolean; first: boolean }
}

export function totalBytes(paths: string[]): number | undefined {
  if (paths.includes('-')) return undefined
  return paths.reduce((sum, p) => sum + statSync(p).size, 0)
}

/** Lines handed on per batch: large enough that per-batch awaits cost nothing per line. */
const BATCH_LINES = 1024

/** One file's lines, a batch at a time (chunked reading: no per-line promise). */
async function* readOne(path: string, opts: NdjsonOptions, count: (n: number) => void): AsyncGenerator<Line[]> {
  const input = path === '-' ? (opts.stdin ?? process.stdin) : createReadStream(path, { highWaterMark: 256 * 1024 })
  const topic = path === '-' ? 'stdin' : path
  const { shard } = opts
  const text = new StringDecoder('utf8')
  let rest = ''
  let lineNo = 0
  const readLine = (line: string, out: Line[]) => {
    lineNo++
    if (line.endsWith('\r')) line = line.slice(0, -1)
    if (!line.trim()) return
    const peeked = shard ? peekLine(line) : undefined
    if (shard && peeked && !shard.owns(peeked.customerId)) {
      out.push({ ok: false, skipped: true, at: peeked.at })
      return
    }
    const source = { topic, partition: 0, offset: String(lineNo) }
    const decoded = decode(line, source, undefined, opts.now ?? null)
    if (decoded.ok) {
      const at = Date.parse(decoded.event.occurredAt)
      out.push(!shard || shard.owns(decoded.event.customerId) ? { ok: true, event: decoded.event, at, source } : { ok: false, skipped: true, at })
      return
    }
    const placed = shard ? peeked : peekLine(line)
    const mine = !shard || (placed ? shard.owns(placed.customerId) : shard.first)
    out.push(mine ? { ...decoded, at: placed?.at } : { ok: false, skipped: true, at: placed?.at })
  }
  for await (const chunk of input) {
    count(typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length)
    const lines = (rest + (typeof chunk === 'string' ? chunk : text.write(chunk))).split('\n')
    rest = lines.pop()!
    let out: Line[] = []
    for (const line of lines) {
      readLine(line, out)
      if (out.length >= BATCH_LINES) {
        yield out
        out = []
      }
    }
    if (out.length) yield out
  }
  const out: Line[] = []
  rest += text.end()
  if (rest) readLine(rest, out)
  if (out.length) yield out
}

/**
 * The files merged in event-time order (each file is taken to be in order already, as a topic
 * is), in batches. Lines with no readable time (bad input) are passed on as soon as they are read.
 */
export async function* readNdjsonBatches(paths: string[], opts: NdjsonOptions = {}): AsyncGenerator<SourceItem[]> {
  let bytes = 0
  const count = (n: number) => {
    bytes += n
    opts.onBytes?.(bytes)
  }
  const readers = paths.map((p) => readOne(p, opts, count))
  const buffers: Line[][] = await Promise.all(readers.map(async (r) => (await r.next()).value ?? []))
  const next = buffers.map(() => 0)
  let out: SourceItem[] = []
  for (;;) {
    let pick = -1
    let best = Infinity
    for (let i = 0; i < buffers.length; i++) {
      const h = buffers[i][next[i]]
      if (!h) continue
      if (h.at === undefined) {
        pick = i
        break
      }
      if (h.at < best) {
        best = h.at
        pick = i
      }
    }
    if (pick < 0) break
    const line = buffers[pick][next[pick]++]
    if (!('skipped' in line)) out.push(line)
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

/**
 * The customer and event time a line names, read without parsing it, when that is certain to
 * agree with parsing: no escape sequence anywhere on the line, and each of the two keys once.
 * A shard passes over other shards' lines for the cost of this scan instead of a parse.
 */
export function peekLine(line: string): { customerId: string; at: number } | undefined {
  if (line.includes('\\')) return undefined
  const customerId = stringValue(line, '"customerId"')
  const occurredAt = customerId === undefined ? undefined : stringValue(line, '"occurredAt"')
  if (occurredAt === undefined) return undefined
  const at = Date.parse(occurredAt)
  return Number.isNaN(at) ? undefined : { customerId: customerId!, at }
}

function stringValue(line: string, key: string): string | undefined {
  const k = line.indexOf(key)
  if (k < 0 || line.indexOf(key, k + 1) >= 0) return undefined
  let i = k + key.length
  while (line[i] === ' ' || line[i] === '\t') i++
  if (line[i++] !== ':') return undefined
  while (line[i] === ' ' || line[i] === '\t') i++
  if (line[i++] !== '"') return undefined
  const end = line.indexOf('"', i)
  return end < 0 ? undefined : line.slice(i, end)
}
