import type { Operator } from './types.ts'
import { activationReminder } from './activation.ts'
import { LIFECYCLE_OPERATORS } from './lifecycle/index.ts'
import { RISK_OPERATORS } from './risk/index.ts'
import { SPEND_OPERATORS } from './spend/index.ts'

/**
 * Every operator the pipeline runs, in the order they see each event. Risk signals come first:
 * a high or critical alert holds marketing from the very event that raised it, and triggers that
 * read recent alerts see one raised by the same event.
 */
export const OPERATORS: readonly Operator<any, any>[] = [...RISK_OPERATORS, activationReminder, ...LIFECYCLE_OPERATORS, ...SPEND_OPERATORS]
