import { z } from 'zod'

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const
const PATTERN = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/

/** Parses "500ms", "30s", "5m", "72h", "7d" into milliseconds; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const m = PATTERN.exec(text.trim())
  if (!m) return undefined
  return Math.round(Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS])
}

/** A duration written like "72h" or "7d" (or a number of milliseconds), parsed to milliseconds. */
export const Duration = z.union([z.number().nonnegative(), z.string()]).transform((value, ctx) => {
  if (typeof value === 'number') return value
  const ms = parseDuration(value)
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not a duration; write e.g. 90s, 30m, 72h or 7d` })
    return z.NEVER
  }
  return ms
})

export const HOUR = UNIT_MS.h
export const DAY = UNIT_MS.d
