import { z } from 'zod'

/** Public output contract (CONTRACT.md §1): what a bad input message becomes. */

export const DeadLetterCode = z.enum([
  'invalid_json',
  'not_an_object',
  'schema_violation',
  'unknown_type',
  'wrong_stream',
  'too_large',
  'pan_detected',
  'late_event',
  'future_event',
])
export type DeadLetterCode = z.infer<typeof DeadLetterCode>

export const DeadLetter = z.object({
  id: z.string(),
  source: z.object({ topic: z.string(), partition: z.number().int(), offset: z.string() }),
  error: z.object({ code: DeadLetterCode, message: z.string(), path: z.string() }),
  /**
   * The original bytes as UTF-8 text (base64 when not valid UTF-8), PAN-like runs masked in the
   * bytes, and at most the first 16 KiB of them.
   */
  original: z.string(),
  originalEncoding: z.enum(['utf8', 'base64']),
  /** The size of the whole original message in bytes. */
  originalBytes: z.number().int().nonnegative(),
  /** Whether `original` holds only the first part of the message. */
  originalTruncated: z.boolean(),
  receivedAt: z.iso.datetime({ offset: true }).optional(),
})
export type DeadLetter = z.infer<typeof DeadLetter>
