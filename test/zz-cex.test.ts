import { it } from 'vitest'
import { PipelineHarness, defaultCatalogForTests, lifecycle, transaction, app } from './helpers/harness.ts'
import { OPERATORS } from '../operators/index.ts'
import { crossBorderOffer } from '../operators/lifecycle/crossBorder.ts'
const H = 3600000, DAY = 24 * H, L = 2 * DAY
const T0 = Date.parse('2026-10-01T02:00:00.000Z')
const at = (ms: number) => new Date(T0 + ms).toISOString()
async function run(evs: any[], ops: any, lowSev = false) {
  const h = new PipelineHarness(defaultCatalogForTests(lowSev ? (c) => { for (const k of Object.keys(c.signals)) (c.signals as any)[k].severity = 'low' } : undefined), { allowedLateness: L, operators: ops })
  for (const e of evs) await h.send(e)
  await h.advanceTo(T0 + 120 * DAY)
  return { dl: h.deadLetters.length, d: h.decisions.map((d) => [d.trigger, d.eventTime, d.outcome, d.suppressedBy ?? '']).sort().map(String), a: h.alerts.map((a) => [a.kind, a.eventTime]).map(String) }
}
async function cmp(name: string, sorted: any[], arrival: any[], ops: any = OPERATORS, lowSev = false) {
  console.log(name, '\n sorted ', JSON.stringify(await run(sorted, ops, lowSev)), '\n arrival', JSON.stringify(await run(arrival, ops, lowSev)))
}
it('cex', async () => {
  { const a = lifecycle('c', 'approved', at(0)), c = lifecycle('c', 'closed', at(72 * H + 1000)), l = app('c', 'login', at(72 * H + L))
    await cmp('activation', [a, c, l], [a, l, c]) }
  { const a = lifecycle('c', 'approved', at(0), { profile: { timezone: 'America/New_York' } }), t = transaction('c', at(0), 7200)
    await cmp('tz (spendChallenge/churn)', [a, t], [t, a]) }
  { const a = lifecycle('c', 'approved', at(0), { creditLimit: 1000 }), t = transaction('c', at(1000), 900)
    await cmp('limitUpgrade', [a, t], [t, a]) }
  { const r = app('c', 'device_registered', at(0)), t = transaction('c', at(10 * 60000), 6000), l = app('c', 'login', at(2 * H + 60000))
    await cmp('newDevice', [r, t, l], [r, l, t], OPERATORS, true) }
  { const t1 = transaction('c', at(0), 5), t2 = transaction('c', at(1000), 5), t3 = transaction('c', at(2000), 5), l = app('c', 'login', at(20 * 60000 + 2001))
    await cmp('cardTesting', [t1, t2, t3, l], [t1, t2, l, t3], OPERATORS, true) }
  { const m = (lat: number, lon: number) => ({ merchant: { id: 'm', mcc: '5411', country: 'CN', lat, lon } })
    const t1 = transaction('c', at(0), 50, m(31.23, 121.47)), t2 = transaction('c', at(30 * 60000), 50, m(39.9, 116.4)), l = app('c', 'login', at(26 * H))
    await cmp('impossibleTravel', [t1, t2, l], [t1, l, t2], OPERATORS, true) }
  { const a = lifecycle('c', 'approved', at(2 * DAY + H), { profile: { timezone: 'America/New_York' } })
    const ts = [0, 1000, 2000].map((d) => transaction('c', at(2 * DAY + 2 * H + d), 20)) // 2026-10-03T04:00Z = 00:00 New York
    await cmp('nightBurst', [a, ...ts], [ts[0], ts[1], ts[2], a], OPERATORS, true) }
  { const a = lifecycle('c', 'approved', at(0), { profile: { homeCountry: 'US' } }), t = transaction('c', at(1000), 50)
    await cmp('crossBorder', [a, t], [t, a], [crossBorderOffer]) }
  { // risk hold hull
    const tiny = [0, 1000, 2000].map((d) => transaction('c', at(d), 5))
    const abroad = transaction('c', at(7 * DAY), 50, { merchant: { id: 'm_jp', mcc: '5411', country: 'JP' } })
    const m = (lat: number, lon: number) => ({ merchant: { id: 'm', mcc: '5411', country: 'CN', lat, lon } })
    const s1 = transaction('c', at(7 * DAY + H), 50, m(31.23, 121.47)), s2 = transaction('c', at(7 * DAY + H + 60000), 50, m(39.9, 116.4))
    const l = app('c', 'login', at(7 * DAY + L + 1))
    await cmp('riskHold', [...tiny, abroad, s1, s2, l], [...tiny, abroad, l, s1, s2]) }
})
