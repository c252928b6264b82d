import { describe, expect, it } from 'vitest'
import { createLogger, withoutPassword } from '../core/log.ts'

/** Secrets never reach a log line: settings, headers and the passwords inside server URLs are cut. */

function logged(write: (log: ReturnType<typeof createLogger>) => void): string {
  let out = ''
  const log = createLogger('info', 'json', { write: (line: string) => void (out += line) })
  write(log)
  return out
}

describe('log redaction', () => {
  it('cuts secret settings and tokens, at the top level and one level down', () => {
    const secrets = {
      webhookSecret: 'whsec-current-0123456789',
      webhookSecretPrevious: 'whsec-previous-0123456789',
      httpToken: 'http-token-0123456789',
      metricsToken: 'metrics-token-0123456789',
      kafkaSaslPassword: 'sasl-password-0123456789',
      clickhousePseudonymiseKey: 'pseudonymise-key-0123456789',
      password: 'plain-password-0123456789',
      authorization: 'Bearer header-token-0123456789',
    }
    const out = logged((log) => {
      log.info(secrets, 'top level')
      log.info({ config: secrets, req: { headers: { authorization: 'Bearer nested-token-0123456789' } } }, 'nested')
    })
    for (const value of [...Object.values(secrets), 'nested-token-0123456789']) expect(out).not.toContain(value.replace('Bearer ', ''))
    expect(out).toContain('"webhookSecret":"[redacted]"')
    expect(out).toContain('"config":{')
  })

  it('keeps server URLs but not their passwords', () => {
    const out = logged((log) => log.info({ redisUrl: 'rediss://cardpulse:s3cret-pass@redis.internal:6380', config: { clickhouseUrl: 'https://analyst:ch-pass@ch.internal:8443' } }, 'connecting'))
    expect(out).not.toContain('s3cret-pass')
    expect(out).not.toContain('ch-pass')
    expect(out).toContain('rediss://cardpulse:***@redis.internal:6380')
    expect(out).toContain('https://analyst:***@ch.internal:8443')
  })

  it('takes the password out of any URL in a text, and leaves other text alone', () => {
    expect(withoutPassword('cannot reach Redis at redis://:pw@127.0.0.1:6379 (ECONNREFUSED)')).toBe('cannot reach Redis at redis://:***@127.0.0.1:6379 (ECONNREFUSED)')
    expect(withoutPassword('redis-cluster://u:p%40ss@h1:1,h2:2')).toBe('redis-cluster://u:***@h1:1,h2:2')
    expect(withoutPassword('http://127.0.0.1:8123 and redis://host:6379')).toBe('http://127.0.0.1:8123 and redis://host:6379')
    expect(withoutPassword('/api/customers/c/explain')).toBe('/api/customers/c/explain')
  })
})
