// Integration (real etcd, killed with SIGKILL): before the proxy's upstream timeout has passed, a call that no
// member could take (every connection refused) is answered at once with UNAVAILABLE in the proxy's own words,
// "etcd-cache-proxy: no upstream member reachable", not with grpc-js's note about one connection, and never sent.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { untilValue } from '../support/until';

const b = (s: string): Buffer => Buffer.from(s);
const NO_MEMBER = 'etcd-cache-proxy: no upstream member reachable';

describe('a call no upstream member could take', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let clients: RawClients;

  before(async () => {
    etcd = await startEtcd();
    // Far longer than the test: what answers is the members' refusal, not the proxy's verdict that etcd is lost.
    proxy = await startTestProxy([etcd.clientUrl], ['--upstream-timeout', '60s']);
    clients = rawClients(proxy.address);
  });
  after(async () => {
    clients?.close();
    await proxy?.stop();
    await etcd?.stop();
  });

  it('is refused at once in the proxy\'s words while the upstream is not yet called lost', async () => {
    const put = await call(clients.kv, 'Put', { key: b('k'), value: b('v') }, { deadlineMs: 5_000 });
    assert.equal(put.error, null, put.error?.details);
    etcd.signal('SIGKILL');
    // The first calls after the kill may meet the dropped connection itself; then every member refuses.
    const refused = await untilValue('a write refused with the proxy\'s own words', async () => {
      const started = performance.now();
      const outcome = await call(clients.kv, 'Put', { key: b('k'), value: b('w') }, { deadlineMs: 5_000 });
      return outcome.error?.details === NO_MEMBER ? { error: outcome.error, ms: performance.now() - started } : undefined;
    });
    assert.equal(refused.error.code, status.UNAVAILABLE);
    assert.ok(refused.ms < 1_000, `refused after ${Math.round(refused.ms)} ms`);
    // A forwarded read (at a revision the mirror cannot answer: it is in the future) is told the same.
    const read = await call(clients.kv, 'Range', { key: b('k'), revision: 1_000 }, { deadlineMs: 5_000 });
    assert.deepEqual({ code: read.error?.code, details: read.error?.details }, { code: status.UNAVAILABLE, details: NO_MEMBER });
  });
});
