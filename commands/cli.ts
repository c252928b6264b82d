import { Command, Option } from 'commander'
import type { z } from 'zod'
import { createLogger, type Logger } from '../core/log.ts'
import { DeliveriesConfig, DemoConfig, ExplainConfig, LogConfig, ReplayConfig, RunConfig, parseConfig } from './config.ts'
import { CardpulseError } from '../core/errors.ts'

/** The command line: run, demo, replay, simulate, explain, deliveries. Every option has an environment twin. */

const program = new Command()
  .name('cardpulse')
  .description('Real-time marketing triggers for card businesses: Kafka in, signed webhooks, risk alerts and ClickHouse out.')
  .showHelpAfterError('(add --help for the options)')

const KAFKA_CLIENT_HELP = 'Kafka client library: kafkajs (default, pure JavaScript) or rdkafka (librdkafka through node-rdkafka; install it with `npm run rdkafka`)'

const opt = (flags: string, description: string, env?: string) => {
  const o = new Option(flags, description)
  return env ? o.env(env) : o
}

function logOptions(cmd: Command): Command {
  return cmd
    .addOption(opt('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent (default info)', 'LOG_LEVEL'))
    .addOption(opt('--log-format <format>', 'pretty|json (default: pretty on a terminal, else json)', 'LOG_FORMAT'))
}

function pipelineOptions(cmd: Command): Command {
  return logOptions(cmd)
    .addOption(opt('--catalog-file <file>', 'trigger catalogue (YAML or JSON); default: the shipped catalogue', 'CATALOG_FILE'))
    .addOption(opt('--catalog <file>', 'the same as --catalog-file'))
    .addOption(opt('--shadow-catalog <file>', 'a draft trigger catalogue run beside the live one on the same events and state: its decisions are recorded as shadow decisions (ClickHouse shadow_decisions; replay: shadow-decisions.ndjson), never sent; see docs/analytics.md', 'SHADOW_CATALOG_FILE'))
    .addOption(opt('--allowed-lateness <duration>', 'how far behind the watermark an event may arrive and still be applied, at once; later ones are dead-lettered (default 6h)', 'ALLOWED_LATENESS'))
    .addOption(opt('--max-disorder <duration>', 'how far an event may trail the newest of its input partition and still be applied in event-time order; adds to the latency of every decision (default 0s)', 'MAX_DISORDER'))
}

