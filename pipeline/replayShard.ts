import type { Decision } from '../schemas/decision.ts'
import type { RiskAlert } from '../schemas/alert.ts'
import type { DeadLetter } from '../schemas/deadLetter.ts'
import { loadCatalogFile } from './catalog/index.ts'
import { EmbeddedPipeline } from './embedded.ts'
import { partitionOf } from './partitioner.ts'
import { readNdjsonBatches } from './sources/ndjson.ts'

/**
 * One shard of a replay: every shard reads all of the input, and processes the customers of the
 * replay partitions it owns. The partition count is fixed, so the results do not depend on how
 * many shards (threads) share the work.
 */

export const REPLAY_PARTITIONS = 4

export interface ShardOptions {
  input: string[]
  shard: number
  shards: number
  catalogFile?: string
  allowedLateness: number
  onBytes?: (bytes: number) => void
}

export interface ShardResult {
  decisions: Decision[]
  alerts: RiskAlert[]
  deadLetters: DeadLetter[]
  applied: number
  duplicates: number
  late: number
  timersFired: number
}

export async function runShard(opts: ShardOptions): Promise<ShardResult> {
  const catalog = loadCatalogFile(opts.catalogFile)
  const result: ShardResult = { decisions: [], alerts: [], deadLetters: [], applied: 0, duplicates: 0, late: 0, timersFired: 0 }
  const engine = new EmbeddedPipeline({
    catalog: () => catalog,
    allowedLateness: opts.allowedLateness,
    partitions: REPLAY_PARTITIONS,
    outbox: { webhooks: false, alerts: false, rows: false },
    onDeadLetter: (q) => void result.deadLetters.push(q),
    onOutput(o) {
      result.applied += o.applied
      result.duplicates += o.duplicates
      result.late += o.late
      result.timersFired += o.timersFired
      result.decisions.push(...o.decisions)
      result.alerts.push(...o.alerts)
      result.deadLetters.push(...o.deadLetters)
    },
  })
  for await (const batch of readNdjsonBatches(opts.input, { onBytes: opts.onBytes })) {
    if (opts.shards === 1) {
      await engine.pushAll(batch)
      continue
    }
    const mine = batch.filter((item) => {
      if (!item.ok) return opts.shard === 0 // bad input is reported once, by the first shard
      if (partitionOf(item.event.customerId, REPLAY_PARTITIONS) % opts.shards === opts.shard) return true
      engine.observe(item.at)
      return false
    })
    await engine.pushAll(mine)
  }
  await engine.finish()
  return result
}
