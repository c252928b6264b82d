import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { PipelineHarness, app, defaultCatalogForTests, lifecycle, transaction } from './helpers/harness.ts'
import { FAST_RETRY_POLICY } from '../core/backoff.ts'
import { WebhookSender } from '../sinks/webhook/sender.ts'
import { WebhookDispatcher, type DeliveryRow } from '../sinks/webhook/dispatcher.ts'
import type { Catalog } from '../schemas/catalog.ts'

/**
 * Touchpoints cancelled while they wait (CONTRACT §2.1): the state stage asks for it in the batch's
 * commit when the goal is reached, consent for the channel is withdrawn or a high or critical risk
 * alert is raised; the dispatcher then never sends them.
 */

const HOUR = 3_600_000
const MIN = 60_000
/** 22:00 in Shanghai: the card is approved late in the evening. */
const APPROVED = Date.parse('2026-10-01T14:00:00.000Z')
/** 72 h later, 22:00 local: inside quiet hours, so the reminder waits for 09:00 local (01:00 UTC). */
const REMINDED = APPROVED + 72 * HOUR
const SEND_AT = Date.parse('2026-10-05T01:00:00.000Z')
const iso = (ms: number) => new Date(ms).toISOString()

const withQuietHours = (patch: (c: Catalog) => void = () => {}) =>
  defaultCatalogForTests((c) => {
    c.policy.quietHours = { start: '21:00', end: '09:00' }
    patch(c)
  })

/** A reminder decided at 22:00 local and waiting in the outbox for 09:00. */
async function waitingReminder(catalog = withQuietHours()) {
  const h = new PipelineHarness(catalog, { settle: true })
  await h.send(lifecycle('c1', 'approved', iso(APPROVED)))
  await h.advanceTo(REMINDED)
  const reminder = h.decisions.find((d) => d.trigger === 'activation_reminder')!
  expect(reminder).toMatchObject({ outcome: 'send', channel: 'push', sendAt: iso(SEND_AT) })
  expect((await h.store.dueWebhooks(0, Infinity, 10)).map((w) => w.decision.id)).toEqual([reminder.id])
  return { h, reminder }
}

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!()
})

/** A real HTTP receiver that answers `status` (after `hold`, when given) and keeps what it gets. */
async function receiver(status = 200, hold?: Promise<void>, arrived?: () => void) {
  const bodies: string[] = []
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', async () => {
      bodies.push(Buffer.concat(chunks).toString('utf8'))
      arrived?.()
      await hold
      res.writeHead(status).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  cleanups.push(() => new Promise((resolve) => server.close(() => resolve())))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, bodies }
}

/** Runs the real dispatcher once over the harness's outbox at `now`. */
async function dispatchAt(h: PipelineHarness, url: string, now: number) {
  const sender = new WebhookSender({ urls: { default: url }, secret: 'cancel-test-secret-000', timeoutMs: 2_000 })
  cleanups.push(() => sender.close())
  const dispatcher = new WebhookDispatcher({ store: h.store, sender, partitions: () => [0], clock: () => now, retry: FAST_RETRY_POLICY, batchSize: 50, concurrency: 2 })
  return dispatcher.runOnce()
}

async function deliveryRows(h: PipelineHarness): Promise<DeliveryRow[]> {
  return (await h.store.peekRows(0, 10_000)).filter((e) => e.value.table === 'deliveries').map((e) => e.value.row as DeliveryRow)
}

