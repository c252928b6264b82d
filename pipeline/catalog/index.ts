import { readFileSync, statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import YAML from 'yaml'
import type { z } from 'zod'
import { Catalog } from '../../schemas/catalog.ts'
import { OPERATORS } from '../../operators/index.ts'
import { catalogProblems } from './validate.ts'
import { ConfigError } from '../../core/errors.ts'

/** Loading, validation and live reload of the trigger catalogue. */

export const DEFAULT_CATALOG_FILE = fileURLToPath(new URL('./default.yaml', import.meta.url))

/** A catalogue that cannot be used; the one in force (if any) stays. */
export class CatalogError extends ConfigError {}

/**
 * Loads a shadow (draft) catalogue: as loadCatalogFile, but a bad one is said to be the shadow
 * catalogue, set by SHADOW_CATALOG_FILE.
 */
export function loadShadowCatalogFile(file: string): Catalog {
  try {
    return loadCatalogFile(file)
  } catch (e) {
    if (!(e instanceof CatalogError)) throw e
    throw new CatalogError(`shadow catalogue: ${e.message.replace('check CATALOG_FILE', 'check SHADOW_CATALOG_FILE')}`)
  }
}

/** Parses catalogue text (YAML or JSON) into a validated catalogue, or throws a readable CatalogError. */
export function parseCatalog(text: string, origin: string): Catalog {
  let raw: unknown
  try {
    raw = YAML.parse(text, { logLevel: 'error' }) // problems are reported as one CatalogError line, not printed
  } catch (e) {
    throw new CatalogError(`${origin}: not valid YAML/JSON: ${(e as Error).message.split('\n')[0]}`)
  }
  const parsed = Catalog.safeParse(raw)
  if (!parsed.success) throw new CatalogError(`${origin}: ${describeIssues(parsed.error)}`)
  const problems = catalogProblems(parsed.data, OPERATORS)
  if (problems.length) throw new CatalogError(`${origin}: ${problems.slice(0, 5).join('; ')}`)
  return parsed.data
}

export function loadCatalogFile(file = DEFAULT_CATALOG_FILE): Catalog {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (e) {
    throw new CatalogError(`cannot read catalogue ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}; check CATALOG_FILE`)
  }
  return parseCatalog(text, file)
}

export function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${/received undefined$/.test(i.message) ? 'is required' : i.message}`)
    .join('; ')
}

/** The catalogue in force; a reload that fails validation leaves the old one in force. */
export class CatalogHolder {
  private catalog: Catalog
  /** The file's size and modification time when it was last read. */
  private readStamp: string
  private poller?: NodeJS.Timeout

  constructor(
    readonly file: string,
    private readonly onChange: (event: { ok: true; version: string } | { ok: false; error: string }) => void = () => {},
  ) {
    this.readStamp = stampOf(file)
    this.catalog = loadCatalogFile(file)
  }

  readonly current = (): Catalog => this.catalog

  reload(): { ok: true; version: string } | { ok: false; error: string } {
    this.readStamp = stampOf(this.file) // before reading: a write after it is seen by the next poll
    try {
      this.catalog = loadCatalogFile(this.file)
      const result = { ok: true as const, version: this.catalog.version }
      this.onChange(result)
      return result
    } catch (e) {
      const result = { ok: false as const, error: (e as Error).message }
      this.onChange(result)
      return result
    }
  }

  /**
   * Reloads when the file changes on disk (polling: works on every file system and in
   * containers). Each poll compares with the file as last read, so a change made while watching
   * starts is not missed, as it can be with fs.watchFile, whose baseline is taken asynchronously.
   */
  watch(intervalMs = 1000) {
    if (this.poller) return
    this.poller = setInterval(() => {
      if (stampOf(this.file) !== this.readStamp) this.reload()
    }, intervalMs)
    this.poller.unref()
  }

  close() {
    clearInterval(this.poller)
    this.poller = undefined
  }
}

function stampOf(file: string): string {
  try {
    const s = statSync(file)
    return `${s.size}:${s.mtimeMs}:${s.ino}`
  } catch {
    return 'missing'
  }
}