/** Options of the commands that deliver: the dashboard's port, ClickHouse, webhooks. */
function commonOptions(cmd: Command): Command {
  return pipelineOptions(cmd)
    .addOption(opt('--http-port <port>', 'HTTP port for the dashboard, /healthz and /metrics (default 8080)', 'HTTP_PORT'))
    .addOption(opt('--http-host <address>', 'address the dashboard, API and /metrics listen on (default 127.0.0.1); any other needs HTTP_TOKEN', 'HTTP_HOST'))
    .addOption(opt('--http-token <token>', 'bearer token of the dashboard, /api/* and /metrics (at least 16 characters); prefer HTTP_TOKEN or a file, a flag shows in ps', 'HTTP_TOKEN'))
    .addOption(opt('--http-token-file <file>', 'read HTTP_TOKEN from this file', 'HTTP_TOKEN_FILE'))
    .addOption(opt('--metrics-token <token>', 'a bearer token that opens /metrics alone, for Prometheus (at least 16 characters)', 'METRICS_TOKEN'))
    .addOption(opt('--metrics-token-file <file>', 'read METRICS_TOKEN from this file', 'METRICS_TOKEN_FILE'))
    .addOption(opt('--http-allow-unauthenticated <bool>', 'true: listen on a non-loopback address without a token (only behind a proxy that authenticates; default false)', 'HTTP_ALLOW_UNAUTHENTICATED'))
    .addOption(opt('--http-rate-limit <n>', 'requests a minute per client address on /api/*, then 429 (default 600; 0: no limit)', 'HTTP_RATE_LIMIT'))
    .addOption(opt('--clickhouse-url <url>', 'ClickHouse server, e.g. http://127.0.0.1:8123; default: embedded chDB', 'CLICKHOUSE_URL'))
    .addOption(opt('--clickhouse-database <name>', 'ClickHouse database (default cardpulse)', 'CLICKHOUSE_DATABASE'))
    .addOption(opt('--clickhouse-pseudonymise-key <key>', 'write customer ids to ClickHouse as p_ + HMAC-SHA256(key, id) (at least 16 characters; webhooks and alerts keep real ids)', 'CLICKHOUSE_PSEUDONYMISE_KEY'))
    .addOption(opt('--clickhouse-pseudonymise-key-file <file>', 'read CLICKHOUSE_PSEUDONYMISE_KEY from this file', 'CLICKHOUSE_PSEUDONYMISE_KEY_FILE'))
    .addOption(opt('--webhook-url <url>', 'webhook endpoint for every channel', 'WEBHOOK_URL'))
    .addOption(opt('--webhook-url-sms <url>', 'webhook endpoint for SMS', 'WEBHOOK_URL_SMS'))
    .addOption(opt('--webhook-url-push <url>', 'webhook endpoint for push', 'WEBHOOK_URL_PUSH'))
    .addOption(opt('--webhook-url-call <url>', 'webhook endpoint for outbound calls', 'WEBHOOK_URL_CALL'))
    .addOption(opt('--webhook-url-app-banner <url>', 'webhook endpoint for app banners', 'WEBHOOK_URL_APP_BANNER'))
    .addOption(opt('--webhook-secret <secret>', 'HMAC secret that signs webhooks (at least 16 characters)', 'WEBHOOK_SECRET'))
    .addOption(opt('--webhook-secret-file <file>', 'read WEBHOOK_SECRET from this file', 'WEBHOOK_SECRET_FILE'))
    .addOption(opt('--webhook-secret-previous <secret>', 'while rotating: the previous secret; webhooks then carry a signature by each, the current first', 'WEBHOOK_SECRET_PREVIOUS'))
    .addOption(opt('--webhook-secret-previous-file <file>', 'read WEBHOOK_SECRET_PREVIOUS from this file', 'WEBHOOK_SECRET_PREVIOUS_FILE'))
    .addOption(opt('--webhook-timeout <duration>', 'webhook HTTP timeout (default 10s)', 'WEBHOOK_TIMEOUT'))
}

const kafkaSecurityOptions = (cmd: Command): Command =>
  cmd
    .addOption(opt('--kafka-sasl-mechanism <name>', 'SASL authentication to the brokers: plain, scram-sha-256 or scram-sha-512 (default: none)', 'KAFKA_SASL_MECHANISM'))
    .addOption(opt('--kafka-sasl-username <name>', 'SASL user name', 'KAFKA_SASL_USERNAME'))
    .addOption(opt('--kafka-sasl-password <password>', 'SASL password; prefer KAFKA_SASL_PASSWORD or a file, a flag shows in ps', 'KAFKA_SASL_PASSWORD'))
    .addOption(opt('--kafka-sasl-password-file <file>', 'read KAFKA_SASL_PASSWORD from this file', 'KAFKA_SASL_PASSWORD_FILE'))
    .addOption(opt('--kafka-tls <bool>', 'true: TLS to the brokers (with SASL: SASL_SSL); default false', 'KAFKA_TLS'))
    .addOption(opt('--kafka-tls-ca-file <file>', "PEM of the authority that signed the brokers' certificates (implies KAFKA_TLS; default: the system's)", 'KAFKA_TLS_CA_FILE'))

/**
 * Runs a command: parses its settings, builds the one logger from them, and calls it. An error of
 * the error tree (core/errors.ts) ends it with one line that says what to fix; anything else is a
 * bug, logged with its stack.
 */
