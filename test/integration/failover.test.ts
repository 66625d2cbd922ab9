// Integration (real etcd, raw grpc-js): with several endpoints, reads go on
// when a member is unreachable or dies.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { freePort, startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';

describe('reads across several endpoints', () => {
  let first: EtcdServer;
  let second: EtcdServer;
  let proxy: TestProxy;
  let clients: RawClients;

  before(async () => {
    // Two independent single-member clusters stand in for two members: a read
    // answered by either proves it reached a live one.
    [first, second] = await Promise.all([startEtcd(), startEtcd()]);
    const nobody = `http://127.0.0.1:${await freePort()}`;
    proxy = await startTestProxy([nobody, first.clientUrl, second.clientUrl]);
    clients = rawClients(proxy.address);
  });
  after(async () => {
    clients?.close();
    await proxy?.stop();
    await Promise.all([first?.stop(), second?.stop()]);
  });

  it('skips an endpoint where nothing listens, for reads and writes', async () => {
    const put = await call(clients.kv, 'Put', { key: Buffer.from('k'), value: Buffer.from('v') });
    assert.equal(put.error, null, put.error?.details);
    const range = await call(clients.kv, 'Range', { key: Buffer.from('k') });
    assert.equal(range.error, null, range.error?.details);
  });

  it('keeps answering reads without an error while the member in use is killed', async () => {
    const errors: string[] = [];
    let answered = 0;
    for (let i = 0; i < 300; i += 1) {
      if (i === 50) first.signal('SIGKILL');
      const range = await call(clients.kv, 'Range', { key: Buffer.from('k'), serializable: true });
      if (range.error !== null) errors.push(range.error.details);
      else answered += 1;
    }
    assert.deepEqual(errors, []);
    assert.equal(answered, 300);
  });
});
