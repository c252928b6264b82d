import type { Operator } from './types.ts'
import { activationReminder } from './activation.ts'

/** Every operator the pipeline runs, in the order they see each event. */
export const OPERATORS: readonly Operator<any, any>[] = [activationReminder]
