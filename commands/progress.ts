import cliProgress from 'cli-progress'

/** A progress bar on stderr for long CLI work; silent when stderr is not a terminal. */
export function progressBar(label: string, total: number | undefined) {
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} {bar} {percentage}% | {value_mb}/{total_mb} MB | {events} events | {eta_formatted} left`,
      hideCursor: true,
      stream: process.stderr,
      etaBuffer: 50,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  )
  const mb = (n: number) => (n / 1_048_576).toFixed(1)
  let started = false
  let events = 0
  return {
    start() {
      if (total === undefined || !process.stderr.isTTY) return
      bar.start(total, 0, { value_mb: mb(0), total_mb: mb(total), events: 0 })
      started = true
    },
    bytes(value: number) {
      if (started) bar.update(Math.min(value, total!), { value_mb: mb(value), events })
    },
    events(n: number) {
      events = n
    },
    stop() {
      if (started) bar.stop()
      started = false
    },
  }
}

/** A progress bar in simulated days, on stderr; silent when stderr is not a terminal. */
export function dayProgressBar(label: string, start: number, days: number, enabled = true) {
  const bar = new cliProgress.SingleBar(
    { format: `${label} {bar} {percentage}% | day {value}/{total} | {events} events | {eta_formatted} left`, hideCursor: true, stream: process.stderr, fps: 5 },
    cliProgress.Presets.shades_classic,
  )
  let started = false
  return {
    start() {
      if (!enabled || !process.stderr.isTTY) return
      bar.start(days, 0, { events: 0 })
      started = true
    },
    update(time: number, events: number) {
      if (started) bar.update(Math.min(days, Math.max(0, Math.floor((time - start) / 86_400_000))), { events })
    },
    stop() {
      if (started) bar.stop()
      started = false
    },
  }
}
