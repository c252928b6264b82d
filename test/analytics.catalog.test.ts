import { describe, expect, it } from 'vitest'
import { loadCatalogFile, parseCatalog } from '../pipeline/catalog/index.ts'

/** The catalogue's economics: channel costs and the interchange rate behind ROI. */

describe('catalogue economics', () => {
  it('ships the defaults in the default catalogue', () => {
    expect(loadCatalogFile().economics).toEqual({ currency: 'CNY', interchangeRate: 0.006, channelCost: { sms: 0.05, push: 0, call: 3, app_banner: 0 } })
  })

  it('fills what a catalogue leaves out', () => {
    const c = parseCatalog('version: "x"\neconomics: { channelCost: { sms: 0.08 } }\ntriggers: {}', 'test.yaml')
    expect(c.economics).toEqual({ currency: 'CNY', interchangeRate: 0.006, channelCost: { sms: 0.08, push: 0, call: 3, app_banner: 0 } })
    expect(parseCatalog('version: "x"\ntriggers: {}', 'test.yaml').economics.interchangeRate).toBe(0.006)
  })

  it.each([
    ['economics: { interchange: 0.01 }', /economics: Unrecognized key: "interchange"/],
    ['economics: { channelCost: { fax: 1 } }', /economics\.channelCost: Unrecognized key: "fax"/],
    ['economics: { channelCost: { sms: -1 } }', /economics\.channelCost\.sms/],
    ['economics: { interchangeRate: 6 }', /economics\.interchangeRate/],
    ['economics: { currency: yuan }', /economics\.currency: must be an ISO 4217 code/],
  ])('rejects %s', (yaml, message) => {
    expect(() => parseCatalog(`version: "x"\n${yaml}\ntriggers: {}`, 'test.yaml')).toThrow(message)
  })
})
