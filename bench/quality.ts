import { createReadStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { cpus, tmpdir } from 'node:os'
import { createInterface } from 'node:readline'
import { Command } from 'commander'
import { wholeNumber } from './options.ts'
import { simulateCommand } from '../commands/simulate.ts'
import { STREAM_FILES } from '../simulator/write.ts'
import type { TruthRecord } from '../simulator/truth.ts'
import { replay } from '../commands/replay.ts'
import { ReplayConfig, parseConfig } from '../commands/config.ts'
import { createLogger } from '../core/log.ts'
import type { RiskAlert } from '../schemas/alert.ts'
import type { Decision } from '../schemas/decision.ts'
import { formatReport, scoreQuality, type Purchase, type QualityReport } from './qualityScore.ts'

/**
 * `npm run quality`: simulates a bank (open loop: nobody answers the touchpoints), replays it
 * through cardpulse with the default catalogue, and reports precision, recall and median
 * detection delay per risk signal and per trigger whose moment the ground truth defines (see
 * bench/qualityScore.ts for the rules of matching).
 */

export interface QualityRun {
  customers: number
  days: number
  seed: number
  /** A bank configuration (YAML) merged over simulator/bank.yaml: rates of fraud, dormancy, churn… */
  config?: string
  /** Keep the simulated bank and the replay's output here instead of a temporary folder. */
  dir?: string
  threads?: number
  /** Step lines on stderr (and the bars, on a terminal). */
  progress?: boolean
}

export interface QualityResult {
  parameters: { customers: number; days: number; seed: number; start: string; end: string }
  events: number
  seconds: { simulate: number; replay: number; score: number; total: number }
  report: QualityReport
}

export async function runQuality(o: QualityRun): Promise<QualityResult> {
  const say = (line: string) => o.progress !== false && process.stderr.write(line + '\n')
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), 'cardpulse-quality-'))
  const log = createLogger('warn')
  const began = Date.now()
  try {
    say(`1/3 simulating ${o.customers} customers over ${o.days} days (seed ${o.seed}) into ${dir}`)
    await simulateCommand({ customers: o.customers, days: o.days, seed: o.seed, config: o.config, out: dir, progress: o.progress !== false }, log)
    const simulated = Date.now()
    say(`    done in ${((simulated - began) / 1000).toFixed(1)} s`)

    say('2/3 replaying the bank through cardpulse (default catalogue)')
    const inputs = Object.values(STREAM_FILES).map((f) => join(dir, f))
    const out = join(dir, 'out')
    const summary = await replay(parseConfig(ReplayConfig, { input: inputs, out, progress: o.progress !== false, threads: o.threads }), log)
    const replayed = Date.now()
    say(`    ${summary.input.events} events, ${summary.decisions.total} decisions, ${summary.alerts.total} alerts in ${((replayed - simulated) / 1000).toFixed(1)} s`)

    say('3/3 scoring against truth.ndjson')
    const truth = readNdjson<TruthRecord>(join(dir, 'truth.ndjson'))
    const alerts = readNdjson<RiskAlert>(join(out, 'alerts.ndjson'))
    const decisions = readNdjson<Decision>(join(out, 'decisions.ndjson'))
    const purchases = await approvedPurchases(join(dir, STREAM_FILES.transaction))
    const report = scoreQuality(truth, alerts, decisions, { purchases })
    const done = Date.now()
    const config = truth.find((r) => r.kind === 'config')!
    return {
      parameters: { customers: o.customers, days: o.days, seed: o.seed, start: config.start, end: config.end },
      events: summary.input.events,
      seconds: { simulate: (simulated - began) / 1000, replay: (replayed - simulated) / 1000, score: (done - replayed) / 1000, total: (done - began) / 1000 },
      report,
    }
  } finally {
    if (!o.dir) rmSync(dir, { recursive: true, force: true })
  }
}

function readNdjson<T>(file: string): T[] {
  const text = readFileSync(file, 'utf8')
  const rows: T[] = []
  for (const line of text.split('\n')) if (line) rows.push(JSON.parse(line) as T)
  return rows
}

/** Approved transactions by customer, in time order: for whether a case was visible to its rule. */
async function approvedPurchases(file: string): Promise<Map<string, Purchase[]>> {
  const by = new Map<string, Purchase[]>()
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
    if (!line || !line.includes('"approved"')) continue
    const e = JSON.parse(line) as { customerId: string; status: string; amount: number; occurredAt: string }
    if (e.status !== 'approved') continue
    const list = by.get(e.customerId)
    const p = { t: Date.parse(e.occurredAt), amount: e.amount }
    if (list) list.push(p)
    else by.set(e.customerId, [p])
  }
  for (const list of by.values()) list.sort((a, b) => a.t - b.t)
  return by
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const program = new Command()
    .name('npm run quality --')
    .description('simulate a bank, replay it through cardpulse, and report precision, recall and median detection delay per risk signal and trigger against the ground truth')
    .option('--customers <n>', 'customers in the simulated bank', wholeNumber(1), 2000)
    .option('--days <n>', 'days of events', wholeNumber(1), 365)
    .option('--seed <n>', 'simulation seed', wholeNumber(0), 1)
    .option('--config <file>', 'bank configuration (YAML) merged over simulator/bank.yaml, e.g. higher fraud rates')
    .option('--json <file>', 'also write the figures as JSON to this file')
    .option('--keep <dir>', 'keep the simulated bank and the replay output in this folder')
    .option('--threads <n>', 'replay threads (default: one per core, up to 4)', wholeNumber(1))
    .parse()
  const opts = program.opts()
  const result = await runQuality({ customers: Number(opts.customers), days: Number(opts.days), seed: Number(opts.seed), config: opts.config, dir: opts.keep, threads: opts.threads === undefined ? undefined : Number(opts.threads) })
  const p = result.parameters
  console.log(`\n${p.customers} customers, ${p.days} days (${p.start.slice(0, 10)} – ${p.end.slice(0, 10)}), seed ${p.seed}: ${result.events.toLocaleString('en-US')} events`)
  console.log(`${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}; simulate ${result.seconds.simulate.toFixed(1)} s, replay ${result.seconds.replay.toFixed(1)} s, score ${result.seconds.score.toFixed(1)} s\n`)
  console.log(formatReport(result.report))
  if (opts.json) writeFileSync(opts.json, JSON.stringify(result, null, 2) + '\n')
}
