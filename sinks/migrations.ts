import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import type { ClickHouseClient } from '@clickhouse/client'

/**
 * Versioned schema migrations for the analytics database. The files
 * dashboards/clickhouse/migrations/NNN_name.sql are applied in order of NNN, each once per
 * database, and recorded in `{db}.schema_migrations` (version, name, applied_at). The same DDL runs
 * on chDB and on a ClickHouse server. Each statement is itself idempotent (IF NOT EXISTS, ADD
 * COLUMN IF NOT EXISTS), so a migration cut short by a crash is simply run again in full; and a
 * database created by the old single schema.sql (which had no schema_migrations table) upgrades by
 * running every migration, the first of which finds its tables already there.
 */

export const MIGRATIONS_DIR = fileURLToPath(new URL('../dashboards/clickhouse/migrations/', import.meta.url))

export interface Migration {
  version: number
  name: string
  statements: string[]
}

/** The migrations in a directory, in order. A file not named NNN_name.sql is an error, as is a repeated NNN. */
export function listMigrations(dir = MIGRATIONS_DIR): Migration[] {
  const files = readdirSync(dir).filter((f) => !f.startsWith('.')).sort()
  const seen = new Set<number>()
  return files.map((file) => {
    const m = /^(\d{3,})_([a-z0-9_]+)\.sql$/.exec(file)
    if (!m) throw new Error(`migration file ${file} is not named NNN_name.sql`)
    const version = Number(m[1])
    if (seen.has(version)) throw new Error(`two migrations are numbered ${m[1]}`)
    seen.add(version)
    return { version, name: m[2], statements: splitStatements(readFileSync(join(dir, file), 'utf8')) }
  })
}

export interface MigrationReport {
  applied: { version: number; name: string }[]
  alreadyApplied: number[]
}

/** Applies the migrations not yet recorded in `{database}.schema_migrations`, in order. */
export async function migrate(client: ClickHouseClient, database: string, migrations = listMigrations()): Promise<MigrationReport> {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(database)) throw new Error(`"${database}" is not a valid database name`)
  await client.command({ query: `CREATE DATABASE IF NOT EXISTS ${database}` })
  await client.command({
    query: `CREATE TABLE IF NOT EXISTS ${database}.schema_migrations (
      version UInt32,
      name String,
      applied_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree ORDER BY version`,
  })
  const rs = await client.query({ query: `SELECT DISTINCT version FROM ${database}.schema_migrations`, format: 'JSONEachRow' })
  const done = new Set(((await rs.json()) as { version: number | string }[]).map((r) => Number(r.version)))
  const report: MigrationReport = { applied: [], alreadyApplied: [] }
  for (const m of migrations) {
    if (done.has(m.version)) {
      report.alreadyApplied.push(m.version)
      continue
    }
    for (const statement of m.statements) {
      const query = statement.replaceAll('{db}', database)
      try {
        await client.command({ query })
      } catch (e) {
        throw new Error(`schema migration ${String(m.version).padStart(3, '0')}_${m.name} failed: ${(e as Error).message}`)
      }
    }
    await client.insert({
      table: `${database}.schema_migrations`,
      values: [{ version: m.version, name: m.name, applied_at: new Date().toISOString().replace('T', ' ').replace('Z', '') }],
      format: 'JSONEachRow',
    })
    report.applied.push({ version: m.version, name: m.name })
  }
  return report
}

/** Splits a file into statements on `;` at line ends, dropping comment lines (no `;` inside a statement's text). */
export function splitStatements(sql: string): string[] {
  return sql
    .split('\n')
    .filter((line) => !line.trim().startsWith('--'))
    .join('\n')
    .split(/;\s*(?:\n|$)/)
    .map((s) => s.trim())
    .filter(Boolean)
}