function action<S extends z.ZodType<LogConfig>>(schema: S, fn: (config: z.infer<S>, log: Logger, raw: Record<string, unknown>, envNames: Record<string, string>) => Promise<unknown>) {
  return async (raw: Record<string, unknown>, cmd: Command) => {
    let log: Logger | undefined
    // Error messages name a setting by its flag and its environment twin.
    const envNames = Object.fromEntries(cmd.options.filter((o) => o.envVar).map((o) => [o.attributeName(), o.envVar!]))
    try {
      if (raw.catalog !== undefined) raw.catalogFile ??= raw.catalog
      const config = parseConfig(schema, raw, envNames)
      log = createLogger(config.logLevel, config.logFormat)
      await fn(config, log, raw, envNames)
    } catch (err) {
      if (err instanceof CardpulseError) process.stderr.write(`cardpulse: ${err.oneLine}\n`)
      else if (log) log.fatal({ err }, (err as Error).message)
      else process.stderr.write(`cardpulse: ${(err as Error).stack ?? err}\n`)
      await new Promise((r) => setTimeout(r, 50)) // let the logger flush
      process.exit(err instanceof CardpulseError ? err.exitCode : 1)
    }
  }
}

kafkaSecurityOptions(commonOptions(program.command('run').description('the live pipeline: Kafka in; Redis state; webhooks, alert topic and ClickHouse out')))
  .addOption(opt('--kafka-brokers <list>', 'Kafka bootstrap servers, host:port[,host:port]', 'KAFKA_BROKERS'))
  .addOption(opt('--kafka-client <name>', KAFKA_CLIENT_HELP, 'KAFKA_CLIENT'))
  .addOption(opt('--redis-url <url>', 'Redis for state, timers and the outbox: redis://host:port (rediss:// for TLS; redis://user:password@host:port for AUTH), or redis-cluster://h1:p1,h2:p2', 'REDIS_URL'))
  .addOption(opt('--group-id <id>', 'Kafka consumer group (default cardpulse)', 'GROUP_ID'))
  .addOption(opt('--transactions-topic <topic>', 'default cards.transactions', 'TRANSACTIONS_TOPIC'))
  .addOption(opt('--app-events-topic <topic>', 'default cards.app-events', 'APP_EVENTS_TOPIC'))
  .addOption(opt('--lifecycle-topic <topic>', 'default cards.lifecycle', 'LIFECYCLE_TOPIC'))
  .addOption(opt('--dlq-topic <topic>', 'dead letters (default cardpulse.dlq)', 'DLQ_TOPIC'))
  .addOption(opt('--alert-topic <topic>', 'risk alerts (default cards.risk-alerts)', 'ALERT_TOPIC'))
  .addOption(opt('--events-topic <topic>', 'internal topic of validated events keyed by customer (default cardpulse.events)', 'EVENTS_TOPIC'))
  .addOption(opt('--partitions <n>', 'partitions of the internal events topic when it is created: the unit of scale-out (default 6)', 'PARTITIONS'))
  .addOption(opt('--state-threads <n>', 'threads that run the operators, each owning partitions of the events topic (default: one per core, up to 4; 0: on the main thread)', 'STATE_THREADS'))
  .addOption(opt('--state-cache-customers <n>', 'customer records kept decoded in memory, shared among the state threads (default 100000; at least 1000)', 'STATE_CACHE_CUSTOMERS'))
  .addOption(opt('--idle-advance <duration>', 'a partition whose input partitions are all idle follows the wall clock after this long (default 10s)', 'IDLE_ADVANCE'))
  .addOption(opt('--max-clock-skew <duration>', 'how far ahead of the wall clock an input event may be; one further ahead is dead-lettered as future_event (default 5m)', 'MAX_CLOCK_SKEW'))
  .addOption(opt('--source-idleness <duration>', 'an input partition read to its end that forwarded nothing this long is idle and stops holding the watermark back (default 2s)', 'SOURCE_IDLENESS'))
  .addOption(opt('--redis-prefix <prefix>', 'prefix of every Redis key (default cardpulse)', 'REDIS_PREFIX'))
  .addOption(opt('--data-dir <dir>', 'where embedded ClickHouse keeps its data when CLICKHOUSE_URL is not set (default .cardpulse)', 'DATA_DIR'))
  .addOption(opt('--session-timeout <duration>', 'Kafka consumer session timeout: how soon a dead consumer\'s partitions move (default 30s)', 'SESSION_TIMEOUT'))
  .addOption(opt('--connect-timeout <duration>', 'give up connecting to Kafka/Redis/ClickHouse after this long (default 30s)', 'CONNECT_TIMEOUT'))
  .action(
    action(RunConfig, async (config, log) => {
      const { runPipeline } = await import('./run.ts')
      await runPipeline(config, log.child({ cmd: 'run' }))
    }),
  )

