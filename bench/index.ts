import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir, cpus, totalmem } from 'node:os'
import { Command } from 'commander'
import { kafkaClientChoice, wholeNumber } from './options.ts'
import { simulateBank } from '../simulator/bank.ts'
import { writeStreams } from '../simulator/write.ts'
import { replay } from '../commands/replay.ts'
import { ReplayConfig, parseConfig } from '../commands/config.ts'
import { createLogger } from '../core/log.ts'
import { benchStateSize } from './stateSize.ts'
import { benchSoak } from './soak.ts'
import { benchLive, median } from './live.ts'
import { benchLatency, latencyTable } from './latency.ts'
import type { KafkaClientKind } from '../pipeline/kafka/types.ts'

/**
 * `npm run bench`: replay throughput on a simulated bank, and the size of per-customer state in
 * memory and in Redis; `--latency` instead measures the live pipeline's latency under a steady
 * load. With `--live`, `cardpulse run` catching up through Kafka against the raw ceiling of reading
 * the same topics. Every speed is the median of `--runs` runs. Figures, not assertions: run it on a
 * quiet machine and compare ratios.
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
  .option('--runs <n>', 'runs of replay and, with --live, of the ceiling and the catch-up; medians are reported', wholeNumber(1), 3)
  .option('--kafka-brokers <list>', 'Kafka for --live and --latency', process.env.KAFKA_BROKERS ?? '127.0.0.1:19092')
  .option('--kafka-client <name>', 'Kafka client of --live (kafkajs, rdkafka or both, alternating) and --latency (kafkajs or rdkafka)', kafkaClientChoice, 'kafkajs')
  .option('--latency', 'instead: latency of `cardpulse run` under a steady live load (append → alert, decision, webhook); --customers applies')
  .option('--rate <n>', 'events per second appended for --latency', wholeNumber(1), 10000)
  .option('--seconds <n>', 'seconds of load for --latency', wholeNumber(10), 60)
  .option('--warmup <n>', 'first seconds of --latency not measured', wholeNumber(0), 5)
  .option('--max-disorder <duration>', 'MAX_DISORDER of the pipeline for --latency (default: the pipeline\'s, 0s)')
  .option('--source-idleness <duration>', 'SOURCE_IDLENESS of the pipeline for --latency (default: the pipeline\'s, 2s)')
  .option('--partitions <n>', 'partitions per topic for --latency', wholeNumber(1), 6)
  .option('--processes <n>', 'with --live, also this many `cardpulse run` processes in one consumer group catching up together', wholeNumber(1))
  .option('--soak <minutes>', 'instead: endurance — one `cardpulse run` process under a steady load this long; its RSS and Redis memory sampled (--customers applies)', wholeNumber(1))
  .option('--soak-rate <n>', 'events per second appended for --soak', wholeNumber(1), 1000)
  .option('--poison <n>', 'with --live, also time the catch-up on the same bank with this many poison messages (bad JSON, card numbers, schema violations, oversized) after each event', wholeNumber(1))
  .option('--state-threads <n>', 'STATE_THREADS of the pipeline for --live and --latency (default: the pipeline\'s, one per core up to 4)', wholeNumber(0))
  .option('--json <file>', 'also write every figure (or the --latency report) to this file as JSON')
  .parse()
const opts = program.opts()
/** --latency measures one pipeline: one client. */
function latencyClient(choice: KafkaClientKind | 'both'): KafkaClientKind {
  return choice === 'both' ? program.error('--latency measures one client at a time: --kafka-client kafkajs or rdkafka') : choice
}
const customers = Number(opts.customers)
const days = Number(opts.days)

if (opts.soak) {
  const report = await benchSoak({ minutes: Number(opts.soak), rate: Number(opts.soakRate), customers, seed: Number(opts.seed), brokers: opts.kafkaBrokers, redisUrl: opts.redisUrl, partitions: Number(opts.partitions), sampleSeconds: 30 })
  const mib = (b: number) => `${(b / 1048576).toFixed(0)} MiB`
  const at = (f: number) => report.samples[Math.min(report.samples.length - 1, Math.round(f * (report.samples.length - 1)))]
  const rows: [string, string][] = [
    ['machine', `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}`],
    ['load', `${report.settings.rate} events/s for ${report.settings.minutes} min, ${customers} customers, ${report.settings.partitions} partitions, ALLOWED_LATENESS ${process.env.ALLOWED_LATENESS ?? '6h'}; applied ${Math.round(report.appliedPerSecond)} events/s`],
    ['process RSS at 0 / 25 / 50 / 75 / 100 %', [0, 0.25, 0.5, 0.75, 1].map((f) => mib(at(f).rssBytes)).join(' / ')],
    ['of it V8 heaps committed: main thread, state threads at 0 / 25 / 50 / 75 / 100 %', [0, 0.25, 0.5, 0.75, 1].map((f) => `${mib(at(f).mainHeapBytes)}, ${mib(at(f).threadHeapBytes)}`).join(' / ')],
    ['the rest (native: embedded ClickHouse, buffers, code) at 0 / 25 / 50 / 75 / 100 %', [0, 0.25, 0.5, 0.75, 1].map((f) => mib(at(f).rssBytes - at(f).mainHeapBytes - at(f).threadHeapBytes)).join(' / ')],
    ['customers seen at 0 / 25 / 50 / 75 / 100 %', [0, 0.25, 0.5, 0.75, 1].map((f) => at(f).customers.toLocaleString('en-US')).join(' / ')],
    ['Redis memory of its keys at 0 / 25 / 50 / 75 / 100 %', [0, 0.25, 0.5, 0.75, 1].map((f) => mib(at(f).redisBytes)).join(' / ')],
    ['Redis bytes per customer seen at the end', `${Math.round(at(1).redisBytes / Math.max(1, at(1).customers))}`],
    ['CPU of the `run` process (all threads) per event applied', `${Math.round(report.cpuMicrosPerEvent)} µs (${((report.cpuMicrosPerEvent * report.appliedPerSecond) / 1e4).toFixed(0)} % of a core)`],
    ['last quarter over second quarter (mean): RSS, Redis', `${report.rssGrowth.toFixed(2)}, ${report.redisGrowth.toFixed(2)}`],
  ]
  console.log('\n| measure | figure |\n|---|---|')
  for (const [k, v] of rows) console.log(`| ${k} | ${v} |`)
  if (opts.json) writeFileSync(opts.json, JSON.stringify(report, null, 2) + '\n')
  process.exit(0)
}

