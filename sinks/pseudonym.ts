import { createHmac } from 'node:crypto'

/**
 * Pseudonymised customer ids for the analysts' tables (CLICKHOUSE_PSEUDONYMISE_KEY): a keyed HMAC,
 * so the same customer has the same pseudonym in every table and joins still work, while no one
 * without the key can link a row to a customer, nor compute a pseudonym from a guessed id.
 */

export type Pseudonymise = (customerId: string) => string

/** `p_` + the first 32 hex digits (128 bits) of HMAC-SHA256(key, customerId). */
export function pseudonymiser(key: string): Pseudonymise {
  if (!key) throw new TypeError('a pseudonymisation key must not be empty')
  return (customerId) => `p_${createHmac('sha256', key).update(customerId).digest('hex').slice(0, 32)}`
}

/** `"customerId": "<id>"` in JSON text (escaped quotes inside the value included). */
const CUSTOMER_ID_VALUE = /("customerId"\s*:\s*")((?:[^"\\]|\\.)*)"/g

/** JSON text (a dead letter's original bytes, an error message) with every customerId value pseudonymised. */
export function pseudonymiseText(text: string, pseudonymise: Pseudonymise): string {
  return text.replace(CUSTOMER_ID_VALUE, (_, head: string, id: string) => `${head}${pseudonymise(id)}"`)
}

/** The same for bytes kept as base64 (not UTF-8): customer ids are ASCII, so latin1 carries every other byte through unchanged. */
export function pseudonymiseBase64(base64: string, pseudonymise: Pseudonymise): string {
  return Buffer.from(pseudonymiseText(Buffer.from(base64, 'base64').toString('latin1'), pseudonymise), 'latin1').toString('base64')
}
