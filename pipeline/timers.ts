/** A pending event-time timer; `member` is `<customerId>|<name>:<key>` (see `timerMember`). */
export interface TimerEntry {
  member: string
  at: number
}

/**
 * A timer's member names its customer, its owner (an operator, or one of the runtime's own) and
 * the owner's key. The customer comes first, so the customer of a due timer is known without its
 * owner; a customer id never holds the separator, an owner's name never holds ':', a key may hold
 * anything.
 */
const CUSTOMER_SEPARATOR = '|'

export interface TimerMember {
  customerId: string
  name: string
  key: string
}

export function timerMember(customerId: string, name: string, key: string): string {
  return `${customerId}${CUSTOMER_SEPARATOR}${name}:${key}`
}

export function parseTimerMember(member: string): TimerMember {
  const separator = member.indexOf(CUSTOMER_SEPARATOR)
  const colon = member.indexOf(':', separator + 1)
  return { customerId: member.slice(0, separator), name: member.slice(separator + 1, colon), key: member.slice(colon + 1) }
}

/** The customer a timer belongs to. */
export function timerCustomer(member: string): string {
  return member.slice(0, member.indexOf(CUSTOMER_SEPARATOR))
}

/** Event-time timers of one partition: a min-heap on (at, member) with lazy deletion. */
export class TimerHeap {
  private heap: TimerEntry[] = []
  readonly due = new Map<string, number>()

  set(member: string, at: number) {
    this.due.set(member, at)
    this.push({ member, at })
    // Re-armed timers leave stale entries behind; rebuild before they outnumber the live ones.
    if (this.heap.length > 2 * this.due.size + 1024) this.compact()
  }

  private compact() {
    this.heap = []
    for (const [member, at] of this.due) this.push({ member, at })
  }

  delete(member: string) {
    this.due.delete(member) // stale heap entries are skipped when they surface
  }

  /** Removes and returns the earliest live timer due by `upTo`. */
  popDue(upTo: number): TimerEntry | undefined {
    while (this.heap.length && this.heap[0].at <= upTo) {
      const top = this.pop()
      if (this.due.get(top.member) !== top.at) continue
      this.due.delete(top.member)
      return top
    }
    return undefined
  }

  /** Live timers due by `upTo`, in (at, member) order, left in place. */
  peekDue(upTo: number): TimerEntry[] {
    const out: TimerEntry[] = []
    let t: TimerEntry | undefined
    while ((t = this.popDue(upTo))) out.push(t)
    for (const e of out) this.set(e.member, e.at)
    return out
  }

  get size() {
    return this.due.size
  }

  /** Entries held, stale ones included: what the heap's memory grows with. */
  get entries() {
    return this.heap.length
  }

  private less(a: TimerEntry, b: TimerEntry) {
    return a.at < b.at || (a.at === b.at && a.member < b.member)
  }

  private push(t: TimerEntry) {
    const h = this.heap
    h.push(t)
    let i = h.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.less(h[i], h[parent])) break
      ;[h[i], h[parent]] = [h[parent], h[i]]
      i = parent
    }
  }

  private pop(): TimerEntry {
    const h = this.heap
    const top = h[0]
    const last = h.pop()!
    if (h.length) {
      h[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < h.length && this.less(h[l], h[m])) m = l
        if (r < h.length && this.less(h[r], h[m])) m = r
        if (m === i) break
        ;[h[i], h[m]] = [h[m], h[i]]
        i = m
      }
    }
    return top
  }
}
