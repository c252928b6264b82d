import { afterEach, describe, expect, it } from 'vitest'
import startContainers from './setup/containers.ts'

/** The switch that runs the suites on Kafka, Redis and ClickHouse in Docker (testcontainers). */

const saved = { ...process.env }
afterEach(() => {
  process.env = { ...saved }
})

describe('CARDPULSE_TESTCONTAINERS', () => {
  it('starts nothing when unset: the suites use scripts/services.sh and the embedded ClickHouse', async () => {
    delete process.env.CARDPULSE_TESTCONTAINERS
    expect(await startContainers()).toBeUndefined()
    expect(process.env.KAFKA_BROKERS).toBe(saved.KAFKA_BROKERS)
  })

  it('says in one line what to do when it is set and no Docker engine answers', async () => {
    process.env.CARDPULSE_TESTCONTAINERS = '1'
    process.env.DOCKER_HOST = 'unix:///nonexistent/docker.sock'
    const err = await startContainers().then(
      () => undefined,
      (e: Error) => e,
    )
    expect(err?.message).toMatch(/^CARDPULSE_TESTCONTAINERS=1 needs a Docker engine \(.+\); start Docker, or unset it to run on scripts\/services\.sh$/)
    expect(err?.message).not.toContain('\n')
    expect(process.env.KAFKA_BROKERS).toBe(saved.KAFKA_BROKERS)
  }, 60_000)
})
