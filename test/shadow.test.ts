import { describe, expect, it } from 'vitest'
import { PipelineHarness, app, defaultCatalogForTests, lifecycle, transaction } from './helpers/harness.ts'
import { PartitionProcessor } from '../pipeline/processor.ts'
import { MemoryStore } from '../pipeline/store/memory.ts'
import { atEventTime } from '../pipeline/policy.ts'
import { InputEvent } from '../schemas/events.ts'
import { decodeRecord, encodeRecord } from '../pipeline/store/codec.ts'
import type { Catalog } from '../schemas/catalog.ts'
import type { Decision } from '../schemas/decision.ts'
import type { BatchOutput } from '../pipeline/stream.ts'
import { mkdtempSync, readFileSync, existsSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { replay } from '../commands/replay.ts'
import { ReplayConfig, parseConfig } from '../commands/config.ts'
import { createLogger } from '../core/log.ts'

/**
 * A shadow catalogue: a draft's decision policy evaluated on the live operators' moments, with its
 * own ledger, recorded and never sent; the live decisions, state ledger and outbox stay as they
 * are without it.
 */

const HOUR = 3_600_000
const DAY = 24 * HOUR
const T0 = Date.parse('2026-10-01T02:00:00.000Z')
const iso = (ms: number) => new Date(ms).toISOString()

const live = () => defaultCatalogForTests((c) => (c.policy.cooldown = 7 * DAY))
/** The draft: no activation reminders, a one-day cooldown. */
const draft = () =>
  defaultCatalogForTests((c) => {
    c.version = 'draft-1'
    c.policy.cooldown = DAY
    c.triggers.activation_reminder.enabled = false
  })

/** Customers whose moments the two catalogues decide differently (made once: event ids are numbered). */
const HISTORY = history()
function history(): Record<string, unknown>[] {
  const events: Record<string, unknown>[] = []
  for (const c of ['a', 'b', 'c']) {
    events.push(lifecycle(c, 'approved', iso(T0)))
    // Reminded after 72 h (live); never (draft).
    events.push(lifecycle(c, 'activated', iso(T0 + 100 * HOUR)))
    // Large purchases two days apart, each an installment offer: the later ones fall in the live 7-day cooldown, not in the draft's 1-day one.
    for (const d of [6, 8, 10]) events.push(transaction(c, iso(T0 + d * DAY), 6000))
    events.push(app(c, 'login', iso(T0 + 12 * DAY)))
  }
  return events.sort((x, y) => String(x.occurredAt).localeCompare(String(y.occurredAt)))
}

/** Runs the real processor over the history, one event per batch, and keeps every commit's outbox. */
async function run(shadow?: Catalog) {
  const store = new MemoryStore()
  const catalog = live()
  const processor = new PartitionProcessor({
    partition: 0,
    store,
    catalog: () => catalog,
    shadowCatalog: () => shadow,
    watermarks: { maxDisorder: 0 },
    allowedLateness: 0,
    decisionTime: atEventTime,
    outbox: { webhooks: true, alerts: true, rows: true },
  })
  const outputs: BatchOutput[] = []
  let offset = 0
  for (const e of HISTORY) {
    const event = InputEvent.parse(e)
    const at = Date.parse(event.occurredAt)
    outputs.push(await processor.process([{ offset: String(++offset), event, at, source: { topic: 't', partition: 0, offset: String(offset) } }]))
  }
  outputs.push(await processor.advanceTo(T0 + 30 * DAY))
  const rows = (await store.peekRows(0, 100_000)).map((e) => e.value)
  return {
    store,
    decisions: outputs.flatMap((o) => o.decisions),
    shadow: outputs.flatMap((o) => o.shadowDecisions),
    rows,
    webhooks: await store.dueWebhooks(0, Infinity, 10_000),
    records: new Map([...store.records(0)]),
  }
}

const count = (ds: Decision[], trigger: string, outcome: string, suppressedBy?: string) =>
  ds.filter((d) => d.trigger === trigger && d.outcome === outcome && (suppressedBy === undefined || d.suppressedBy === suppressedBy)).length

describe('shadow catalogue', () => {
  it('decides the same moments under the draft: a disabled trigger and a shorter cooldown give other decisions', async () => {
    const { decisions, shadow } = await run(draft())
    expect(count(decisions, 'activation_reminder', 'send')).toBe(3)
    expect(count(shadow, 'activation_reminder', 'send') + count(shadow, 'activation_reminder', 'suppressed')).toBe(0)
    expect(count(decisions, 'installment_offer', 'send')).toBe(3)
    expect(count(decisions, 'installment_offer', 'suppressed', 'cooldown')).toBe(6)
    expect(count(shadow, 'installment_offer', 'send')).toBe(9)
    expect(count(shadow, 'installment_offer', 'suppressed')).toBe(0)
    // A shadow decision has its live twin's id, and says which catalogue made it.
    const liveIds = new Set(decisions.map((d) => d.id))
    expect(shadow.every((d) => liveIds.has(d.id) && d.catalogVersion === 'draft-1')).toBe(true)
  })

  it('leaves the live decisions, the live ledger and the outbox byte for byte as a run without it', async () => {
    const without = await run()
    const withShadow = await run(draft())
    expect(JSON.stringify(withShadow.decisions)).toBe(JSON.stringify(without.decisions))
    expect(JSON.stringify(withShadow.webhooks)).toBe(JSON.stringify(without.webhooks))
    for (const [id, rec] of without.records) {
      const other = withShadow.records.get(id)!
      expect(JSON.stringify(other.policy)).toBe(JSON.stringify(rec.policy))
      const { shadow, ...rest } = other
      expect(JSON.stringify(rest)).toBe(JSON.stringify(rec))
      expect(shadow).toBeDefined()
    }
    // The outbox differs only by the shadow rows: nothing shadow becomes a webhook.
    expect(JSON.stringify(withShadow.rows.filter((r) => r.table !== 'shadow_decisions'))).toBe(JSON.stringify(without.rows))
    const shadowIds = new Set(withShadow.shadow.filter((d) => d.outcome === 'send').map((d) => d.id))
    const sentIds = new Set(without.decisions.filter((d) => d.outcome === 'send').map((d) => d.id))
    expect([...shadowIds].some((id) => !sentIds.has(id))).toBe(true) // the draft sends what live does not…
    expect(withShadow.webhooks.every((w) => sentIds.has(w.decision.id))).toBe(true) // …and none of it is queued
  })

  it('records each shadow decision as a shadow_decisions row with its channel cost under the draft', async () => {
    const d = draft()
    d.economics.channelCost.push = 0.25
    const { rows, shadow } = await run(d)
    const shadowRows = rows.filter((r) => r.table === 'shadow_decisions').map((r) => r.row as Decision & { channelCost: number })
    expect(shadowRows.map((r) => r.id)).toEqual(shadow.map((s) => s.id))
    for (const r of shadowRows) expect(r.channelCost).toBe(r.outcome === 'send' && r.channel === 'push' ? 0.25 : 0)
    expect(shadowRows.some((r) => r.channelCost === 0.25)).toBe(true)
  })

  it('keeps the draft ledger in the record\'s compact encoding, and drops it once no shadow runs', async () => {
    const h = new PipelineHarness(live())
    const { records } = await run(draft())
    const rec = records.get('a')!
    expect(rec.shadow!.lastContact.installment_offer).toBe(T0 + 10 * DAY)
    expect(rec.policy.lastContact.installment_offer).toBe(T0 + 6 * DAY)
    expect(decodeRecord(encodeRecord(rec))).toEqual(JSON.parse(JSON.stringify(rec)))
    // A processor without a shadow catalogue on that state: the next decision drops the draft ledger.
    await h.store.commit({ partition: 0, expectedOffset: null, offset: null, watermark: T0 + 20 * DAY, customers: new Map([['a', rec]]), timersSet: [], timersRemoved: [], webhooks: [], alerts: [], deadLetters: [], rows: [] })
    await h.send(transaction('a', iso(T0 + 25 * DAY), 6000))
    await h.finish()
    expect(h.decisions.map((x) => x.trigger)).toContain('installment_offer')
    expect([...h.store.records(0)].find(([id]) => id === 'a')![1].shadow).toBeUndefined()
  })

  it('replay: decisions byte for byte as without the draft, and the draft\'s in shadow-decisions.ndjson and summary.json', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardpulse-shadow-replay-'))
    const input = join(dir, 'events.ndjson')
    writeFileSync(input, HISTORY.map((e) => JSON.stringify(e)).join('\n') + '\n')
    writeFileSync(join(dir, 'live.yaml'), stringify(live()))
    writeFileSync(join(dir, 'draft.yaml'), stringify(draft()))
    const base = { input: [input], catalogFile: join(dir, 'live.yaml'), progress: false, threads: 2, logLevel: 'silent' }
    await replay(parseConfig(ReplayConfig, { ...base, out: join(dir, 'without') }), createLogger('silent'))
    await replay(parseConfig(ReplayConfig, { ...base, out: join(dir, 'with'), shadowCatalog: join(dir, 'draft.yaml') }), createLogger('silent'))
    for (const f of ['decisions.ndjson', 'alerts.ndjson', 'conversions.ndjson', 'dlq.ndjson'])
      expect(readFileSync(join(dir, 'with', f), 'utf8'), f).toBe(readFileSync(join(dir, 'without', f), 'utf8'))
    expect(existsSync(join(dir, 'without', 'shadow-decisions.ndjson'))).toBe(false)
    const without = JSON.parse(readFileSync(join(dir, 'without', 'summary.json'), 'utf8'))
    const withShadow = JSON.parse(readFileSync(join(dir, 'with', 'summary.json'), 'utf8'))
    expect(without.shadow).toBeUndefined()
    const { shadow, ...rest } = withShadow
    expect(rest).toEqual(without)
    expect(shadow.catalogVersion).toBe('draft-1')
    expect(shadow.decisions.byTrigger.installment_offer).toEqual({ send: 9, control: 0, suppressed: 0 })
    expect(without.decisions.byTrigger.installment_offer).toEqual({ send: 3, control: 0, suppressed: 6 })
    expect(shadow.decisions.byTrigger.activation_reminder).toBeUndefined()
    const shadowLines = readFileSync(join(dir, 'with', 'shadow-decisions.ndjson'), 'utf8').trim().split('\n')
    expect(shadowLines).toHaveLength(shadow.decisions.total)
  })
})