commonOptions(program.command('demo').description('everything on embedded defaults (no servers): a simulated bank whose customers react to the webhooks, the pipeline, the dashboard'))
  .addOption(opt('--customers <n>', 'customers of the simulated bank (default 2000)', 'DEMO_CUSTOMERS'))
  .addOption(opt('--days <n>', 'simulated days (default 120)', 'DEMO_DAYS'))
  .addOption(opt('--start <date>', 'first simulated day, YYYY-MM-DD (default 2026-09-01)', 'DEMO_START'))
  .addOption(opt('--seed <n>', 'random seed of the simulated bank (default 1)', 'DEMO_SEED'))
  .addOption(opt('--bank-config <file>', 'rates and treatment effects of the simulated bank (YAML; default simulator/bank.yaml)', 'BANK_CONFIG'))
  .addOption(opt('--input <files...>', 'play these NDJSON event files instead of simulating a bank (no closed loop)'))
  .addOption(opt('--out <dir>', 'also write what replay writes (decisions, alerts, dead letters, conversions, summary with ROI) and the ground truth here'))
  .addOption(new Option('--no-serve', 'exit after playing the events instead of serving the dashboard'))
  .action(
    action(DemoConfig, async (config, log) => {
      const { runDemo } = await import('./demo.ts')
      await runDemo(config, log.child({ cmd: 'demo' }))
    }),
  )

pipelineOptions(program.command('replay').description('the pipeline in event time over NDJSON files; writes decisions, alerts, dead letters and a summary'))
  .requiredOption('--input <files...>', 'NDJSON files of input events, any mix of the three types; - for stdin')
  .requiredOption('--out <dir>', 'output folder for decisions.ndjson, alerts.ndjson, dlq.ndjson, conversions.ndjson, summary.json')
  .addOption(new Option('--no-progress', 'no progress bar'))
  .addOption(opt('--threads <n>', 'threads sharing the work (default: one per core, up to 4; at most 12); the output does not depend on it', 'REPLAY_THREADS'))
  .action(
    action(ReplayConfig, async (config, log) => {
      const { replay } = await import('./replay.ts')
      await replay(config, log.child({ cmd: 'replay' }))
    }),
  )

