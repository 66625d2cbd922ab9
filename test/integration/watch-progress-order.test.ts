// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// Integration (real etcd, raw grpc-js): a progress answer waits for every watch of its stream, also one the
// proxy is still making or relays to etcd. The robustness checker found it: a watch from before the mirror's
// log is relayed to etcd (and one from a past revision the log holds is made only after etcd said whether
// that revision is compacted); progress asked meanwhile was answered at once, at the mirror's revision,
// naming a revision whose events the watch had not sent yet.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients } from '../support/raw-client';
import { WatchClient } from '../support/watch-client';

describe('a progress request while a watch of the stream is being made', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  before(async () => {
    etcd = await startEtcd();
    proxy = await startTestProxy([etcd.clientUrl], ['--upstream-timeout', '5s']);
    const direct = rawClients(etcd.clientAddress);
    for (let i = 0; i < 5; i += 1) assert.equal((await call(direct.kv, 'Put', { key: Buffer.from(`po/${i}`), value: Buffer.from('v') })).error, null);
    direct.close();
    await proxy.mirrored(6);
  });
  after(async () => {
    etcd?.signal('SIGCONT');
    await proxy?.stop();
    await etcd?.stop();
  });

  it('is answered only after the watch sent the events up to the revision it names', async () => {
    // etcd paused: the proxy's question (is revision 2 still etcd's?) waits, and so does the watch.
    await etcd.freeze();
    const watch = new WatchClient(proxy.address);
    try {
      watch.create({ key: Buffer.from('po/'), range_end: Buffer.from('po0'), start_revision: 2 });
      watch.progress();
      setTimeout(() => etcd.signal('SIGCONT'), 1_000).unref();
      await watch.until('the five events', () => watch.responses.reduce((n, r) => n + (r.events ?? []).length, 0) >= 5, 20_000);
      await watch.until('the progress answer', () => watch.responses.some((r) => r.created !== true && (r.events ?? []).length === 0), 20_000);
      const order = watch.responses.filter((r) => r.created !== true).map((r) => ((r.events ?? []).length === 0 ? `progress@${r.header?.revision}` : `events@${r.header?.revision}`));
      assert.match(order[0] ?? '', /^events@/, `answered in this order: ${order.join(' ')}`);
    } finally {
      watch.close();
    }
  });
});
