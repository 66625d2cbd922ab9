// Unit (no network, no processes): /metrics with --workers is one text for
// every process, counters and gauges summed, except what a sum would hide
// (one process's memory, CPU, event-loop lag: a `worker` label each) and what
// every process holds alike (the users: the largest, not N times it).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { createMetrics } from '../../src/metrics';
import { sumMetrics } from '../../src/workers/metrics-sum';
import { parseMetrics } from '../support/metrics';

async function processMetrics(ranges: number, users: number, residentBytes: number): Promise<Awaited<ReturnType<Registry['getMetricsAsJSON']>>> {
  const registry = new Registry();
  const metrics = createMetrics(registry);
  metrics.grpcRequests.inc({ service: 'KV', method: 'Range', code: 'OK', source: 'mirror' }, ranges);
  metrics.authUsers.set(users);
  // The real figure is this test's own memory: one made-up value per process tells them apart.
  return (await registry.getMetricsAsJSON()).map((metric) =>
    metric.name === 'process_resident_memory_bytes' ? { ...metric, values: metric.values.map((value) => ({ ...value, value: residentBytes })) } : metric,
  );
}

test('sums counts over processes, labels per-process gauges, and counts shared users once', async () => {
  const text = await sumMetrics([
    { process: 'mirror', metrics: await processMetrics(0, 0, 100) },
    { process: '1', metrics: await processMetrics(5, 3, 200) },
    { process: '2', metrics: await processMetrics(7, 3, 300) },
  ]);
  const samples = parseMetrics(text);
  const ranges = samples.find((s) => s.name === 'etcd_cache_proxy_grpc_requests_total' && s.labels.method === 'Range');
  assert.equal(ranges?.value, 12);
  assert.equal(samples.find((s) => s.name === 'etcd_cache_proxy_auth_users')?.value, 3);
  const memory = Object.fromEntries(samples.filter((s) => s.name === 'process_resident_memory_bytes').map((s) => [s.labels.worker, s.value]));
  assert.deepEqual(memory, { mirror: 100, '1': 200, '2': 300 });
});