if (opts.latency) {
  const report = await benchLatency({
    rate: Number(opts.rate),
    seconds: Number(opts.seconds),
    warmupSeconds: Number(opts.warmup),
    tailSeconds: 2,
    customers,
    seed: Number(opts.seed),
    brokers: opts.kafkaBrokers,
    kafkaClient: latencyClient(opts.kafkaClient),
    redisUrl: opts.redisUrl,
    partitions: Number(opts.partitions),
    maxDisorder: opts.maxDisorder,
    sourceIdleness: opts.sourceIdleness,
    stateThreads: opts.stateThreads,
  })
  const rows: [string, string][] = [['machine', `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}`], ...latencyTable(report)]
  console.log('\n| measure | figure |\n|---|---|')
  for (const [k, v] of rows) console.log(`| ${k} | ${v} |`)
  if (opts.json) writeFileSync(opts.json, JSON.stringify(report, null, 2) + '\n')
  process.exit(0)
}

const log = createLogger('warn')
const runs = Number(opts.runs)
const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 1073741824)} GiB, node ${process.version}`
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

// The live part first, so that its process RSS is not the replay's heap left behind.
const live = opts.live
  ? await benchLive({
      customers,
      days: Number(opts.liveDays),
      seed: Number(opts.seed),
      brokers: opts.kafkaBrokers,
      redisUrl: opts.redisUrl,
      partitions: 6,
      runs,
      kafkaClients: opts.kafkaClient === 'both' ? ['kafkajs', 'rdkafka'] : [opts.kafkaClient],
      stateThreads: opts.stateThreads,
      processes: opts.processes,
      poison: opts.poison,
    })
  : undefined

const replays: { seconds: number; eventsPerSecond: number }[] = []
let summary!: Awaited<ReturnType<typeof replay>>
for (let i = 0; i < runs; i++) {
  const started = process.hrtime.bigint()
  summary = await replay(parseConfig(ReplayConfig, { input: inputs, out: join(dataDir, 'out'), progress: true, threads: opts.threads }), log)
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  replays.push({ seconds, eventsPerSecond: summary.input.events / seconds })
}
const events = summary.input.events
const seconds = median(replays.map((r) => r.seconds))
const replayRate = median(replays.map((r) => r.eventsPerSecond))

const size = await benchStateSize({ customers: Math.min(customers, 2000), days, seed: Number(opts.seed), redisUrl: opts.redisUrl })

const n = (x: number) => Math.round(x).toLocaleString('en-US')
const spread = (xs: number[]) => `${n(Math.min(...xs))}–${n(Math.max(...xs))}`
const mib = (b: number) => `${(b / 1048576).toFixed(0)} MiB`
const rows: [string, string][] = [
  ['machine', machine],
  ['parameters', `--customers ${customers} --days ${days} --seed ${opts.seed} --runs ${runs}${opts.threads ? ` --threads ${opts.threads}` : ''}${live ? ` --live --live-days ${opts.liveDays}, ${live.partitions} partitions per topic` : ''}`],
  ['bank', `${customers} customers, ${days} days, ${events.toLocaleString('en-US')} events, ${(bytes / 1048576).toFixed(0)} MB NDJSON`],
  ['replay wall time (median)', `${seconds.toFixed(1)} s`],
  ['replay throughput (median)', `${n(replayRate)} events/s (${((bytes / 1048576) / seconds).toFixed(1)} MB/s; runs ${spread(replays.map((r) => r.eventsPerSecond))})`],
  ['decisions, alerts', `${summary.decisions.total.toLocaleString('en-US')}, ${summary.alerts.total.toLocaleString('en-US')}`],
  ['state per active customer, JSON', `median ${size.json.median} B, p90 ${size.json.p90} B, max ${size.json.max} B`],
  ['state per active customer, as stored (compact encoding, format 3)', `median ${size.stored.median} B, p90 ${size.stored.p90} B, max ${size.stored.max} B`],
  ...(size.redis ? ([['Redis memory per active customer (MEMORY USAGE of the hash / customers)', `${size.redis.perCustomer} B`]] as [string, string][]) : []),
  ...(live
    ? ([
        ['live bank in Kafka', `${live.events.toLocaleString('en-US')} events (${customers} customers, ${opts.liveDays} days), ${live.partitions} partitions per input topic`],
        ...live.clients.flatMap(({ client, ceiling, runs: catchUps, median: m }): [string, string][] => [
          [`${client}: raw ceiling, the client reading the input topics and parsing JSON, nothing else (median)`, `**${n(m.ceilingEventsPerSecond)} events/s** (runs ${spread(ceiling.map((c) => c.eventsPerSecond))})`],
          [`${client}: \`cardpulse run\`, one process, catching up (median)`, `**${n(m.runEventsPerSecond)} events/s** (runs ${spread(catchUps.map((r) => r.eventsPerSecond))}), ${catchUps.reduce((s, r) => s + r.late, 0)} late in all runs`],
          [`${client}: ratio run / ceiling`, `**${m.ratio.toFixed(3)}**`],
          [`${client}: state-stage batches: events per batch (median)`, `${m.eventsPerBatch.toFixed(1)}`],
          [`${client}: Redis round trips of the state stage (load + commit), per batch / per event (median)`, `**${m.roundTripsPerBatch.toFixed(2)}** / ${m.roundTripsPerEvent.toFixed(3)}`],
          [`${client}: CPU per event applied, µs: the \`run\` process (all threads) / Redis / the Kafka broker (median)`, `**${m.cpuMicrosPerEvent.toFixed(0)}** / ${m.redisCpuMicrosPerEvent.toFixed(1)} / ${m.brokerCpuMicrosPerEvent === null ? 'not on this machine' : m.brokerCpuMicrosPerEvent.toFixed(0)}`],
          [`${client}: process RSS during its first catch-up, max (RSS before its start; later runs start on the earlier runs\' heap)`, `${mib(catchUps[0].maxRssBytes)} (${mib(catchUps[0].rssBeforeBytes)})`],
          [`${client}: Redis memory per customer after a catch-up (MEMORY USAGE of the customer hashes / customers held)`, `${Math.round(m.redisBytesPerCustomer)} B (${catchUps[0]?.redisCustomers.toLocaleString('en-US')} customers)`],
        ]),
        ...(live.scaleOut.length
          ? ([[`${live.scaleOut[0].processes} \`cardpulse run\` processes (${live.clients[0].client}) in one group, catching up together (median; start-up included)`, `**${n(median(live.scaleOut.map((s) => s.eventsPerSecond)))} events/s** (runs ${spread(live.scaleOut.map((s) => s.eventsPerSecond))}; events applied per process in the last run ${live.scaleOut[live.scaleOut.length - 1].appliedPerProcess.map(n).join(' / ')})`]] as [string, string][])
          : []),
        ...(live.poisoned
          ? ([[`${live.clients[0].client}: \`cardpulse run\` catching up on the same bank with ${live.poisoned.perEvent} poison message(s) after each event (${n(live.poisoned.messages)} dead-lettered; median)`, `**${n(median(live.poisoned.runs.map((r) => r.eventsPerSecond)))} valid events/s** (runs ${spread(live.poisoned.runs.map((r) => r.eventsPerSecond))}), ${(median(live.poisoned.runs.map((r) => r.eventsPerSecond)) / live.clients[0].median.runEventsPerSecond).toFixed(2)} of the clean catch-up`]] as [string, string][])
          : []),
        ...(live.clients.length === 2
          ? ([
              [
                `${live.clients[1].client} / ${live.clients[0].client}: ceiling, run (ratio of medians)`,
                `${(live.clients[1].median.ceilingEventsPerSecond / live.clients[0].median.ceilingEventsPerSecond).toFixed(2)}, ${(live.clients[1].median.runEventsPerSecond / live.clients[0].median.runEventsPerSecond).toFixed(2)}`,
              ],
            ] as [string, string][])
          : []),
      ] as [string, string][])
    : []),
]
console.log('\n| measure | figure |\n|---|---|')
for (const [k, v] of rows) console.log(`| ${k} | ${v} |`)
if (opts.json) {
  const report = {
    machine: { cpus: cpus().length, model: cpus()[0]?.model, memoryBytes: totalmem(), node: process.version, platform: process.platform },
    parameters: { customers, days, seed: Number(opts.seed), runs, threads: opts.threads ?? null, live: Boolean(opts.live), liveDays: opts.live ? Number(opts.liveDays) : null, kafkaClient: opts.kafkaClient },
    replay: { events, bytes, runs: replays, median: { seconds, eventsPerSecond: replayRate }, decisions: summary.decisions.total, alerts: summary.alerts.total },
    stateSize: size,
    live: live ?? null,
  }
  writeFileSync(opts.json, JSON.stringify(report, null, 2) + '\n')
}
process.exit(0)
