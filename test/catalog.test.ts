import { describe, expect, it } from 'vitest'
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CatalogHolder, DEFAULT_CATALOG_FILE, loadCatalogFile, parseCatalog } from '../pipeline/catalog/index.ts'
import { testCatalogYaml, waitFor } from './helpers/services.ts'

describe('the trigger catalogue', () => {
  it('ships defaults that match the contract', () => {
    const c = loadCatalogFile()
    expect(c.policy).toMatchObject({ cooldown: 7 * 86_400_000, weeklyCap: 3, holdoutPercent: 10, quietHours: { start: '21:00', end: '09:00' }, ttl: 48 * 3_600_000, riskHold: 72 * 3_600_000 })
    expect(Object.keys(c.triggers)).toEqual(
      expect.arrayContaining([
        'activation_reminder',
        'first_swipe_incentive',
        'bind_wallet_nudge',
        'first_purchase_reward',
        'dormancy_wakeup',
        'churn_retention',
        'spend_threshold_challenge',
        'installment_offer',
        'cross_border_offer',
        'birthday_greeting',
        'renewal_reminder',
        'limit_upgrade_offer',
        'compliance_notice',
      ]),
    )
    expect(Object.fromEntries(Object.entries(c.signals).map(([k, v]) => [k, v.severity]))).toEqual({
      impossible_travel: 'high',
      night_burst: 'medium',
      card_testing: 'high',
      cashout_pattern: 'high',
      new_device_large_amount: 'critical',
      velocity: 'medium',
      amount_anomaly: 'low',
      prohibited_use: 'medium',
    })
  })

  it.each([
    ['version: ""\ntriggers: {}', /version: give the catalogue a version/],
    ['version: "x"\npolicy: { weeklyCap: -1 }\ntriggers: {}', /policy\.weeklyCap: /],
    ['version: "x"\npolicy: { cooldwon: 7d }\ntriggers: {}', /policy: Unrecognized key: "cooldwon"/],
    ['version: "x"\npolicy: { quietHours: { start: "9pm", end: "09:00" } }\ntriggers: {}', /policy\.quietHours\.start: must be a local time like 21:00/],
    ['version: "x"\ntriggers: { t: { goal: { kind: lifecycle, stage: activated }, attributionWindow: 7d, channels: [fax] } }', /triggers\.t\.channels\.0: /],
    ['version: "x"\ntriggers: [', /not valid YAML\/JSON/],
  ])('rejects %j with a message that says what to fix', (text, message) => {
    expect(() => parseCatalog(text, 'catalog.yaml')).toThrow(message)
  })

  it('reloads on file change; a bad file is rejected and the old catalogue stays in force', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardpulse-catalog-'))
    const file = join(dir, 'catalog.yaml')
    writeFileSync(file, testCatalogYaml({ version: 'v1' }))
    const events: unknown[] = []
    const holder = new CatalogHolder(file, (e) => events.push(e))
    holder.watch(50)
    try {
      expect(holder.current().version).toBe('v1')
      writeFileSync(file, testCatalogYaml({ version: 'v2' }))
      await waitFor('reload to v2', () => holder.current().version === 'v2', 5000, 50)
      writeFileSync(file, 'version: "v3"\ntriggers: { activation_reminder: { attributionWindow: soon } }')
      await waitFor('the rejection', () => events.some((e) => (e as { ok: boolean }).ok === false), 5000, 50)
      expect(holder.current().version).toBe('v2')
      expect(holder.reload()).toMatchObject({ ok: false, error: expect.stringMatching(/attributionWindow/) })
    } finally {
      holder.close()
    }
  })

  it('JSON works as well as YAML', () => {
    const yaml = readFileSync(DEFAULT_CATALOG_FILE, 'utf8')
    const fromYaml = parseCatalog(yaml, 'default.yaml')
    expect(parseCatalog(JSON.stringify(fromYaml), 'catalog.json')).toEqual(fromYaml)
  })
})
