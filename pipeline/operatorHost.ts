import type { Catalog } from '../schemas/catalog.ts'
import type { Operator, OperatorContext } from '../operators/types.ts'
import { initialProfile } from '../operators/profile.ts'
import { initialFacts } from '../operators/facts.ts'
import type { CustomerRecord } from './store/types.ts'

/**
 * Hosts the operators for a partition's processor: their params from the catalogue in force, their
 * states in the customer record, the context they read, and which of them owns a timer.
 */
export class OperatorHost {
  private paramsFor?: { catalog: Catalog; params: readonly unknown[] }
  private readonly initials: unknown[] = []
  /** Operator name → operator index. */
  private readonly byName = new Map<string, number>()
  // One object, refilled per call: operators must not keep the context (as in Flink).
  private readonly ctx: OperatorContext = { customerId: '', profile: initialProfile(), facts: initialFacts(), params: undefined }

  constructor(
    readonly operators: readonly Operator<any, any>[],
    private readonly catalog: () => Catalog,
  ) {
    operators.forEach((op, i) => this.byName.set(op.name, i))
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

  /** The index of the operator that owns a timer of this name, or -1. */
  indexOf(name: string): number {
    return this.byName.get(name) ?? -1
  }

  /** The operator's state for this customer. */
  state(index: number, rec: CustomerRecord): unknown {
    return rec.ops[this.operators[index].name] ?? this.initial(index)
  }

  /** Stores an operator's new state; an empty one is left out, as most customers trip most rules never. */
  keepState(index: number, rec: CustomerRecord, state: unknown) {
    const name = this.operators[index].name
    if (state === rec.ops[name]) return
    if (state && typeof state === 'object' && !Array.isArray(state) && isEmpty(state)) delete rec.ops[name]
    else rec.ops[name] = state
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

function isEmpty(o: object): boolean {
  for (const _ in o) return false
  return true
}
