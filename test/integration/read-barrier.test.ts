// Integration (real etcd): a linearizable read answered by the mirror first
// learns etcd's current revision with one upstream call, which reads arriving
// together share; and every such read sees a write that etcd confirmed
// before the read was sent, even one made on etcd directly.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';

const key = (s: string): Buffer => Buffer.from(s);

interface RangeReply {
  header: { revision: string };
  kvs?: { value: Buffer }[];
}

describe('the read barrier of linearizable reads', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let clients: RawClients;
  let direct: RawClients;

  before(async () => {
    etcd = await startEtcd();
    direct = rawClients(etcd.clientAddress);
    assert.equal((await call(direct.kv, 'Put', { key: key('barrier/k'), value: key('0') })).error, null);
    proxy = await startTestProxy([etcd.clientUrl]);
    clients = rawClients(proxy.address);
    await proxy.mirrored(2);
  });
  after(async () => {
    clients?.close();
    direct?.close();
    await proxy?.stop();
    await etcd?.stop();
  });

  const barrierCalls = async (): Promise<number> => (await proxy.metrics.readBarrierCalls.get()).values[0]?.value ?? 0;
  const mirrorAnswers = async (): Promise<number> =>
    (await proxy.metrics.grpcRequests.get()).values.filter((v) => v.labels.method === 'Range' && v.labels.source === 'mirror').reduce((sum, v) => sum + v.value, 0);

  it('shares one upstream call among reads that arrive together', async () => {
    const callsBefore = await barrierCalls();
    const answeredBefore = await mirrorAnswers();
    const reads = 200;
    const outcomes = await Promise.all(Array.from({ length: reads }, () => call<RangeReply>(clients.kv, 'Range', { key: key('barrier/k') })));
    for (const outcome of outcomes) assert.equal(outcome.error, null);
    const calls = (await barrierCalls()) - callsBefore;
    assert.equal((await mirrorAnswers()) - answeredBefore, reads, 'every read answered by the mirror');
    assert.ok(calls >= 1, 'a linearizable read asks etcd');
    assert.ok(calls <= reads / 10, `${calls} upstream calls for ${reads} reads sent at once`);
  });

  it('sees every write etcd confirmed before the read was sent', async () => {
    for (let i = 1; i <= 30; i += 1) {
      const put = await call<{ header: { revision: string } }>(direct.kv, 'Put', { key: key('barrier/k'), value: key(String(i)) });
      assert.equal(put.error, null);
      // Some reads alone, some in a crowd: each must see the write.
      const outcomes = await Promise.all(Array.from({ length: 1 + (i % 4) * 5 }, () => call<RangeReply>(clients.kv, 'Range', { key: key('barrier/k') })));
      for (const outcome of outcomes) {
        assert.equal(outcome.response?.kvs?.[0]?.value.toString(), String(i));
        assert.ok(Number(outcome.response?.header.revision) >= Number(put.response?.header.revision));
      }
    }
  });
});
