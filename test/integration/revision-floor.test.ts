// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// Integration (real etcd, raw grpc-js): a client never sees a proxy's revision go back while etcd answers.
// The robustness checker found it with a prefix mirror: a read of a key outside the mirror (forwarded, answered
// by etcd at R), then a read from the mirror at M < R. Here the writes and reads outside the mirrored prefix
// move etcd's revision where the mirror's watch cannot see; the mirror's next answer must not name a lower one.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';

interface Reply {
  readonly header: { readonly revision: string };
  readonly kvs?: readonly { readonly key: Buffer; readonly value: Buffer }[];
}

describe('the revisions a client sees through a prefix mirror', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let client: RawClients;
  before(async () => {
    etcd = await startEtcd();
    const direct = rawClients(etcd.clientAddress);
    assert.equal((await call(direct.kv, 'Put', { key: Buffer.from('/m/a'), value: Buffer.from('1') })).error, null);
    direct.close();
    proxy = await startTestProxy([etcd.clientUrl], ['--mirror-prefix', '/m/']);
    await proxy.mirrored(2);
    client = rawClients(proxy.address);
  });
  after(async () => {
    client?.close();
    await proxy?.stop();
    await etcd?.stop();
  });

  it('never go back after a write or a read outside the mirror, and the mirrored key still reads right', async () => {
    let highest = 0;
    for (let i = 0; i < 10; i += 1) {
      const put = await call<Reply>(client.kv, 'Put', { key: Buffer.from(`/x/${i}`), value: Buffer.from(String(i)) });
      assert.equal(put.error, null, put.error?.details);
      highest = Math.max(highest, Number(put.response?.header.revision));
      const outside = await call<Reply>(client.kv, 'Range', { key: Buffer.from(`/x/${i}`) });
      assert.equal(outside.error, null, outside.error?.details);
      highest = Math.max(highest, Number(outside.response?.header.revision));
      for (const serializable of [true, false]) {
        const inside = await call<Reply>(client.kv, 'Range', { key: Buffer.from('/m/a'), serializable });
        assert.equal(inside.error, null, inside.error?.details);
        const revision = Number(inside.response?.header.revision);
        assert.ok(revision >= highest, `round ${i}: a ${serializable ? 'serializable' : 'linearizable'} read of the mirrored prefix answered at ${revision} after the client was told ${highest}`);
        highest = revision;
        assert.equal(inside.response?.kvs?.[0]?.value.toString(), '1');
      }
    }
  });
});
