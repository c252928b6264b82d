import type { BatchOutput } from './processor.ts'
import type { DeadLetter } from '../schemas/deadLetter.ts'
import type { Metrics } from '../core/metrics.ts'

/**
 * Counts one batch's outcome in the Prometheus metrics. Its dead letters are those the state stage
 * made (late events); bad input passed through from ingest is counted where it was decoded.
 */
export function countBatch(metrics: Metrics, out: BatchOutput) {
  if (out.applied) metrics.events.inc({ type: 'all', result: 'applied' }, out.applied)
  if (out.duplicates) metrics.events.inc({ type: 'all', result: 'duplicate' }, out.duplicates)
  if (out.late) metrics.events.inc({ type: 'all', result: 'late' }, out.late)
  if (out.timersFired) metrics.timersFired.inc(out.timersFired)
  for (const d of out.decisions) metrics.decisions.inc({ trigger: d.trigger, outcome: d.outcome, suppressed_by: d.suppressedBy ?? '' })
  for (const a of out.alerts) metrics.alerts.inc({ kind: a.kind, severity: a.severity })
  for (const q of out.deadLetters) countDeadLetter(metrics, q)
}

export function countDeadLetter(metrics: Metrics, q: DeadLetter) {
  metrics.deadLetters.inc({ code: q.error.code })
  if (q.error.code !== 'late_event') metrics.events.inc({ type: 'all', result: 'dead_letter' })
}
