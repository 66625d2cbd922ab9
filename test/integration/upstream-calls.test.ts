// Integration (real etcd): every call the proxy starts upstream is counted by
// method and reason, and the count is what etcd itself counts: over a window
// in which only the proxy talks to etcd, etcd's grpc_server_started_total
// grows by exactly the proxy's upstream_calls_total, and no call is without a
// reason.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { until } from '../support/until';

const key = (s: string): Buffer => Buffer.from(s);

/** RPCs etcd has started, summed over methods, from its own /metrics (HTTP: not itself an RPC). */
async function etcdStarted(etcd: EtcdServer): Promise<Map<string, number>> {
  const text = await (await fetch(`${etcd.clientUrl}/metrics`)).text();
  const started = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^grpc_server_started_total\{grpc_method="(\w+)",grpc_service="[\w.]+\.(\w+)",grpc_type="\w+"\} (\S+)$/.exec(line);
    if (match !== null) started.set(`${match[2]}/${match[1]}`, Number(match[3]));
  }
  return started;
}

describe('upstream calls by method and reason', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let clients: RawClients;

  before(async () => {
    etcd = await startEtcd();
    proxy = await startTestProxy([etcd.clientUrl]);
    clients = rawClients(proxy.address);
    assert.equal((await call(clients.kv, 'Put', { key: key('calls/a'), value: key('1') })).error, null);
    await proxy.mirrored(2);
  });
  after(async () => {
    clients?.close();
    await proxy?.stop();
    await etcd?.stop();
  });

  const proxyCounts = async (): Promise<Map<string, number>> => {
    const counts = new Map<string, number>();
    for (const { labels, value } of (await proxy.metrics.upstreamCalls.get()).values) counts.set(`${labels.method} ${labels.reason}`, value);
    return counts;
  };
  const byMethod = (counts: Map<string, number>): Map<string, number> => {
    const methods = new Map<string, number>();
    for (const [series, value] of counts) {
      const method = series.split(' ')[0] ?? '';
      methods.set(method, (methods.get(method) ?? 0) + value);
    }
    return methods;
  };
  const grown = (after: Map<string, number>, before: Map<string, number>): Map<string, number> =>
    new Map([...after].map(([k, v]) => [k, v - (before.get(k) ?? 0)] as const).filter(([, v]) => v !== 0));

  it("counts each call with its reason, as many as etcd started", async () => {
    const proxyBefore = await proxyCounts();
    const etcdBefore = await etcdStarted(etcd);
    // A forwarded write, a linearizable read (the barrier), a forwarded lease grant, a read-only Txn
    // the mirror answers (nothing upstream), and a watch the hub serves (nothing upstream).
    assert.equal((await call(clients.kv, 'Put', { key: key('calls/b'), value: key('2') })).error, null);
    assert.equal((await call(clients.kv, 'Range', { key: key('calls/a') })).error, null);
    assert.equal((await call(clients.lease, 'LeaseGrant', { TTL: '30' })).error, null);
    assert.equal((await call(clients.kv, 'Txn', { success: [{ request_range: { key: key('calls/a') } }] })).error, null);

    let proxyGrown = new Map<string, number>();
    let etcdGrown = new Map<string, number>();
    // Background work (a liveness probe, the consistency check) may start between the two reads: ask again.
    await until(
      () => `etcd's count of started RPCs ${JSON.stringify([...etcdGrown])} to equal the proxy's ${JSON.stringify([...byMethod(proxyGrown)])}`,
      async () => {
        proxyGrown = grown(await proxyCounts(), proxyBefore);
        etcdGrown = grown(await etcdStarted(etcd), etcdBefore);
        return JSON.stringify([...byMethod(proxyGrown)].sort()) === JSON.stringify([...etcdGrown].sort());
      },
    );
    assert.equal(proxyGrown.get('KV/Put client'), 1, 'the write, forwarded as the client asked');
    assert.equal(proxyGrown.get('Lease/LeaseGrant client'), 1);
    assert.ok((proxyGrown.get('KV/Range read-barrier') ?? 0) >= 1, 'the linearizable read asked etcd for its revision');
    assert.equal(proxyGrown.get('KV/Txn client'), undefined, 'the read-only Txn was answered by the mirror');
  });

  it('gives every call since the start a reason', async () => {
    const counts = await proxyCounts();
    assert.ok((counts.get('Watch/Watch mirror-watch') ?? 0) >= 1, 'the mirror watch is counted');
    const unknown = [...counts].filter(([series]) => series.endsWith(' unknown'));
    assert.deepEqual(unknown, [], 'calls made without a reason');
  });
});
