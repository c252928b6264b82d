import type { Catalog } from '../schemas/catalog.ts'
import type { Operator, OperatorContext } from '../operators/types.ts'
import { EVENT_TYPES, type EventType } from '../schemas/events.ts'
import { initialProfile } from '../operators/profile.ts'
import { initialFacts } from '../operators/facts.ts'
import type { CustomerRecord } from './store/types.ts'

/**
 * Hosts the operators for a partition's processor: their params from the catalogue in force, their
 * states in the customer record, the context they read, and which of them owns a timer.
 *
 * State written by an earlier release stays usable without a flush: state stored under one of an
 * operator's `formerNames` moves to its current name, and state stored under an older `version` is
 * migrated, both when a record is loaded (`adopt`), so the per-event path stays a plain lookup.
 * Timers cannot be adopted on load (the store hands out only due ones), so a timer under a former
 * name fires on its operator (`indexOf`), and the batch drops the former-name twins of a timer key
 * the operator sets or cancels.
 */
export class OperatorHost {
  private paramsFor?: { catalog: Catalog; params: readonly unknown[] }
  private readonly initials: unknown[] = []
  /** Current and former names → operator index. */
  private readonly byName = new Map<string, number>()
  /** Each operator's state version (1 unless raised). */
  private readonly versions: number[]
  /** Operators whose stored state may need adopting: renamed or versioned ones. */
  private readonly adopting: number[] = []
  /** Each operator's name, by index: where its state is kept in a record. */
  private readonly names: string[]
  /** Per event type, the indexes of the operators that react to it, in order. */
  private readonly receiving: Record<EventType, number[]>
  // One object, refilled per call: operators must not keep the context (as in Flink).
  private readonly ctx: OperatorContext = { customerId: '', profile: initialProfile(), facts: initialFacts(), params: undefined }

  constructor(
    readonly operators: readonly Operator<any, any>[],
    private readonly catalog: () => Catalog,
  ) {
    this.versions = operators.map((op) => op.version ?? 1)
    this.names = operators.map((op) => op.name)
    this.receiving = Object.fromEntries(
      EVENT_TYPES.map((type) => [type, operators.flatMap((op, i) => (!op.eventTypes || op.eventTypes.includes(type) ? [i] : []))]),
    ) as Record<EventType, number[]>
    operators.forEach((op, i) => this.name(op.name, i))
    operators.forEach((op, i) => {
      for (const former of op.formerNames ?? []) this.name(former, i)
      if (op.formerNames?.length || this.versions[i] > 1) this.adopting.push(i)
      if (this.versions[i] > 1 && !op.migrate) throw new Error(`operator ${op.name} is at state version ${this.versions[i]} but has no migrate`)
    })
  }

  private name(name: string, index: number) {
    // One name for two operators would hand one's state and timers to the other.
    if (this.byName.has(name)) throw new Error(`operator name ${name} is used twice (as a name or a former name)`)
    this.byName.set(name, index)
  }

  /**
   * Each operator's params (by index) from the catalogue in force, or undefined where its entry is
   * disabled or absent. Parsed once per catalogue version.
   */
  params(): readonly unknown[] {
    const catalog = this.catalog()
    if (this.paramsFor?.catalog !== catalog)
      this.paramsFor = {
        catalog,
        params: this.operators.map((op) => {
          const entry = catalog.triggers[op.uses] ?? catalog.signals[op.uses]
          return entry && entry.enabled ? op.parseParams(entry.params) : undefined
        }),
      }
    return this.paramsFor.params
  }

  /** The indexes of the operators that react to events of this type, in order. */
  receivers(type: EventType): readonly number[] {
    return this.receiving[type]
  }

  /** The index of the operator that owns a timer of this name (current or former), or -1. */
  indexOf(name: string): number {
    return this.byName.get(name) ?? -1
  }

  /** The operator's state for this customer (adopted on load: see `adopt`). */
  state(index: number, rec: CustomerRecord): unknown {
    return rec.ops[this.names[index]] ?? this.initial(index)
  }

  /** Stores an operator's new state. */
  keepState(index: number, rec: CustomerRecord, state: unknown) {
    if (state !== rec.ops[this.names[index]]) this.store(index, rec, state)
  }

  /**
   * Brings a record loaded from the store up to the running operators: state under a former name
   * moves to the current one (where both exist, the current one wins), and state of an older version
   * is migrated. Changes the record in place; it is written back with the customer's next change.
   */
  adopt(rec: CustomerRecord) {
    for (const i of this.adopting) {
      const op = this.operators[i]
      for (const former of op.formerNames ?? []) {
        if (rec.ops[former] === undefined) continue
        if (rec.ops[op.name] === undefined) {
          rec.ops[op.name] = rec.ops[former]
          setVersion(rec, op.name, rec.opv?.[former] ?? 1)
        }
        delete rec.ops[former]
        setVersion(rec, former, 1)
      }
      const stored = rec.opv?.[op.name] ?? 1
      // A newer version (this release is a rollback) cannot be migrated down; it is kept as stored.
      if (stored >= this.versions[i]) continue
      if (rec.ops[op.name] === undefined) setVersion(rec, op.name, 1)
      else this.store(i, rec, op.migrate!(rec.ops[op.name], stored))
    }
  }

  /**
   * An empty state is left out, as most customers trip most rules never; so is version 1. The
   * version recorded is always the writer's, also after a rollback to an older release.
   */
  private store(index: number, rec: CustomerRecord, state: unknown) {
    const name = this.names[index]
    const versioned = this.versions[index] > 1 || rec.opv !== undefined
    if (state && typeof state === 'object' && !Array.isArray(state) && isEmpty(state)) {
      delete rec.ops[name]
      if (versioned) setVersion(rec, name, 1) // no state is the initial one, of any version
    } else {
      rec.ops[name] = state
      if (versioned) setVersion(rec, name, this.versions[index])
    }
  }

  /** The operator's initial state, made once: operators never change the state they are given. */
  initial(index: number): unknown {
    return (this.initials[index] ??= Object.freeze(this.operators[index].initial()))
  }

  context(customerId: string, rec: CustomerRecord, params: unknown): OperatorContext {
    rec.facts ??= initialFacts() // records written before facts existed
    const ctx = this.ctx
    ctx.customerId = customerId
    ctx.profile = rec.profile
    ctx.facts = rec.facts
    ctx.params = params
    return ctx
  }
}

/** Records the state version of an operator's state; version 1 is left out, so most records carry none. */
function setVersion(rec: CustomerRecord, name: string, version: number) {
  if (version > 1) (rec.opv ??= {})[name] = version
  else if (rec.opv && name in rec.opv) {
    delete rec.opv[name]
    if (isEmpty(rec.opv)) delete rec.opv
  }
}

function isEmpty(o: object): boolean {
  for (const _ in o) return false
  return true
}
