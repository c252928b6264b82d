import type { Conversion } from '../schemas/conversion.ts'
import type { PipelineResults } from './results.ts'
import { loadCatalogFile, loadShadowCatalogFile } from './catalog/index.ts'
import { EmbeddedPipeline } from './embedded.ts'
import { partitionOf } from './partitioner.ts'
import { readNdjsonBatches } from './sources/ndjson.ts'

/**
 * One shard of a replay: every shard reads all of the input, and decodes and processes the lines
 * of the customers of the replay partitions it owns. The partition count is fixed, and each
 * partition sees its events in the order one reader would give them, so the results do not depend
 * on how many shards (threads) share the work.
 */

/** Divisible by 2, 3 and 4, so that customers spread evenly over the usual thread counts. */
export const REPLAY_PARTITIONS = 12

export interface ShardOptions {
  input: string[]
  shard: number
  shards: number
  catalogFile?: string
  /** A draft catalogue evaluated beside the live one: its decisions land in `shadowDecisions`. */
  shadowCatalogFile?: string
  maxDisorder: number
  allowedLateness: number
  onBytes?: (bytes: number) => void
  /** With several shards: takes this shard's last event time, gives the whole input's. */
  lastEventTime?: (own: number) => Promise<number>
}

/** A shard's share of the results; each send/control decision's conversion row in its latest state at the end of input. */
export type ShardResult = PipelineResults

export async function runShard(opts: ShardOptions): Promise<ShardResult> {
  const catalog = loadCatalogFile(opts.catalogFile)
  const shadowCatalog = opts.shadowCatalogFile === undefined ? undefined : loadShadowCatalogFile(opts.shadowCatalogFile)
  const result: ShardResult = { decisions: [], alerts: [], deadLetters: [], conversions: [], applied: 0, duplicates: 0, late: 0, lateApplied: 0, timersFired: 0 }
  if (shadowCatalog) result.shadowDecisions = []
  // Rows by decision, newest state last: only the latest one is written.
  const conversions = new Map<string, Conversion>()
  const engine = new EmbeddedPipeline({
    catalog: () => catalog,
    shadowCatalog: () => shadowCatalog,
    maxDisorder: opts.maxDisorder,
    allowedLateness: opts.allowedLateness,
    partitions: REPLAY_PARTITIONS,
    outbox: { webhooks: false, alerts: false, rows: false },
    onDeadLetter: (q) => void result.deadLetters.push(q),
    onOutput(o) {
      result.applied += o.applied
      result.duplicates += o.duplicates
      result.late += o.late
      result.lateApplied += o.lateness.filter((l) => l.applied).length
      result.timersFired += o.timersFired
      result.decisions.push(...o.decisions)
      result.shadowDecisions?.push(...o.shadowDecisions)
      result.alerts.push(...o.alerts)
      result.deadLetters.push(...o.deadLetters)
      for (const c of o.conversions) conversions.set(c.decisionId, c)
    },
  })
  const shard =
    opts.shards === 1 ? undefined : { owns: (customerId: string) => partitionOf(customerId, REPLAY_PARTITIONS) % opts.shards === opts.shard, first: opts.shard === 0 }
  for await (const batch of readNdjsonBatches(opts.input, { onBytes: opts.onBytes, shard })) await engine.pushAll(batch)
  await engine.finish(opts.lastEventTime ? await opts.lastEventTime(engine.eventTime) : undefined)
  // Windows still open at the input's last event time: their state so far, not final.
  for (const c of engine.openConversions()) conversions.set(c.decisionId, c)
  result.conversions = [...conversions.values()]
  return result
}
