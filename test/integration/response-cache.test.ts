// Integration (real etcd, raw grpc-js and the JSON gateway): repeated reads
// are answered from kept encoded answers, and those answers stay exactly
// etcd's as the keyspace moves: a change elsewhere only moves the header's
// revision, a change under the read's keys makes a new answer.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';

const b = (s: string): Buffer => Buffer.from(s);

interface RangeReply {
  header?: { revision?: string };
}

const PREFIX_READ = { key: b('/apisix/'), range_end: b('/apisix0') };
const JSON_READ = JSON.stringify({ key: b('/apisix/').toString('base64'), range_end: b('/apisix0').toString('base64') });

async function cacheCount(proxy: TestProxy, result: 'hit' | 'miss'): Promise<number> {
  const metric = await proxy.metrics.responseCacheRequests.get();
  return metric.values.find((v) => v.labels.result === result)?.value ?? 0;
}

async function postJson(address: string, body: string): Promise<string> {
  const response = await fetch(`http://${address}/v3/kv/range`, { method: 'POST', body });
  assert.equal(response.status, 200);
  return response.text();
}

describe('encoded answers kept for repeated reads', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let uncached: TestProxy;
  let direct: RawClients;
  let proxied: RawClients;
  let proxiedUncached: RawClients;

  before(async () => {
    etcd = await startEtcd();
    proxy = await startTestProxy([etcd.clientUrl]);
    uncached = await startTestProxy([etcd.clientUrl], ['--response-cache-bytes', '0']);
    direct = rawClients(etcd.clientAddress);
    proxied = rawClients(proxy.address);
    proxiedUncached = rawClients(uncached.address);
    for (let i = 0; i < 30; i += 1) await call(direct.kv, 'Put', { key: b(`/apisix/routes/${i}`), value: b(JSON.stringify({ uri: `/r${i}`, upstream_id: i })) });
  });
  after(async () => {
    direct?.close();
    proxied?.close();
    proxiedUncached?.close();
    await proxy?.stop();
    await uncached?.stop();
    await etcd?.stop();
  });

  async function latestRevision(): Promise<number> {
    const reply = await call<RangeReply>(direct.kv, 'Range', { key: b('x') });
    return Number(reply.response?.header?.revision);
  }

  /** Reads through both proxies and etcd once the mirrors hold `revision`: all three answers must be equal. */
  async function compareAt(request: object): Promise<void> {
    const revision = await latestRevision();
    await proxy.mirrored(revision);
    await uncached.mirrored(revision);
    const fromEtcd = await call(direct.kv, 'Range', request);
    const fromProxy = await call(proxied.kv, 'Range', request);
    const fromUncached = await call(proxiedUncached.kv, 'Range', request);
    assert.equal(fromEtcd.error, null);
    assert.deepEqual(fromProxy.response, fromEtcd.response);
    assert.deepEqual(fromUncached.response, fromEtcd.response);
  }

  it('answers a repeated read from the kept answer, exactly as etcd', async () => {
    for (const serializable of [true, false]) {
      const request = { ...PREFIX_READ, serializable };
      await compareAt(request);
      const hits = await cacheCount(proxy, 'hit');
      await compareAt(request);
      assert.equal(await cacheCount(proxy, 'hit'), hits + 1, 'the second identical read was made again');
    }
    assert.equal(await cacheCount(uncached, 'hit'), 0, '--response-cache-bytes 0 keeps nothing');
  });

  it('keeps the answer across a change elsewhere, with the new revision in its header', async () => {
    await compareAt(PREFIX_READ);
    const hits = await cacheCount(proxy, 'hit');
    const misses = await cacheCount(proxy, 'miss');
    await call(direct.kv, 'Put', { key: b('/other/key'), value: b('x') });
    await compareAt(PREFIX_READ);
    assert.equal(await cacheCount(proxy, 'hit'), hits + 1);
    assert.equal(await cacheCount(proxy, 'miss'), misses);
  });

  it('makes a new answer after a change under its keys: put, delete, and a single key', async () => {
    for (const change of [
      () => call(direct.kv, 'Put', { key: b('/apisix/routes/7'), value: b('changed') }),
      () => call(direct.kv, 'DeleteRange', { key: b('/apisix/routes/8') }),
      () => call(direct.kv, 'Put', { key: b('/apisix/upstreams/1'), value: b('new key') }),
    ]) {
      await compareAt(PREFIX_READ);
      await compareAt({ key: b('/apisix/routes/7') });
      const misses = await cacheCount(proxy, 'miss');
      await change();
      await compareAt(PREFIX_READ);
      assert.equal(await cacheCount(proxy, 'miss'), misses + 1);
    }
    await compareAt({ key: b('/apisix/routes/7') });
  });

  it('answers the JSON gateway from the kept answer, as etcd does', async () => {
    const revision = await latestRevision();
    await proxy.mirrored(revision);
    const fromEtcd = await postJson(etcd.clientAddress, JSON_READ);
    const first = await postJson(proxy.address, JSON_READ);
    const hits = await cacheCount(proxy, 'hit');
    const second = await postJson(proxy.address, JSON_READ);
    assert.equal(await cacheCount(proxy, 'hit'), hits + 1);
    // Same etcd: member and cluster IDs match, so the text must too.
    assert.equal(first, fromEtcd);
    assert.equal(second, fromEtcd);
    await call(direct.kv, 'Put', { key: b('/apisix/routes/1'), value: b('json sees this') });
    await proxy.mirrored(await latestRevision());
    assert.equal(await postJson(proxy.address, JSON_READ), await postJson(etcd.clientAddress, JSON_READ));
  });
});
