import { join } from 'node:path'
import { mkdirSync, writeFileSync } from 'node:fs'
import type { Catalog } from '../schemas/catalog.ts'
import type { Decision } from '../schemas/decision.ts'
import type { RiskAlert } from '../schemas/alert.ts'
import type { DeadLetter } from '../schemas/deadLetter.ts'
import type { Conversion } from '../schemas/conversion.ts'
import { NdjsonWriter } from '../sinks/files.ts'
import type { ClickHouseSink } from '../sinks/clickhouse.ts'
import { roiFromRows } from './analytics/roiFromRows.ts'
import type { RoiRow } from './analytics/roi.ts'

/**
 * What `replay` (and `demo --out`) write: decisions.ndjson, alerts.ndjson, dlq.ndjson,
 * conversions.ndjson and summary.json. Sorted, so the bytes do not depend on how the work was
 * shared or interleaved.
 */

export interface ReplaySummary {
  catalogVersion: string
  /** `late`: dead-lettered beyond the allowed lateness; `lateApplied`: behind the watermark but within it, applied (also in `applied`). */
  input: { events: number; applied: number; duplicates: number; late: number; lateApplied: number; deadLetters: number }
  decisions: { total: number; byTrigger: Record<string, Record<string, number>>; suppressedBy: Record<string, number> }
  alerts: { total: number; byKind: Record<string, number> }
  timersFired: number
  /**
   * ROI per trigger (CONTRACT §3, §5), computed by embedded ClickHouse from the decisions and
   * conversion windows with the dashboards' query. A replay sends nothing, so every send decision
   * counts as delivered: cost = channel cost per send decision + offer value of the converted
   * treated decisions.
   */
  roi: RoiRow[]
  /** With a shadow catalogue: its decisions beside the live ones (shadow-decisions.ndjson). */
  shadow?: ShadowSummary
}

/** A shadow catalogue's decisions against the live ones of the same run. */
export interface ShadowSummary {
  catalogVersion: string
  decisions: { total: number; byTrigger: Record<string, Record<string, number>>; suppressedBy: Record<string, number> }
  /** Send decisions × their channel's cost: the live ones under the live catalogue's economics, the shadow ones under the draft's. */
  predictedChannelCost: { live: number; shadow: number }
}

export interface PipelineResults {
  decisions: Decision[]
  alerts: RiskAlert[]
  deadLetters: DeadLetter[]
  conversions: Conversion[]
  /** A shadow catalogue's decisions, when one ran. */
  shadowDecisions?: Decision[]
  applied: number
  duplicates: number
  late: number
  lateApplied: number
  timersFired: number
}

/**
 * `clickhouse`: a connection to compute the ROI in (a scratch database); default: embedded chDB in
 * memory. `shadowCatalog`: the draft that made `r.shadowDecisions`, if one ran.
 */
export async function writeResults(dir: string, r: PipelineResults, catalog: Catalog, clickhouse?: ClickHouseSink, shadowCatalog?: Catalog): Promise<ReplaySummary> {
  mkdirSync(dir, { recursive: true })
  const decisions = [...r.decisions].sort(byTimeThenId)
  const alerts = [...r.alerts].sort(byTimeThenId)
  const deadLetters = [...r.deadLetters].sort(
    (a, b) => (a.source.topic < b.source.topic ? -1 : a.source.topic > b.source.topic ? 1 : Number(a.source.offset) - Number(b.source.offset) || (a.id < b.id ? -1 : 1)),
  )
  const conversions = [...r.conversions].sort(
    (a, b) => (a.decisionTime < b.decisionTime ? -1 : a.decisionTime > b.decisionTime ? 1 : a.decisionId < b.decisionId ? -1 : a.decisionId > b.decisionId ? 1 : 0),
  )
  writeNdjson(join(dir, 'decisions.ndjson'), decisions)
  writeNdjson(join(dir, 'alerts.ndjson'), alerts)
  writeNdjson(join(dir, 'dlq.ndjson'), deadLetters)
  writeNdjson(join(dir, 'conversions.ndjson'), conversions)

  const summary: ReplaySummary = {
    catalogVersion: catalog.version,
    input: { events: r.applied + r.duplicates + deadLetters.length, applied: r.applied, duplicates: r.duplicates, late: r.late, lateApplied: r.lateApplied, deadLetters: deadLetters.length },
    decisions: { total: decisions.length, byTrigger: {}, suppressedBy: {} },
    alerts: { total: alerts.length, byKind: {} },
    timersFired: r.timersFired,
    roi: [],
  }
  countDecisions(decisions, summary.decisions)
  for (const a of alerts) summary.alerts.byKind[a.kind] = (summary.alerts.byKind[a.kind] ?? 0) + 1
  summary.roi = await roiFromRows({ decisions, conversions, catalog, clickhouse })
  if (shadowCatalog && r.shadowDecisions) {
    const shadow = [...r.shadowDecisions].sort(byTimeThenId)
    writeNdjson(join(dir, 'shadow-decisions.ndjson'), shadow)
    summary.shadow = {
      catalogVersion: shadowCatalog.version,
      decisions: countDecisions(shadow, { total: shadow.length, byTrigger: {}, suppressedBy: {} }),
      predictedChannelCost: { live: channelCost(decisions, catalog), shadow: channelCost(shadow, shadowCatalog) },
    }
  }
  writeFileSync(join(dir, 'summary.json'), JSON.stringify(summary, null, 2) + '\n')
  return summary
}

function countDecisions<T extends ReplaySummary['decisions']>(decisions: Decision[], into: T): T {
  for (const d of decisions) {
    const byOutcome = (into.byTrigger[d.trigger] ??= { send: 0, control: 0, suppressed: 0 })
    byOutcome[d.outcome]++
    if (d.suppressedBy) into.suppressedBy[d.suppressedBy] = (into.suppressedBy[d.suppressedBy] ?? 0) + 1
  }
  return into
}

/** Send decisions × their channel's cost under the catalogue's economics, to the cent. */
function channelCost(decisions: Decision[], catalog: Catalog): number {
  let cents = 0
  for (const d of decisions) if (d.outcome === 'send' && d.channel) cents += Math.round(catalog.economics.channelCost[d.channel] * 100)
  return cents / 100
}

const byTimeThenId = (a: { eventTime: string; id: string }, b: { eventTime: string; id: string }) =>
  a.eventTime < b.eventTime ? -1 : a.eventTime > b.eventTime ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0

function writeNdjson(path: string, values: unknown[]) {
  const w = new NdjsonWriter(path)
  for (const v of values) w.write(v)
  w.close()
}
