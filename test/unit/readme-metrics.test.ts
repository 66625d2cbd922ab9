// Unit test (no network): the README's metrics table and the registry are the same list. A metric added in
// src/metrics.ts without its row (or a row left after its metric went) fails here.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { createMetrics } from '../../src/metrics';

const PREFIX = 'etcd_cache_proxy_';

/** The names in the first column of the README's "## Metrics" table; `..._x` stands for `etcd_cache_proxy_x`. */
function readmeMetricNames(): Set<string> {
  const readme = readFileSync(resolve(__dirname, '..', '..', 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Metrics\n');
  const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
  const names = new Set<string>();
  for (const row of section.matchAll(/^\| ([^|]+) \|/gm)) {
    for (const cell of (row[1] ?? '').matchAll(/`([^`]+)`/g)) {
      const name = (cell[1] ?? '').replace(/^\.\.\._/, PREFIX);
      if (name.startsWith(PREFIX)) names.add(name);
    }
  }
  return names;
}

test("every metric of the proxy's own has its row in the README's metrics table, and every row its metric", async () => {
  const registry = new Registry();
  createMetrics(registry);
  const registered = new Set((await registry.getMetricsAsJSON()).map((metric) => metric.name).filter((name) => name.startsWith(PREFIX)));
  const documented = readmeMetricNames();
  assert.ok(registered.size > 30, `the registry holds the proxy's metrics (found ${registered.size})`);
  assert.deepEqual([...registered].filter((name) => !documented.has(name)).sort(), [], 'registered, not in the README');
  assert.deepEqual([...documented].filter((name) => !registered.has(name)).sort(), [], 'in the README, not registered');
});
