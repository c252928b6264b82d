import type { Operator } from './types.ts'
import { activationReminder } from './activation.ts'
import { RISK_OPERATORS } from './risk/index.ts'
import { SPEND_OPERATORS } from './spend/index.ts'

/**
 * Every operator the pipeline runs, in the order they see each event. Risk signals come before
 * the marketing triggers so that a trigger reading recent alerts sees one raised by the same event.
 */
export const OPERATORS: readonly Operator<any, any>[] = [...RISK_OPERATORS, activationReminder, ...SPEND_OPERATORS]
