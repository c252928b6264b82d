import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'

/**
 * Scale-out: `processes` separate `cardpulse run` processes in one consumer group catching up on
 * the same input topics, as a deployment adds them. Each has its own embedded ClickHouse folder
 * (one engine per process) and shares the group, the Redis prefix and the internal topics. Timed
 * from the first spawn (start-up included, as for the single process) until the processes' applied
 * and late events, read from their /metrics, add up to the bank.
 */

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'cardpulse.js')

export interface ScaleOutOptions {
  processes: number
  events: number
  env: Record<string, string>
  dataDir: string
}

export interface ScaleOutRun {
  processes: number
  seconds: number
  eventsPerSecond: number
  /** Events each process applied: how evenly the group shared the partitions. */
  appliedPerProcess: number[]
}

export async function catchUpProcesses(o: ScaleOutOptions): Promise<ScaleOutRun> {
  const children: ChildProcess[] = []
  const started = process.hrtime.bigint()
  try {
    const ports = await Promise.all(
      Array.from({ length: o.processes }, (_, i) => {
        const child = spawn(process.execPath, [CLI, 'run'], {
          env: { ...process.env, ...o.env, HTTP_PORT: '0', LOG_FORMAT: 'json', LOG_LEVEL: 'info', DATA_DIR: join(o.dataDir, `process-${i}`) },
          stdio: ['ignore', 'pipe', 'pipe'],
        })
        children.push(child)
        return portOf(child)
      }),
    )
    let applied: number[] = []
    for (;;) {
      const counts = await Promise.all(ports.map(eventCounts))
      applied = counts.map((c) => c.applied)
      if (counts.reduce((n, c) => n + c.applied + c.late, 0) >= o.events) break
      await new Promise((r) => setTimeout(r, 100))
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    return { processes: o.processes, seconds, eventsPerSecond: o.events / seconds, appliedPerProcess: applied }
  } finally {
    await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : (c.once('exit', r), c.kill('SIGTERM'))))))
  }
}

/** The HTTP port a starting `cardpulse run` logs when it is ready. */
export function portOf(child: ChildProcess): Promise<number> {
  let output = ''
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString()
      const m = /"port":(\d+)/.exec(output)
      if (m) resolve(Number(m[1]))
    }
    child.stdout!.on('data', onData)
    child.stderr!.on('data', onData)
    child.once('exit', (code) => reject(new Error(`cardpulse run exited with ${code} before it was ready:\n${output.slice(-2000)}`)))
  })
}

/** Applied and late events so far, from a process's cardpulse_events_total. */
export async function eventCounts(port: number): Promise<{ applied: number; late: number }> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  return { applied: metricSum(text, 'cardpulse_events_total', 'result="applied"'), late: metricSum(text, 'cardpulse_events_total', 'result="late"') }
}

/** The sum of a metric's samples whose labels include `labels`, from a Prometheus text page. */
export function metricSum(text: string, name: string, labels = ''): number {
  let n = 0
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{([^}]*)\\})? (\\S+)$`, 'gm'))) if ((m[1] ?? '').includes(labels)) n += Number(m[2])
  return n
}
