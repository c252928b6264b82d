import { readFileSync, readdirSync, statSync } from 'node:fs'
import { dirname, join, normalize, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

/**
 * The folders are layers (docs/architecture.md, "Where things live"): a file imports only from its
 * own folder or one below it, and no files import each other round in a circle.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url))

/** What each folder may import, besides itself. */
const MAY_IMPORT: Record<string, string[]> = {
  bench: ['commands', 'pipeline', 'sinks', 'simulator', 'operators', 'core', 'schemas'],
  commands: ['pipeline', 'sinks', 'simulator', 'operators', 'core', 'schemas'],
  dashboards: ['pipeline', 'sinks', 'core', 'schemas'],
  pipeline: ['sinks', 'operators', 'core', 'schemas'],
  sinks: ['core', 'schemas'],
  simulator: ['core', 'schemas'],
  operators: ['schemas'],
  core: [],
  schemas: [],
}

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir)).flatMap((name) => {
    const rel = join(dir, name)
    if (statSync(join(ROOT, rel)).isDirectory()) return name === 'node_modules' ? [] : sources(rel)
    return /\.(ts|js)$/.test(name) && !name.endsWith('.d.ts') ? [rel] : []
  })
}

/** Relative imports of a file (static, dynamic and `new URL` workers), as paths from the root. */
function importsOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8')
  const specs = [...text.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*|new URL\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g)].map((m) => m[1])
  return specs.filter((s) => /\.(ts|js)$/.test(s)).map((s) => normalize(join(dirname(file), s)))
}

const folderOf = (file: string) => file.split('/')[0]
const files = Object.keys(MAY_IMPORT).flatMap(sources)
const graph = new Map(files.map((f) => [f, importsOf(f)]))

describe('layers', () => {
  it('finds the source files and their imports', () => {
    expect(files.length).toBeGreaterThan(100)
    expect(graph.get('commands/run.ts')).toContain('pipeline/kafka/ingest.ts')
  })

  it('has no import from a folder to one above it', () => {
    const upward: string[] = []
    for (const [file, imports] of graph) {
      const from = folderOf(file)
      for (const target of imports) {
        const to = folderOf(target)
        if (to !== from && !MAY_IMPORT[from].includes(to)) upward.push(`${file} → ${relative(ROOT, join(ROOT, target))}`)
      }
    }
    expect(upward).toEqual([])
  })

  it('has no circle of imports between files', () => {
    const state = new Map<string, 'open' | 'done'>()
    const circles: string[] = []
    const visit = (file: string, path: string[]) => {
      if (state.get(file) === 'done') return
      if (state.get(file) === 'open') {
        circles.push([...path.slice(path.indexOf(file)), file].join(' → '))
        return
      }
      state.set(file, 'open')
      for (const next of graph.get(file) ?? []) if (graph.has(next)) visit(next, [...path, file])
      state.set(file, 'done')
    }
    for (const file of graph.keys()) visit(file, [])
    expect(circles).toEqual([])
  })
})