kafkaSecurityOptions(logOptions(program.command('simulate')))
  .description(
    "the simulated bank: customers in segments, their cards' whole life, spending, app usage and injected fraud, to NDJSON files (with truth.ndjson, the ground truth) or to Kafka; deterministic for a seed. With --listen it runs closed loop against a live cardpulse: customers react to its webhooks",
  )
  .addOption(opt('--customers <n>', 'number of customers (default 1000)', 'SIM_CUSTOMERS'))
  .addOption(opt('--days <n>', 'length of the simulated period in days (default 90)', 'SIM_DAYS'))
  .addOption(opt('--start <date>', 'first day, YYYY-MM-DD (default 2026-09-01; with --listen: --days before now, so the period ends now)', 'SIM_START'))
  .addOption(opt('--seed <n>', 'random seed (default 1)', 'SIM_SEED'))
  .addOption(opt('--config <file>', 'bank configuration (YAML) merged over the shipped simulator/bank.yaml: segments, lifecycle rates, fraud rates, effects of touchpoints', 'SIM_CONFIG'))
  .addOption(opt('--malformed <share>', 'share of messages followed by a malformed copy, e.g. 0.001 (default: the config\'s, 0)', 'SIM_MALFORMED'))
  .addOption(opt('--out <dir>', 'write transactions.ndjson, app-events.ndjson, lifecycle.ndjson and truth.ndjson here'))
  .addOption(opt('--kafka-brokers <list>', 'produce to the three input topics (as fast as possible unless --rate or --speed)', 'KAFKA_BROKERS'))
  .addOption(opt('--kafka-client <name>', KAFKA_CLIENT_HELP, 'KAFKA_CLIENT'))
  .addOption(opt('--transactions-topic <topic>', 'default cards.transactions', 'TRANSACTIONS_TOPIC'))
  .addOption(opt('--app-events-topic <topic>', 'default cards.app-events', 'APP_EVENTS_TOPIC'))
  .addOption(opt('--lifecycle-topic <topic>', 'default cards.lifecycle', 'LIFECYCLE_TOPIC'))
  .addOption(opt('--rate <n>', 'produce at most this many events per second', 'SIM_RATE'))
  .addOption(opt('--speed <n>', 'simulated seconds per wall-clock second, e.g. 3600 = an hour a second (default with --listen: 3600)', 'SIM_SPEED'))
  .addOption(opt('--listen <port>', 'closed loop: receive cardpulse\'s webhooks on http://127.0.0.1:PORT/webhooks (needs --kafka-brokers and --webhook-secret); customers react as they arrive', 'SIM_LISTEN'))
  .addOption(opt('--webhook-secret <secret>', 'HMAC secret to verify webhooks with (the one cardpulse run signs with); a bad signature gets 401', 'WEBHOOK_SECRET'))
  .addOption(opt('--webhook-secret-file <file>', 'read WEBHOOK_SECRET from this file', 'WEBHOOK_SECRET_FILE'))
  .addOption(opt('--linger <seconds>', 'with --listen: keep receiving webhooks this long after the period ends (default 10)', 'SIM_LINGER'))
  .addOption(new Option('--no-progress', 'no progress bar'))
  .action(
    action(LogConfig, async (_config, log, raw, envNames) => {
      const { simulateCommand } = await import('./simulate.ts')
      await simulateCommand(raw, log.child({ cmd: 'simulate' }), envNames)
    }),
  )

logOptions(program.command('explain'))
  .description(
    "why a customer got, or did not get, each message: lifecycle stage, value tier, risk, open windows, timers, waiting touchpoints, and each recent decision with the rule and figures behind it; from the live pipeline's Redis and ClickHouse, or a replay's output (--dir)",
  )
  .addOption(opt('--customer <id>', 'the customer id (never a card number)', 'EXPLAIN_CUSTOMER'))
  .addOption(opt('--limit <n>', 'recent decisions to explain (default 20)', 'EXPLAIN_LIMIT'))
  .addOption(opt('--since <when>', 'only decisions and alerts since then: a duration back (30d, 12h) or a date (2026-10-01)', 'EXPLAIN_SINCE'))
  .addOption(opt('--json', 'a JSON document (what GET /api/customers/:id/explain returns) instead of text', 'EXPLAIN_JSON'))
  .addOption(opt('--dir <dir>', "a replay's output folder to read instead of Redis and ClickHouse", 'EXPLAIN_DIR'))
  .addOption(opt('--redis-url <url>', 'the live pipeline\'s Redis: redis://host:port, or redis-cluster://h1:p1,h2:p2', 'REDIS_URL'))
  .addOption(opt('--redis-prefix <prefix>', 'prefix of every Redis key (default cardpulse)', 'REDIS_PREFIX'))
  .addOption(opt('--clickhouse-url <url>', 'ClickHouse server, e.g. http://127.0.0.1:8123; default: embedded chDB in DATA_DIR', 'CLICKHOUSE_URL'))
  .addOption(opt('--clickhouse-database <name>', 'ClickHouse database (default cardpulse)', 'CLICKHOUSE_DATABASE'))
  .addOption(opt('--clickhouse-pseudonymise-key <key>', 'the key run writes customer ids to ClickHouse with, so they are found there', 'CLICKHOUSE_PSEUDONYMISE_KEY'))
  .addOption(opt('--clickhouse-pseudonymise-key-file <file>', 'read CLICKHOUSE_PSEUDONYMISE_KEY from this file', 'CLICKHOUSE_PSEUDONYMISE_KEY_FILE'))
  .addOption(opt('--data-dir <dir>', 'where embedded ClickHouse keeps its data when CLICKHOUSE_URL is not set (default .cardpulse)', 'DATA_DIR'))
  .addOption(opt('--catalog-file <file>', 'trigger catalogue whose rules (cooldowns, caps, holdouts) are quoted; default: the shipped catalogue', 'CATALOG_FILE'))
  .addOption(opt('--connect-timeout <duration>', 'give up connecting to Redis after this long (default 10s)', 'CONNECT_TIMEOUT'))
  .action(
    action(ExplainConfig, async (config, log) => {
      const { explainCommand } = await import('./explain.ts')
      await explainCommand(config, log.child({ cmd: 'explain' }))
    }),
  )

