// Unit: event log retention and store gauges (temporary LMDB, no network).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import pino from 'pino';
import { Registry } from 'prom-client';
import { createMetrics } from '../../src/metrics';
import { startStoreMaintenance } from '../../src/mirror/store-maintenance';
import { encodeEvent } from '../../src/etcd/event-bytes';
import { encodeKeyValue } from '../../src/etcd/kv-bytes';
import { openStore } from '../../src/store/store';

describe('store maintenance', () => {
  it('keeps the last --history revisions of the log and publishes the size', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ecp-maint-'));
    const store = openStore(dir);
    const metrics = createMetrics(new Registry());
    const identity = { cluster_id: '1', member_id: '2', raft_term: '3' };
    for (let revision = 2; revision <= 30; revision += 1) {
      const kv = encodeKeyValue({ key: Buffer.from(`k${revision % 5}`), value: Buffer.from('v'), create_revision: revision, mod_revision: revision, version: 1, lease: '0' });
      store.applyEvents([encodeEvent('PUT', kv)], identity);
    }
    const maintenance = startStoreMaintenance(store, 10, metrics, pino({ level: 'silent' }));
    try {
      await maintenance.runOnce();
      assert.deepEqual(
        [...store.eventsAfter(0)].map((e) => e.revision),
        Array.from({ length: 10 }, (_, i) => 21 + i),
      );
      assert.equal(store.meta().logStart, 21);
      assert.equal((await metrics.storeKeys.get()).values[0]?.value, 5);
      assert.equal((await metrics.storeLogRevisions.get()).values[0]?.value, 10);
      assert.ok(((await metrics.storeBytes.get()).values[0]?.value ?? 0) > 0);
    } finally {
      maintenance.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
