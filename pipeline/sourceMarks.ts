/**
 * Source watermarks, as Flink and Kafka Streams keep them: each input partition ("source",
 * `<topic>|<partition>`) says how far in event time it has come, and a partition of the state
 * stage moves its watermark to the minimum over its sources.
 *
 * Ingest side (`SourceClock`): per owned input partition, the newest event time forwarded less the
 * allowed disorder, and whether it is idle (read to its end and nothing forwarded for a while).
 * The ingest stage publishes these marks to every partition of the internal events topic after the
 * events they cover. State side (`mergeMarks`, `watermarkOf`): each partition keeps the newest mark
 * of every source it heard from (a new owner of a source re-reading from its committed offsets may
 * send lower ones), persisted with the partition's applied offset, and its watermark is the minimum
 * over the sources that are not idle. Pure bookkeeping, no I/O.
 */

/** What a source says in a watermark record: its event-time mark (epoch ms), or that it is idle. */
export type Mark = number | 'idle'

/** A watermark record on the internal events topic: one mark per source the sender owns. */
export type Marks = Record<string, Mark>

/** What a state partition knows of one source: its newest mark, and whether it is idle now. */
export interface SourceState {
  at: number
  idle?: true
}

export type SourceStates = Record<string, SourceState>

/** Before any mark: holds the watermark where it is. */
export const NO_MARK = -8.64e15

/** Folds a watermark record into what a partition knows; marks only move forward, idleness follows the latest word. */
export function mergeMarks(known: SourceStates, marks: Marks): SourceStates {
  const next: SourceStates = { ...known }
  foldMarks(next, marks)
  return next
}

/** `mergeMarks` into `known` itself, for a copy the caller owns: a batch of many records copies once. */
export function foldMarks(known: SourceStates, marks: Marks): void {
  for (const source in marks) {
    const mark = marks[source]
    const before = known[source]
    if (mark === 'idle') known[source] = { at: before?.at ?? NO_MARK, idle: true }
    else known[source] = { at: Math.max(before?.at ?? NO_MARK, mark) }
  }
}

/**
 * The partition's watermark by its sources: the minimum over the sources not idle, where a source
 * known to exist (`expected`) but never heard from counts as not started. When every source is
 * idle, the newest mark any of them reached (as Flink's valve does when all its inputs go idle):
 * everything forwarded has arrived. `undefined` when there is nothing to go by.
 */
export function watermarkOf(known: SourceStates, expected: Iterable<string> = []): number | undefined {
  let min = Infinity
  let newest = -Infinity
  let any = false
  for (const s of Object.values(known)) {
    any = true
    if (s.at > newest) newest = s.at
    if (!s.idle && s.at < min) min = s.at
  }
  for (const source of expected) {
    if (known[source]) continue
    any = true
    min = NO_MARK
  }
  if (!any) return undefined
  return min === Infinity ? newest : min
}

/** Whether every source a partition knows of (and every one expected) is idle. */
export function allIdle(known: SourceStates, expected: Iterable<string> = []): boolean {
  for (const source of expected) if (!known[source]) return false
  return Object.values(known).every((s) => s.idle)
}

/**
 * The ingest side: per owned input partition, its source mark. A partition's mark is the newest
 * event time it forwarded less `maxDisorder` and one millisecond (an event up to `maxDisorder`
 * older than the newest of its own partition is still in time). A partition read to its end with
 * nothing held that forwarded nothing for `idleness` is idle, until its next event; one that has
 * forwarded nothing yet and is not idle says nothing, so the state stage keeps waiting for it.
 */
export class SourceClock {
  private readonly sources = new Map<string, { newest: number; lastForward: number }>()

  constructor(
    private readonly maxDisorder: number,
    private readonly idleness: number,
    private readonly clock: () => number = Date.now,
  ) {}

  /**
   * The owned partitions after an assignment (none while a rebalance is under way). A partition
   * kept keeps its progress: what it forwarded is on the internal topic, and marks only move
   * forward downstream; its idleness counts from now.
   */
  assign(keys: string[]) {
    const now = this.clock()
    const before = new Map(this.sources)
    this.sources.clear()
    for (const key of keys) this.sources.set(key, { newest: before.get(key)?.newest ?? -Infinity, lastForward: now })
  }

  /** Events of a partition were forwarded (published). */
  forwarded(key: string, at: number | undefined) {
    const s = this.sources.get(key)
    if (!s) return // not owned any more
    if (at !== undefined && at > s.newest) s.newest = at
    s.lastForward = this.clock()
  }

  /**
   * The marks of every owned partition that has one, as if `pending` (events about to be
   * published before the marks) had been forwarded too. `drained`: whether a partition is read to
   * its end with nothing of it held.
   */
  marks(drained: (key: string) => boolean, pending: { key: string; at: number | undefined }[] = []): Marks {
    const now = this.clock()
    const newest = new Map<string, number>()
    for (const { key, at } of pending) newest.set(key, Math.max(newest.get(key) ?? -Infinity, at ?? -Infinity))
    const out: Marks = {}
    for (const [key, s] of this.sources) {
      const top = Math.max(s.newest, newest.get(key) ?? -Infinity)
      if (!newest.has(key) && drained(key) && now - s.lastForward >= this.idleness) out[key] = 'idle'
      else if (top > -Infinity) out[key] = top - this.maxDisorder - 1
    }
    return out
  }
}

/**
 * What a watermark record need say after `published`: the marks that changed. A state partition
 * folds records in order (`mergeMarks`), so one that has read the earlier records knows the rest;
 * `whole` sends them all, for a reader that starts later in the topic (a new group, retention).
 */
export function marksToSend(marks: Marks, published: Marks, whole: boolean): Marks {
  if (whole) return marks
  const changed: Marks = {}
  for (const [source, mark] of Object.entries(marks)) if (published[source] !== mark) changed[source] = mark
  return changed
}

/** Whether two sets of marks say the same. */
export function sameMarks(a: Marks, b: Marks): boolean {
  const ka = Object.keys(a)
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k])
}
