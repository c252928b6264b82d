import { join } from 'node:path'
import { writeFileSync, mkdirSync } from 'node:fs'
import type { ReplayConfig } from './config.ts'
import { loadCatalogFile } from './catalog/index.ts'
import { EmbeddedPipeline } from './embedded.ts'
import { readNdjson, totalBytes } from './sources/ndjson.ts'
import { NdjsonWriter } from '../sinks/files.ts'
import { progressBar } from './progress.ts'
import type { Logger } from './log.ts'

/**
 * `cardpulse replay`: the pipeline in event time over NDJSON files, on embedded state. Output is
 * reproducible byte for byte: decisions are dated at their event time and nothing reads the clock.
 */

export interface ReplaySummary {
  catalogVersion: string
  input: { events: number; applied: number; duplicates: number; late: number; deadLetters: number }
  decisions: { total: number; byTrigger: Record<string, Record<string, number>>; suppressedBy: Record<string, number> }
  alerts: { total: number; byKind: Record<string, number> }
  timersFired: number
}

export async function replay(config: ReplayConfig, log: Logger): Promise<ReplaySummary> {
  const catalog = loadCatalogFile(config.catalogFile)
  mkdirSync(config.out, { recursive: true })
  const out = {
    decisions: new NdjsonWriter(join(config.out, 'decisions.ndjson')),
    alerts: new NdjsonWriter(join(config.out, 'alerts.ndjson')),
    dlq: new NdjsonWriter(join(config.out, 'dlq.ndjson')),
  }
  const summary: ReplaySummary = {
    catalogVersion: catalog.version,
    input: { events: 0, applied: 0, duplicates: 0, late: 0, deadLetters: 0 },
    decisions: { total: 0, byTrigger: {}, suppressedBy: {} },
    alerts: { total: 0, byKind: {} },
    timersFired: 0,
  }
  const bar = progressBar('replay', config.progress ? totalBytes(config.input) : undefined)
  const engine = new EmbeddedPipeline({
    catalog: () => catalog,
    allowedLateness: config.allowedLateness,
    outbox: { webhooks: false, alerts: false, rows: false },
    onDeadLetter(q) {
      out.dlq.write(q)
      summary.input.deadLetters++
    },
    onOutput(o) {
      summary.input.applied += o.applied
      summary.input.duplicates += o.duplicates
      summary.input.late += o.late
      summary.timersFired += o.timersFired
      for (const d of o.decisions) {
        out.decisions.write(d)
        const byOutcome = (summary.decisions.byTrigger[d.trigger] ??= { send: 0, control: 0, suppressed: 0 })
        byOutcome[d.outcome]++
        if (d.suppressedBy) summary.decisions.suppressedBy[d.suppressedBy] = (summary.decisions.suppressedBy[d.suppressedBy] ?? 0) + 1
      }
      for (const a of o.alerts) {
        out.alerts.write(a)
        summary.alerts.byKind[a.kind] = (summary.alerts.byKind[a.kind] ?? 0) + 1
      }
      for (const q of o.deadLetters) out.dlq.write(q)
      summary.decisions.total += o.decisions.length
      summary.alerts.total += o.alerts.length
      bar.events(summary.input.applied)
    },
  })
  const started = Date.now()
  bar.start()
  try {
    await engine.run(readNdjson(config.input, { onBytes: (b) => bar.bytes(b) }))
  } finally {
    bar.stop()
    for (const w of Object.values(out)) w.close()
  }
  summary.input.deadLetters += summary.input.late
  summary.input.events = summary.input.applied + summary.input.duplicates + summary.input.deadLetters
  writeFileSync(join(config.out, 'summary.json'), JSON.stringify(summary, null, 2) + '\n')
  const seconds = (Date.now() - started) / 1000
  log.info(
    { events: summary.input.events, decisions: summary.decisions.total, alerts: summary.alerts.total, deadLetters: summary.input.deadLetters, seconds, out: config.out },
    `replayed ${summary.input.events} events in ${seconds.toFixed(1)} s (${Math.round(summary.input.events / Math.max(seconds, 0.001))}/s): ${summary.decisions.total} decisions, ${summary.alerts.total} alerts, ${summary.input.deadLetters} dead letters`,
  )
  return summary
}
