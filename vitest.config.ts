import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'operators/**/*.test.ts', 'pipeline/**/*.test.ts', 'schemas/**/*.test.ts', 'sinks/**/*.test.ts'],
    // With CARDPULSE_TESTCONTAINERS=1, Kafka, Redis and ClickHouse in Docker; otherwise nothing here.
    globalSetup: ['test/setup/containers.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Integration suites share one Kafka broker and one Redis; files run one after another.
    fileParallelism: false,
  },
})
