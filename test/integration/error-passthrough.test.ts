// Integration (real etcd, raw grpc-js): errors reach the client with etcd's
// own code and message, and a client's deadline or cancellation reaches etcd.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status, type ClientDuplexStream } from '@grpc/grpc-js';
import { Reader, util } from 'protobufjs';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { until as waitFor } from '../support/until';

const key = (s: string): Buffer => Buffer.from(s);

// The raw client encodes with protobufjs, which stops at 100 nested messages; etcd takes Txns nested deeper.
util.recursionLimit = 1_024;
Reader.recursionLimit = 1_024;

/** A read-only Txn holding a Txn holding a Txn..., `levels` deep, one Range at the bottom. */
function nestedReadTxn(levels: number): object {
  let txn: object = { success: [{ request_range: { key: key('history') } }] };
  for (let level = 1; level < levels; level += 1) txn = { success: [{ request_txn: txn }] };
  return txn;
}

async function etcdGauge(etcd: EtcdServer, name: string): Promise<number> {
  const text = await (await fetch(`${etcd.clientUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (line === undefined) throw new Error(`etcd exports no ${name}`);
  return Number(line.split(' ')[1]);
}

describe('errors and call control pass through the proxy', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let direct: RawClients;
  let proxied: RawClients;

  before(async () => {
    etcd = await startEtcd();
    proxy = await startTestProxy([etcd.clientUrl]);
    direct = rawClients(etcd.clientAddress);
    proxied = rawClients(proxy.address);
    for (let i = 0; i < 5; i += 1) await call(direct.kv, 'Put', { key: key('history'), value: key(`v${i}`) });
    // Through the proxy, which knows at once; a compaction made on etcd directly reaches the
    // proxy's log retention only at its next compaction probe (see the README).
    await proxy.mirrored(6);
    const compacted = await call(proxied.kv, 'Compact', { revision: '4', physical: true });
    if (compacted.error !== null) throw compacted.error;
  });
  after(async () => {
    direct?.close();
    proxied?.close();
    await proxy?.stop();
    await etcd?.stop();
  });

  const cases: { name: string; service: keyof Omit<RawClients, 'close'>; method: string; request: () => object; code: status }[] = [
    {
      name: 'a Txn with too many operations',
      service: 'kv',
      method: 'Txn',
      request: () => ({ success: Array.from({ length: 129 }, (_, i) => ({ request_put: { key: key(`k${i}`), value: key('v') } })) }),
      code: status.INVALID_ARGUMENT,
    },
    {
      name: 'a Txn that writes one key twice',
      service: 'kv',
      method: 'Txn',
      request: () => ({ success: [{ request_put: { key: key('dup'), value: key('1') } }, { request_put: { key: key('dup'), value: key('2') } }] }),
      code: status.INVALID_ARGUMENT,
    },
    { name: 'a read-only Txn nested past the op budget', service: 'kv', method: 'Txn', request: () => nestedReadTxn(129), code: status.INVALID_ARGUMENT },
    {
      name: 'a read-only Txn comparing an empty key',
      service: 'kv',
      method: 'Txn',
      request: () => ({ compare: [{ key: Buffer.alloc(0), target: 'VERSION', result: 'EQUAL', version: '0' }], success: [{ request_range: { key: key('history') } }] }),
      code: status.INVALID_ARGUMENT,
    },
    { name: 'a Range above the current revision', service: 'kv', method: 'Range', request: () => ({ key: key('history'), revision: '100000' }), code: status.OUT_OF_RANGE },
    { name: 'a Range at a compacted revision', service: 'kv', method: 'Range', request: () => ({ key: key('history'), revision: '2' }), code: status.OUT_OF_RANGE },
    { name: 'a Compact above the current revision', service: 'kv', method: 'Compact', request: () => ({ revision: '100000' }), code: status.OUT_OF_RANGE },
    { name: 'a Put with a lease that does not exist', service: 'kv', method: 'Put', request: () => ({ key: key('k'), value: key('v'), lease: '12345' }), code: status.NOT_FOUND },
    { name: 'a Put without a key', service: 'kv', method: 'Put', request: () => ({ value: key('v') }), code: status.INVALID_ARGUMENT },
    { name: 'a Put larger than etcd accepts', service: 'kv', method: 'Put', request: () => ({ key: key('big'), value: Buffer.alloc(2 * 1024 * 1024, 1) }), code: status.RESOURCE_EXHAUSTED },
    { name: 'a LeaseRevoke of an unknown lease', service: 'lease', method: 'LeaseRevoke', request: () => ({ ID: '987654321' }), code: status.NOT_FOUND },
    { name: 'a LeaseGrant with an ID in use', service: 'lease', method: 'LeaseGrant', request: () => ({ TTL: '60', ID: '4242' }), code: status.FAILED_PRECONDITION },
  ];

  for (const c of cases) {
    it(`gives etcd's own error for ${c.name}`, async () => {
      if (c.method === 'LeaseGrant') await call(direct.lease, 'LeaseGrant', { TTL: '60', ID: '4242' });
      const fromEtcd = await call(direct[c.service], c.method, c.request());
      const fromProxy = await call(proxied[c.service], c.method, c.request());
      assert.ok(fromEtcd.error !== null, `etcd accepted ${c.name}`);
      assert.equal(fromEtcd.error.code, c.code, fromEtcd.error.details);
      assert.ok(fromProxy.error !== null, `proxy accepted ${c.name}`);
      assert.equal(fromProxy.error.code, fromEtcd.error.code);
      assert.equal(fromProxy.error.details, fromEtcd.error.details);
    });
  }

  it('answers a read-only Txn nested as deep as the op budget allows, as etcd does', async () => {
    const [fromEtcd, fromProxy] = [await call(direct.kv, 'Txn', nestedReadTxn(128)), await call(proxied.kv, 'Txn', nestedReadTxn(128))];
    assert.equal(fromEtcd.error, null);
    assert.equal(fromProxy.error, null);
    assert.deepEqual(JSON.stringify(fromProxy.response).replace(/"(cluster_id|member_id|raft_term)":"\d+"/g, ''), JSON.stringify(fromEtcd.response).replace(/"(cluster_id|member_id|raft_term)":"\d+"/g, ''));
  });

  it('answers count_only, keys_only and revision-filtered ranges as etcd does', async () => {
    const header = (r: unknown): unknown => ({ ...(r as { header: object }), header: undefined });
    for (const request of [
      { key: key('history'), count_only: true },
      { key: key('a'), range_end: Buffer.from([0]), count_only: true },
      { key: key('a'), range_end: Buffer.from([0]), keys_only: true },
      { key: key('a'), range_end: Buffer.from([0]), min_mod_revision: '3', max_mod_revision: '5' },
      { key: key('a'), range_end: Buffer.from([0]), sort_order: 'DESCEND', sort_target: 'VALUE', limit: '1' },
    ]) {
      const [fromEtcd, fromProxy] = [await call(direct.kv, 'Range', request), await call(proxied.kv, 'Range', request)];
      assert.equal(fromEtcd.error, null);
      assert.equal(fromProxy.error, null);
      assert.deepEqual(header(fromProxy.response), header(fromEtcd.response), JSON.stringify(request));
    }
    const counted = await call<{ count: string; kvs?: unknown[] }>(proxied.kv, 'Range', { key: key('history'), count_only: true });
    assert.equal(counted.response?.count, '1');
    assert.equal(counted.response?.kvs, undefined);
  });

  it("passes a client's deadline upstream: the call ends while etcd is frozen", async () => {
    const finished = async (): Promise<number> => {
      const metric = await proxy.metrics.grpcRequests.get();
      return metric.values.filter((v) => v.labels.method === 'Put' && v.labels.code !== 'OK').reduce((sum, v) => sum + v.value, 0);
    };
    const before = await finished();
    await etcd.freeze();
    try {
      const outcome = await call(proxied.kv, 'Put', { key: key('frozen'), value: key('v') }, { deadlineMs: 300 });
      assert.equal(outcome.error?.code, status.DEADLINE_EXCEEDED);
      // Without propagation the upstream call would hang until etcd wakes up.
      await waitFor('the upstream Put to end', async () => (await finished()) > before, 2_000);
    } finally {
      etcd.signal('SIGCONT');
    }
  });

  it('cancels a relayed upstream watch when the client cancels its stream', async () => {
    // The proxy's mirror holds one watch stream of its own.
    const streamsBefore = await etcdGauge(etcd, 'etcd_debugging_mvcc_watch_stream_total');
    const watchersBefore = await etcdGauge(etcd, 'etcd_debugging_mvcc_watcher_total');
    const stream = (proxied.watch as unknown as { Watch(): ClientDuplexStream<object, { created?: boolean }> }).Watch();
    stream.on('error', () => undefined);
    let createdCount = 0;
    const created = (n: number): Promise<void> =>
      new Promise<void>((resolve) => {
        const check = (r: { created?: boolean }): void => {
          if (r.created === true) createdCount += 1;
          if (createdCount >= n) resolve();
        };
        stream.on('data', check);
      });
    const first = created(1);
    stream.write({ create_request: { key: key('watched') } });
    await first;
    assert.equal(await etcdGauge(etcd, 'etcd_debugging_mvcc_watcher_total'), watchersBefore, 'the mirror serves a live watch: nothing upstream');
    // Revision 1 is older than the mirror's event log, so it is etcd's to answer: relayed upstream, on a
    // stream of the relay's own. etcd compacted past it (before), so etcd ends that watch itself soon after
    // its created answer: its watcher may be gone already, the relay's stream stays until the client's ends.
    const second = created(2);
    stream.write({ create_request: { key: key('watched'), start_revision: '1' } });
    await second;
    assert.equal(await etcdGauge(etcd, 'etcd_debugging_mvcc_watch_stream_total'), streamsBefore + 1, 'the relay holds a stream on etcd');
    stream.cancel();
    await waitFor('etcd to drop the watch stream', async () => (await etcdGauge(etcd, 'etcd_debugging_mvcc_watch_stream_total')) === streamsBefore);
    assert.equal(await etcdGauge(etcd, 'etcd_debugging_mvcc_watcher_total'), watchersBefore);
  });
});
