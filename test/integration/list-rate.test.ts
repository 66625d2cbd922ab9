// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// Integration (real etcd): a list of the keyspace (a first sync, or one after
// a compaction) reads no faster than --list-bytes-per-second, a page at a
// time, so a fleet listing again at once does not read etcd's whole keyspace
// in one go; and the mirror it makes is exact.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy } from '../support/proxy';
import { metric } from '../support/metrics';
import { call, rawClients } from '../support/raw-client';
import { until, untilValue } from '../support/until';

/** Two full pages of 1000 keys and one of a single key. */
const KEYS = 2_001;
const VALUE_BYTES = 100;

describe('listing the keyspace at a bounded rate', () => {
  let etcd: EtcdServer;

  before(async () => {
    etcd = await startEtcd();
    const direct = rawClients(etcd.clientAddress);
    for (let first = 0; first < KEYS; first += 125) {
      const puts = Array.from({ length: Math.min(125, KEYS - first) }, (_, i) => ({
        request_put: { key: Buffer.from(`list/${String(first + i).padStart(5, '0')}`), value: Buffer.alloc(VALUE_BYTES, 'v') },
      }));
      assert.equal((await call(direct.kv, 'Txn', { success: puts })).error, null);
    }
    direct.close();
  });
  after(async () => {
    await etcd?.stop();
  });

  it('takes at least the time its bytes take at the rate, in pages, and holds every key', async (t) => {
    const rate = 100_000;
    // The clock starts at the list's first page, not at the proxy's start: in the workers pass the mirror
    // lists while the workers are still starting, and a start-up as long as the pauses would pass without
    // them. So etcd is away until the proxy answers, and the clock starts when the proxy counts its first
    // list call (counted as it starts, before etcd answers it).
    etcd.signal('SIGKILL');
    await until('etcd to be gone', () => !etcd.running());
    const proxy = await startTestProxy([etcd.clientUrl], ['--list-bytes-per-second', String(rate)]);
    try {
      const listCalls = (): Promise<number> => metric(proxy.url, 'etcd_cache_proxy_upstream_calls_total', { reason: 'mirror-list' });
      assert.equal(await listCalls(), 0, 'no list while etcd is away');
      const [started] = await Promise.all([
        untilValue('the first list page asked for', async () => ((await listCalls()) >= 1 ? Date.now() : undefined), 60_000, 10),
        etcd.restart(),
      ]);
      await proxy.mirrored(2);
      const elapsed = Date.now() - started;
      // Three pages; the first two are each followed by the pause their bytes (values alone, a lower bound) take.
      const paced = ((2 * 1_000 * VALUE_BYTES) / rate) * 1000;
      assert.ok(elapsed >= paced, `listed in ${elapsed} ms from the first page; the two pauses alone take ${paced} ms`);
      t.diagnostic(`listed in ${elapsed} ms from the first page (the pauses take at least ${paced} ms)`);
      const clients = rawClients(proxy.address);
      try {
        const all = await call<{ count?: string }>(clients.kv, 'Range', { key: Buffer.from('list/'), range_end: Buffer.from('list0'), count_only: true, serializable: true });
        assert.equal(all.response?.count, String(KEYS));
      } finally {
        clients.close();
      }
    } finally {
      await proxy.stop();
    }
  });
});