describe('cancelling touchpoints that still wait', () => {
  it('cancels a quiet-hours reminder when the card is activated overnight, before 09:00: no HTTP request, a cancelled row with goal_reached', async () => {
    const { h, reminder } = await waitingReminder()
    const activated = lifecycle('c1', 'activated', iso(REMINDED + 6 * HOUR)) // 04:00 local
    const out = await h.send(activated)
    expect(out.cancelled.map((c) => c.decisionId)).toEqual([reminder.id])
    expect(await h.store.dueWebhooks(0, Infinity, 10)).toEqual([])

    const hook = await receiver()
    const counts = await dispatchAt(h, hook.url, SEND_AT + 30 * MIN)
    expect(counts.delivered).toBe(0)
    expect(hook.bodies).toEqual([])
    expect(await deliveryRows(h)).toEqual([
      {
        decisionId: reminder.id,
        trigger: 'activation_reminder',
        customerId: 'c1',
        channel: 'push',
        status: 'cancelled',
        attempts: 0,
        httpStatus: null,
        latencyMs: null,
        error: null,
        deliveredAt: null,
        eventTime: reminder.eventTime,
        decidedAt: reminder.decidedAt,
        finishedAt: activated.occurredAt,
        cancelReason: 'goal_reached',
        cancelledBy: activated.eventId,
      },
    ])
  })

  it('sends the reminder at 09:00 when nothing happens overnight', async () => {
    const { h, reminder } = await waitingReminder()
    await h.send(app('c1', 'login', iso(REMINDED + 6 * HOUR)))
    const hook = await receiver()
    expect((await dispatchAt(h, hook.url, SEND_AT + MIN)).delivered).toBe(1)
    expect(hook.bodies.map((b) => JSON.parse(b).id)).toEqual([reminder.id])
    expect((await deliveryRows(h)).map((r) => r.status)).toEqual(['delivered'])
  })

  it('cancels it when consent for its channel is withdrawn, and not when another channel\'s is', async () => {
    const { h, reminder } = await waitingReminder()
    const sms = await h.send(app('c1', 'consent_changed', iso(REMINDED + HOUR), { attributes: { channel: 'sms', granted: false } }))
    expect(sms.cancellations).toEqual([])
    const withdrawn = app('c1', 'consent_changed', iso(REMINDED + 2 * HOUR), { attributes: { channel: 'push', granted: false } })
    const push = await h.send(withdrawn)
    expect(push.cancelled).toMatchObject([{ decisionId: reminder.id, reason: 'consent_withdrawn', cause: withdrawn.eventId }])
    const hook = await receiver()
    await dispatchAt(h, hook.url, SEND_AT + MIN)
    expect(hook.bodies).toEqual([])
    expect(await deliveryRows(h)).toMatchObject([{ decisionId: reminder.id, status: 'cancelled', cancelReason: 'consent_withdrawn', cancelledBy: withdrawn.eventId }])
  })

  it('cancels waiting marketing on a high risk alert, but not a service message', async () => {
    const { h, reminder } = await waitingReminder()
    // A barred merchant: a compliance_notice goes out at once (service messages skip quiet hours), and waits for the dispatcher.
    await h.send(transaction('c1', iso(REMINDED + 10 * MIN), 500, { merchant: { id: 'casino', mcc: '7995', country: 'CN' } }))
    const notice = h.decisions.find((d) => d.trigger === 'compliance_notice')!
    expect(notice.outcome).toBe('send')
    // Three tiny charges in minutes: card_testing, a high alert. They reach the notice's goal (a transaction), which does not cancel a service message either.
    const out = await h.send(...[20, 21, 22].map((m) => transaction('c1', iso(REMINDED + m * MIN), 1)))
    const alert = h.alerts.find((a) => a.kind === 'card_testing')!
    expect(alert.severity).toBe('high')
    expect(out.cancelled).toMatchObject([{ decisionId: reminder.id, reason: 'risk_alert', cause: alert.id }])
    expect((await h.store.dueWebhooks(0, Infinity, 10)).map((w) => w.decision.id)).toEqual([notice.id])
    expect(await deliveryRows(h)).toMatchObject([{ decisionId: reminder.id, status: 'cancelled', cancelReason: 'risk_alert', cancelledBy: alert.id }])
  })

  it('leaves waiting touchpoints alone on a medium alert', async () => {
    const { h, reminder } = await waitingReminder()
    const out = await h.send(transaction('c1', iso(REMINDED + 10 * MIN), 500, { merchant: { id: 'casino', mcc: '7995', country: 'CN' } }))
    expect(h.alerts.map((a) => a.severity)).toEqual(['medium'])
    expect(out.cancellations).toEqual([])
    expect((await h.store.dueWebhooks(0, Infinity, 10)).map((w) => w.decision.id)).toContain(reminder.id)
  })

  it('lets an attempt already in flight decide: delivered wins over the cancellation, retried loses to it', async () => {
    for (const status of [200, 503]) {
      const { h, reminder } = await waitingReminder()
      let release!: () => void
      const hold = new Promise<void>((resolve) => (release = resolve))
      let arrived!: () => void
      const sending = new Promise<void>((resolve) => (arrived = resolve))
      const hook = await receiver(status, hold, arrived)
      const dispatched = dispatchAt(h, hook.url, SEND_AT + MIN)
      await sending
      // The card is activated while the request is on the wire.
      const out = await h.send(lifecycle('c1', 'activated', iso(REMINDED + 6 * HOUR)))
      expect(out.cancellations.map((c) => c.decisionId)).toEqual([reminder.id])
      expect(out.cancelled).toEqual([])
      release()
      await dispatched
      expect(hook.bodies).toHaveLength(1)
      const rows = await deliveryRows(h)
      expect(rows.map((r) => [r.status, r.attempts])).toEqual([status === 200 ? ['delivered', 1] : ['cancelled', 1]])
      expect(await h.store.dueWebhooks(0, Infinity, 10)).toEqual([])
    }
  })

  it('asks nothing of a touchpoint past its TTL, nor of one decided after the cause', async () => {
    const { h } = await waitingReminder()
    const out = await h.send(lifecycle('c1', 'activated', iso(REMINDED + 49 * HOUR)))
    expect(h.conversions.some((c) => c.converted)).toBe(true)
    expect(out.cancellations).toEqual([])
  })
})
