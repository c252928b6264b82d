/**
 * Event-time alignment of the input partitions the ingest stage reads, in the spirit of Flink's
 * source watermark alignment. When the pipeline catches up on a backlog (a first start on
 * history, a restart after an outage), a sparse stream covers weeks of event time in the bytes a
 * dense one needs for seconds. Forwarded as fetched, the sparse stream's events would push every
 * watermark ahead and the dense stream's events would all arrive late. Instead each partition's
 * fetched batch is held here and released in event-time order, an event only once no partition
 * that still has a backlog can be more than `maxDrift` behind it. A partition with no backlog
 * holds nobody back: its next events are new ones.
 *
 * Pure bookkeeping: the ingest stage adds each batch, forwards what `release` gives, and fetches
 * a partition again only when `holding` says its batch has gone.
 */

export interface Held<T> {
  /** Event time; undefined for bad input, which is released as soon as it is first in line. */
  at: number | undefined
  item: T
}

/** A held item on its way out, with the input partition it came from. */
export interface Released<T> extends Held<T> {
  key: string
}

interface Partition<T> {
  /** The fetched batch, released from `next` on. */
  held: Held<T>[]
  next: number
  /** The newest event time released; -Infinity until the partition's first batch. */
  last: number
  /** Whether more input waits after what is held. */
  backlog: boolean
  /** Whether the held batch reaches the end of the partition. */
  drained: boolean
  /** When it was assigned, for the grace given to a partition that never reports. */
  since: number
}

export class InputAlignment<T> {
  private readonly partitions = new Map<string, Partition<T>>()

  /**
   * @param maxDrift how far (ms) an event may be ahead of a partition with a backlog
   * @param unknownGrace how long (ms, wall clock) a partition with a backlog but no batch yet holds the others
   */
  constructor(
    private readonly maxDrift: number,
    private readonly clock: () => number = Date.now,
    private readonly unknownGrace = 10_000,
  ) {}

  /** A new assignment: drops what is held (it is fetched again), and partitions with a backlog hold the others until they report. */
  assign(partitions: { key: string; backlog: boolean }[]) {
    this.partitions.clear()
    const now = this.clock()
    for (const { key, backlog } of partitions) this.partitions.set(key, { held: [], next: 0, last: -Infinity, backlog, drained: !backlog, since: now })
  }

  /** Takes a partition's fetched batch in; `drained` when it reaches the end of the partition. */
  add(key: string, batch: Held<T>[], drained: boolean) {
    let p = this.partitions.get(key)
    if (!p) this.partitions.set(key, (p = { held: [], next: 0, last: -Infinity, backlog: true, drained: false, since: this.clock() }))
    p.held = p.held.slice(p.next).concat(batch)
    p.next = 0
    p.drained = drained
    if (!p.held.length) p.backlog = !drained
  }

  /** Whether part of a partition's batch is still held: fetch it again only once it is not. */
  holding(key: string): boolean {
    const p = this.partitions.get(key)
    return !!p && p.next < p.held.length
  }

  /** Whether a partition is read to its end with nothing of it held: what it sends next is new. */
  drained(key: string): boolean {
    const p = this.partitions.get(key)
    return !!p && p.next >= p.held.length && !p.backlog
  }

  /** Events fetched and not yet released. */
  heldCount(): number {
    let n = 0
    for (const p of this.partitions.values()) n += p.held.length - p.next
    return n
  }

  /** Whether no input partition has a backlog or holds anything: what is read now is new. */
  caughtUp(): boolean {
    const now = this.clock()
    for (const p of this.partitions.values()) if (this.holds(p, now)) return false
    return true
  }

  /**
   * What may be forwarded now, oldest first across partitions. The oldest held event goes when
   * every other partition with a backlog has reached its time less `maxDrift`; once it cannot go,
   * no later one can either.
   */
  release(): Released<T>[] {
    const out: Released<T>[] = []
    const now = this.clock()
    for (;;) {
      let pick: [string, Partition<T>] | undefined
      let oldest = Infinity
      for (const entry of this.partitions) {
        const p = entry[1]
        if (p.next >= p.held.length) continue
        const at = p.held[p.next].at
        if (at === undefined) {
          pick = entry
          break
        }
        if (at < oldest) {
          oldest = at
          pick = entry
        }
      }
      if (!pick) break
      const [key, p] = pick
      const { at, item } = p.held[p.next]
      if (at !== undefined && at > this.limitFor(key, now)) break
      out.push({ key, at, item })
      if (at !== undefined && at > p.last) p.last = at
      if (++p.next === p.held.length) {
        p.held = []
        p.next = 0
        p.backlog = !p.drained
      }
    }
    return out
  }

  /** Puts released items back in front of what their partitions hold, when forwarding them failed: they go again next time. */
  restore(released: Released<T>[]) {
    const byPartition = new Map<string, Held<T>[]>()
    for (const { key, at, item } of released) {
      let list = byPartition.get(key)
      if (!list) byPartition.set(key, (list = []))
      list.push({ at, item })
    }
    for (const [key, items] of byPartition) {
      const p = this.partitions.get(key)
      if (!p) continue // reassigned since: fetched again from the committed offsets
      p.held = items.concat(p.held.slice(p.next))
      p.next = 0
    }
  }

  /** The newest event time a partition may release: `maxDrift` past the slowest other that holds. */
  private limitFor(key: string, now: number): number {
    let slowest = Infinity
    for (const [other, p] of this.partitions) {
      if (other === key || !this.holds(p, now)) continue
      const head = p.next < p.held.length ? (p.held[p.next].at ?? p.last) : p.last
      if (head < slowest) slowest = head
    }
    return slowest + this.maxDrift
  }

  /**
   * A partition holds the others while part of its batch waits, or while it has a backlog, unless
   * it has not sent a batch within the grace period.
   */
  private holds(p: Partition<T>, now: number): boolean {
    if (p.next < p.held.length) return true
    return p.backlog && !(p.last === -Infinity && now - p.since > this.unknownGrace)
  }
}
