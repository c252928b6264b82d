import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir, cpus } from 'node:os'
import { Command } from 'commander'
import { wholeNumber } from './options.ts'
import { simulateBank } from '../simulator/bank.ts'
import { writeStreams } from '../simulator/write.ts'
import { replay } from '../commands/replay.ts'
import { ReplayConfig, parseConfig } from '../commands/config.ts'
import { createLogger } from '../core/log.ts'
import { benchStateSize } from './stateSize.ts'
import { benchLive } from './live.ts'
import { benchLatency, latencyTable } from './latency.ts'

/**
 * `npm run bench`: replay throughput on a simulated bank, and the size of per-customer state in
 * memory and in Redis; `--latency` instead measures the live pipeline's latency under a steady
 * load. Figures, not assertions: run it on a quiet machine and compare ratios.
 */

const program = new Command()
  .name('npm run bench --')
  .description('replay throughput and per-customer state size on a simulated bank')
  .option('--customers <n>', 'customers in the simulated bank', wholeNumber(1), 10000)
  .option('--days <n>', 'days of events', wholeNumber(1), 365)
  .option('--seed <n>', 'simulation seed', wholeNumber(0), 1)
  .option('--redis-url <url>', 'also measure state bytes in this Redis', process.env.REDIS_URL ?? 'redis://127.0.0.1:6379')
  .option('--threads <n>', 'replay threads (default: one per core, up to 4; at most 12)', wholeNumber(1))
  .option('--live', 'also measure `cardpulse run` catching up on the bank through Kafka (first --live-days days)')
  .option('--live-days <n>', 'days of the bank for --live', wholeNumber(1), 30)
  .option('--kafka-brokers <list>', 'Kafka for --live and --latency', process.env.KAFKA_BROKERS ?? '127.0.0.1:19092')
  .option('--latency', 'instead: latency of `cardpulse run` under a steady live load (append → alert, decision, webhook); --customers applies')
  .option('--rate <n>', 'events per second appended for --latency', wholeNumber(1), 10000)
  .option('--seconds <n>', 'seconds of load for --latency', wholeNumber(10), 60)
  .option('--warmup <n>', 'first seconds of --latency not measured', wholeNumber(0), 5)
  .option('--max-disorder <duration>', 'MAX_DISORDER of the pipeline for --latency (default: the pipeline\'s, 0s)')
  .option('--source-idleness <duration>', 'SOURCE_IDLENESS of the pipeline for --latency (default: the pipeline\'s, 2s)')
  .option('--partitions <n>', 'partitions per topic for --latency', wholeNumber(1), 6)
  .option('--json <file>', 'also write the --latency report to this file')
  .parse()
const opts = program.opts()
const customers = Number(opts.customers)
const days = Number(opts.days)

if (opts.latency) {
  const report = await benchLatency({
    rate: Number(opts.rate),
    seconds: Number(opts.seconds),
    warmupSeconds: Number(opts.warmup),
    tailSeconds: 2,
    customers,
    seed: Number(opts.seed),
    brokers: opts.kafkaBrokers,
    redisUrl: opts.redisUrl,
    partitions: Number(opts.partitions),
    maxDisorder: opts.maxDisorder,
    sourceIdleness: opts.sourceIdleness,
  })
  const rows: [string, string][] = [['machine', `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}`], ...latencyTable(report)]
  console.log('\n| measure | figure |\n|---|---|')
  for (const [k, v] of rows) console.log(`| ${k} | ${v} |`)
  if (opts.json) writeFileSync(opts.json, JSON.stringify(report, null, 2) + '\n')
  process.exit(0)
}

const log = createLogger('warn')
const dataDir = join(tmpdir(), `cardpulse-bench-${customers}c-${days}d-s${opts.seed}`)
if (!existsSync(join(dataDir, 'transactions.ndjson'))) {
  const t = Date.now()
  mkdirSync(dataDir, { recursive: true })
  const events = simulateBank({ customers, days, start: new Date(Date.UTC(2025, 9, 1)), seed: Number(opts.seed) })
  await writeStreams(dataDir, events)
  console.error(`simulated ${events.length} events in ${((Date.now() - t) / 1000).toFixed(1)} s → ${dataDir}`)
}
const inputs = readdirSync(dataDir).filter((f) => f.endsWith('.ndjson')).map((f) => join(dataDir, f))
const bytes = inputs.reduce((s, f) => s + statSync(f).size, 0)

const started = process.hrtime.bigint()
const summary = await replay(parseConfig(ReplayConfig, { input: inputs, out: join(dataDir, 'out'), progress: true, threads: opts.threads }), log)
const seconds = Number(process.hrtime.bigint() - started) / 1e9
const events = summary.input.events

const live = opts.live
  ? await benchLive({ customers, days: Number(opts.liveDays), seed: Number(opts.seed), brokers: opts.kafkaBrokers, redisUrl: opts.redisUrl, partitions: 6 })
  : undefined

const size = await benchStateSize({ customers: Math.min(customers, 2000), days, seed: Number(opts.seed), redisUrl: opts.redisUrl })

const rows: [string, string][] = [
  ['machine', `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}`],
  ['bank', `${customers} customers, ${days} days, ${events.toLocaleString('en-US')} events, ${(bytes / 1048576).toFixed(0)} MB NDJSON`],
  ['replay wall time', `${seconds.toFixed(1)} s`],
  ['replay throughput', `${Math.round(events / seconds).toLocaleString('en-US')} events/s (${((bytes / 1048576) / seconds).toFixed(1)} MB/s)`],
  ['decisions, alerts', `${summary.decisions.total.toLocaleString('en-US')}, ${summary.alerts.total.toLocaleString('en-US')}`],
  ['state per active customer, JSON', `median ${size.json.median} B, p90 ${size.json.p90} B, max ${size.json.max} B`],
  ['state per active customer, as stored (deflate + dictionary)', `median ${size.stored.median} B, p90 ${size.stored.p90} B, max ${size.stored.max} B`],
  ...(live
    ? ([['`cardpulse run`, one process, catching up through Kafka (6 partitions per topic)', `${live.events.toLocaleString('en-US')} events (${customers} customers, ${opts.liveDays} days) in ${live.seconds.toFixed(1)} s: ${Math.round(live.events / live.seconds).toLocaleString('en-US')} events/s, ${live.late} late`]] as [string, string][])
    : []),
  ...(size.redis ? ([['Redis memory per active customer (MEMORY USAGE of the hash / customers)', `${size.redis.perCustomer} B`]] as [string, string][]) : []),
]
console.log('\n| measure | figure |\n|---|---|')
for (const [k, v] of rows) console.log(`| ${k} | ${v} |`)
