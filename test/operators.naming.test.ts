import { describe, expect, it } from 'vitest'
import { OPERATORS } from '../operators/index.ts'
import { loadCatalogFile } from '../pipeline/catalog/index.ts'

/**
 * One name per operator: its `name` (which keys its state and timers) is the id of the catalogue
 * entry it serves, and the names of earlier releases stay reserved so stored state is still found.
 */
describe('operator names', () => {
  const catalog = loadCatalogFile()
  const names = OPERATORS.map((op) => op.name)

  it('are the ids of the catalogue entries the operators serve', () => {
    for (const op of OPERATORS) expect(op.name, `operator ${op.name} uses ${op.uses}`).toBe(op.uses)
  })

  it('are unique', () => {
    expect(new Set(names).size).toBe(names.length)
  })

  it('are each a trigger or a signal of the default catalogue', () => {
    const entries = new Set([...Object.keys(catalog.triggers), ...Object.keys(catalog.signals)])
    expect(names.filter((n) => !entries.has(n))).toEqual([])
  })

  it('never reuse a former name, neither as a current name nor twice', () => {
    const former = OPERATORS.flatMap((op) => op.formerNames ?? [])
    expect(former.filter((n) => names.includes(n))).toEqual([])
    expect(new Set(former).size).toBe(former.length)
  })
})