/** Where `run` keeps the deliveries and the outbox, and which dead deliveries to take. */
function deliveriesOptions(cmd: Command): Command {
  return logOptions(cmd)
    .addOption(opt('--clickhouse-url <url>', 'ClickHouse server, as cardpulse run has it; default: the embedded engine in DATA_DIR', 'CLICKHOUSE_URL'))
    .addOption(opt('--clickhouse-database <name>', 'ClickHouse database (default cardpulse)', 'CLICKHOUSE_DATABASE'))
    .addOption(opt('--data-dir <dir>', 'where cardpulse run keeps embedded ClickHouse when CLICKHOUSE_URL is not set (default .cardpulse)', 'DATA_DIR'))
    .addOption(opt('--status <list>', 'failed, expired or both, comma-separated (default both)', 'DELIVERIES_STATUS'))
    .addOption(opt('--trigger <name>', 'only this trigger', 'DELIVERIES_TRIGGER'))
    .addOption(opt('--channel <channel>', 'only this channel: sms, push, call, app_banner', 'DELIVERIES_CHANNEL'))
    .addOption(opt('--customer <id>', 'only this customer', 'DELIVERIES_CUSTOMER'))
    .addOption(opt('--since <when>', 'finished at or after: a duration back from now (24h, 7d) or a date-time', 'DELIVERIES_SINCE'))
    .addOption(opt('--limit <n>', 'at most this many, newest first (default 50)', 'DELIVERIES_LIMIT'))
}

const deliveries = deliveriesOptions(program.command('deliveries').description('the delivery dead letters: failed and expired webhooks, newest first (`deliveries resend` sends chosen ones again)'))
  .addOption(new Option('--json', 'NDJSON, one delivery a line, instead of a table').env('DELIVERIES_JSON'))
  .action(
    action(DeliveriesConfig, async (config) => {
      const { listDeliveries } = await import('./deliveries.ts')
      await listDeliveries(config, process.stdout)
    }),
  )

deliveriesOptions(deliveries.command('resend').description('puts failed or expired deliveries back into the outbox with the same decision id (receivers deduplicate on Idempotency-Key), due now, with a fresh expiry; the running pipeline sends them'))
  .addOption(opt('--id <ids...>', 'decision ids to send again (in the environment: separated by commas or spaces)', 'DELIVERIES_ID'))
  .addOption(new Option('--all-failed', 'every failed delivery the filters match (up to --limit)').env('DELIVERIES_ALL_FAILED'))
  .addOption(opt('--until <date-time>', 'deliver by then, e.g. 2026-12-05T18:00:00Z (default: now plus the decision\'s own window, its trigger\'s ttl)', 'DELIVERIES_UNTIL'))
  .addOption(opt('--redis-url <url>', 'the Redis of cardpulse run', 'REDIS_URL'))
  .addOption(opt('--redis-prefix <prefix>', 'prefix of every Redis key, as cardpulse run has it (default cardpulse)', 'REDIS_PREFIX'))
  .addOption(opt('--partitions <n>', 'partitions of the events topic, as cardpulse run has it (default 6)', 'PARTITIONS'))
  .addOption(opt('--connect-timeout <duration>', 'give up connecting to Redis/ClickHouse after this long (default 30s)', 'CONNECT_TIMEOUT'))
  .action(
    action(DeliveriesConfig, async (config, log) => {
      const { resendDeliveries } = await import('./deliveries.ts')
      await resendDeliveries(config, log.child({ cmd: 'deliveries resend' }), process.stdout)
    }),
  )

await program.parseAsync(process.argv)
