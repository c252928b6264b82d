import { UnavailableError } from '../../core/errors.ts'
import { errText } from '../../core/instrumentation.ts'

/** Runs a first call to the broker; failing, it becomes the one-line error a person can act on. */
export async function reaching<T>(brokers: string[], fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (e) {
    throw new UnavailableError('kafka', `cannot reach Kafka at ${brokers.join(',')} (${errText(e)})`, 'start Kafka or set KAFKA_BROKERS', { cause: e })
  }
}
