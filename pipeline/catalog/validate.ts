import { ZodError } from 'zod'
import type { Catalog } from '../../schemas/catalog.ts'
import type { Operator } from '../../operators/types.ts'
import { SERVICE_TRIGGERS } from '../policy.ts'
import { AlertKind } from '../../schemas/alert.ts'

/**
 * What zod alone cannot check: that every trigger and signal names something the pipeline can
 * detect, and that its params are the ones its operator understands.
 */
export function catalogProblems(catalog: Catalog, operators: readonly Operator<any, any>[]): string[] {
  const problems: string[] = []
  const signals = new Set<string>(AlertKind.options)
  const detectable = operators.map((o) => o.uses)
  const known = {
    triggers: [...detectable.filter((n) => !signals.has(n)), ...SERVICE_TRIGGERS].sort(),
    signals: detectable.filter((n) => signals.has(n)).sort(),
  }
  for (const section of ['triggers', 'signals'] as const) {
    for (const name of Object.keys(catalog[section])) {
      if (!known[section].includes(name))
        problems.push(`${section}.${name}: no such ${section.slice(0, -1)}; known ones are ${known[section].join(', ') || 'none'}`)
    }
  }
  for (const op of operators) {
    const section = op.uses in catalog.triggers ? 'triggers' : 'signals'
    const entry = catalog.triggers[op.uses] ?? catalog.signals[op.uses]
    if (!entry) continue
    try {
      op.parseParams(entry.params)
    } catch (e) {
      if (!(e instanceof ZodError)) throw e
      for (const issue of e.issues) problems.push(`${section}.${op.uses}.params.${issue.path.join('.')}: ${issue.message}`)
    }
  }
  const { circuitBreaker, degradedAfter } = catalog.delivery
  if (degradedAfter < circuitBreaker.openFor)
    problems.push(`delivery.degradedAfter: must be at least circuitBreaker.openFor (${circuitBreaker.openFor / 1000}s), or one probe interval would already count as degraded`)
  return problems
}
