// Integration (real etcd, frozen with SIGSTOP while a proxy starts on an empty data dir): a watch created
// before the proxy's mirror has synced for the first time waits for that sync (a bounded while) and is then
// served from the mirror, as every later watch is. Relayed to etcd instead, it stayed there for its whole life:
// one more watch on etcd per gateway that started with its proxy, and, through a tier, events a gateway saw
// before the edge's own mirror had them.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients } from '../support/raw-client';
import { WatchClient } from '../support/watch-client';

const b = (s: string): Buffer => Buffer.from(s);

describe('a watch created before the mirror first synced', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let watch: WatchClient | undefined;

  before(async () => {
    etcd = await startEtcd();
  });
  after(async () => {
    watch?.close();
    await proxy?.stop();
    if (etcd?.running()) etcd.signal('SIGCONT');
    await etcd?.stop();
  });

  const watchers = async (source: 'mirror' | 'upstream'): Promise<number> => (await proxy.metrics.watchers.get()).values.find((v) => v.labels.source === source)?.value ?? 0;

  it('is served from the mirror once it synced, not relayed to etcd', async () => {
    const direct = rawClients(etcd.clientAddress);
    try {
      assert.equal((await call(direct.kv, 'Put', { key: b('/apisix/routes/1'), value: b('a') }, { deadlineMs: 5_000 })).error, null);
    } finally {
      direct.close();
    }
    await etcd.freeze();
    // The upstream timeout is far longer than the freeze: etcd is slow to answer, not lost.
    proxy = await startTestProxy([etcd.clientUrl], ['--upstream-timeout', '30s']);
    watch = new WatchClient(proxy.address);
    watch.create({ key: b('/apisix/'), range_end: b('/apisix0') });
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(watch.received.length, 0, 'nothing answered while the mirror has not synced');
    etcd.signal('SIGCONT');
    const created = await watch.next('the created answer', (response) => response.created === true, 0, 10_000);
    assert.equal(created.canceled ?? false, false, JSON.stringify(created));
    assert.equal(await watchers('upstream'), 0, 'not relayed to etcd');
    assert.equal(await watchers('mirror'), 1, 'served from the mirror');
    // And it sees what is written next, through the mirror.
    const writer = rawClients(proxy.address);
    try {
      const put = await call<{ header?: { revision?: string } }>(writer.kv, 'Put', { key: b('/apisix/routes/2'), value: b('b') }, { deadlineMs: 5_000 });
      assert.equal(put.error, null, put.error?.details);
      const revision = Number(put.response?.header?.revision);
      await watch.next(`the put at ${revision}`, (response) => (response.events ?? []).some((event) => Number(event.kv?.mod_revision) === revision), 0, 10_000);
    } finally {
      writer.close();
    }
  });
});
