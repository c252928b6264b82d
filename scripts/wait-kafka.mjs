#!/usr/bin/env node
// Waits until a Kafka broker answers an admin request (list topics). An open port is not
// enough: the broker accepts connections before its KRaft metadata is loaded.
//
//   node scripts/wait-kafka.mjs [--brokers 127.0.0.1:19092] [--timeout 60] [--pid N] [--quiet]
//
// --pid makes the wait give up at once if that process exits (a broker that dies while
// starting should not cost a full timeout). Exit 0 when ready, 1 with one line on stderr.

import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: {
    brokers: { type: 'string', default: process.env.KAFKA_BROKERS || '127.0.0.1:19092' },
    timeout: { type: 'string', default: '60' },
    pid: { type: 'string' },
    quiet: { type: 'boolean', default: false },
  },
});

const fail = (msg) => {
  process.stderr.write(`wait-kafka: ${msg}\n`);
  process.exit(1);
};

let Kafka, logLevel;
try {
  ({ Kafka, logLevel } = (await import('kafkajs')).default);
} catch {
  fail('kafkajs is not installed (run `npm ci` first)');
}

const brokers = opts.brokers.split(',').map((b) => b.trim()).filter(Boolean);
const deadline = Date.now() + Number(opts.timeout) * 1000;
const pid = opts.pid ? Number(opts.pid) : undefined;

const alive = (p) => {
  try {
    process.kill(p, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
};

const kafka = new Kafka({
  clientId: 'cardpulse-wait-kafka',
  brokers,
  connectionTimeout: 1000,
  requestTimeout: 3000,
  // The outer loop does the retrying; kafkajs' own backoff would overshoot the deadline.
  retry: { retries: 0 },
  logLevel: logLevel.NOTHING,
});

let lastError = 'no attempt made';
while (Date.now() < deadline) {
  if (pid !== undefined && !alive(pid)) fail(`broker process ${pid} exited while starting`);
  const admin = kafka.admin();
  try {
    await admin.connect();
    await admin.listTopics();
    await admin.disconnect();
    if (!opts.quiet) process.stdout.write(`kafka answers on ${brokers.join(',')}\n`);
    process.exit(0);
  } catch (err) {
    lastError = err?.message || String(err);
    await admin.disconnect().catch(() => {});
  }
  await new Promise((r) => setTimeout(r, 250));
}
fail(`no Kafka broker answered on ${brokers.join(',')} within ${opts.timeout}s (last error: ${lastError})`);
