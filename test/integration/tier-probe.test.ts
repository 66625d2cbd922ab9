// Integration (real etcd; a regional proxy, the CLI in its own process, and an edge in front of it): an edge's
// liveness probe (Status with require-leader, marked as a proxy's probe) is answered by the regional from what it
// knows of etcd, and never reaches etcd, while any other Status still goes to etcd. With etcd frozen (SIGSTOP),
// the regional, once it has called etcd lost, refuses the probe at once with etcd's own "no leader" (marked
// stale): the edge counts it a member without a leader, not a dead one. Thawed, the probe is answered again.
// Once with the regional as one process, once with --workers 2 (a worker knows the primary's verdict only).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Metadata, status } from '@grpc/grpc-js';
import { LIVENESS_PROBE_HEADER, PROXY_HEADER, STALE_HEADER } from '../../src/etcd/metadata';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { gauge, metric } from '../support/metrics';
import { startProxyProcess, type ProxyProcess } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { until } from '../support/until';

const UPSTREAM_TIMEOUT_MS = 1_500;
const urlOf = (proxy: ProxyProcess): string => `http://${proxy.address}`;

interface StatusAnswer {
  readonly header?: { readonly revision?: string; readonly member_id?: string };
  readonly raftIndex?: string;
  readonly version?: string;
}

/** Metadata of a Status: etcd's require-leader, and the proxy's probe mark when `marked`. */
function probeMetadata(marked: boolean): Metadata {
  const metadata = new Metadata();
  metadata.set('hasleader', 'true');
  if (marked) metadata.set(LIVENESS_PROBE_HEADER, 'liveness');
  return metadata;
}

for (const workers of [null, '2'] as const) describe(`a regional${workers === null ? '' : ` with --workers ${workers}`} answers the liveness probes of the edges in front of it`, () => {
  let etcd: EtcdServer;
  let regional: ProxyProcess;
  let edge: ProxyProcess;
  let clients: RawClients;
  /** Status calls the regional sent to etcd for its clients (not its own probes). */
  const forwardedStatus = async (): Promise<number> => metric(urlOf(regional), 'etcd_cache_proxy_upstream_calls_total', { method: 'Maintenance/Status', reason: 'client' });
  const answeredHere = async (code: string): Promise<number> => metric(urlOf(regional), 'etcd_cache_proxy_grpc_requests_total', { service: 'Maintenance', method: 'Status', source: 'proxy', code });
  const status_ = async (marked: boolean, deadlineMs = 5_000): Promise<Awaited<ReturnType<typeof call<StatusAnswer>>> & { ms: number }> => {
    const started = performance.now();
    const outcome = await call<StatusAnswer>(clients.maintenance, 'Status', {}, { metadata: probeMetadata(marked), deadlineMs });
    return { ...outcome, ms: performance.now() - started };
  };

  before(async () => {
    etcd = await startEtcd();
    regional = await startProxyProcess([etcd.clientUrl], ['--upstream-timeout', `${UPSTREAM_TIMEOUT_MS}ms`, ...(workers === null ? [] : ['--workers', workers])]);
    clients = rawClients(regional.address);
    await until('the regional to be synced', async () => (await fetch(`${urlOf(regional)}/readyz`)).status === 200);
  });
  after(async () => {
    clients?.close();
    await edge?.stop();
    await regional?.stop();
    if (etcd?.running()) etcd.signal('SIGCONT');
    await etcd?.stop();
  });

  it('answers a marked probe itself while etcd has a leader, refuses it at once as leaderless while etcd is lost, and forwards every other Status', async () => {
    // etcd itself ignores the mark: a marked probe sent to it straight is answered as any Status.
    const direct = rawClients(etcd.clientAddress);
    try {
      const fromEtcd = await call<StatusAnswer>(direct.maintenance, 'Status', {}, { metadata: probeMetadata(true), deadlineMs: 5_000 });
      assert.equal(fromEtcd.error, null, fromEtcd.error?.details);
      assert.ok(Number(fromEtcd.response?.raftIndex) > 0, JSON.stringify(fromEtcd.response));
    } finally {
      direct.close();
    }

    const forwardedBefore = await forwardedStatus();
    const plain = await status_(false);
    assert.equal(plain.error, null, plain.error?.details);
    assert.ok(Number(plain.response?.raftIndex) > 0 && (plain.response?.version ?? '') !== '', `an unmarked Status is etcd's answer: ${JSON.stringify(plain.response)}`);
    assert.equal(await forwardedStatus(), forwardedBefore + 1, 'an unmarked Status goes to etcd');

    const answeredBefore = await answeredHere('OK');
    const marked = await status_(true);
    assert.equal(marked.error, null, marked.error?.details);
    assert.equal(marked.response?.raftIndex ?? '0', '0', `a marked probe is the regional's answer, not etcd's: ${JSON.stringify(marked.response)}`);
    assert.ok(Number(marked.response?.header?.revision) > 0, 'it carries the mirror revision');
    assert.equal(marked.headers?.get(PROXY_HEADER).length, 1, 'it says a proxy answered');
    assert.equal(await forwardedStatus(), forwardedBefore + 1, 'a marked probe does not reach etcd');
    assert.equal(await answeredHere('OK'), answeredBefore + 1);
    // Anyone may send the mark (it asks nothing etcd would refuse them): a burst of marked probes is answered
    // here, every one, and puts nothing on etcd.
    const burst = await Promise.all(Array.from({ length: 200 }, () => status_(true)));
    assert.deepEqual(burst.filter((answer) => answer.error !== null).map((answer) => answer.error?.details), [], 'every probe of the burst answered');
    assert.equal(await forwardedStatus(), forwardedBefore + 1, 'the burst did not reach etcd');

    // An edge in front: its probes of the regional, answered there, say the regional is up.
    const forwardedBeforeEdge = await forwardedStatus();
    edge = await startProxyProcess([`http://${regional.address}`], ['--upstream-timeout', `${UPSTREAM_TIMEOUT_MS}ms`]);
    await until("the edge's probe of the regional answered", async () => (await gauge(urlOf(edge), 'etcd_cache_proxy_upstream_member_up', { member: `http://${regional.address}` })) === 1);
    assert.ok((await answeredHere('OK')) > answeredBefore + 1, "the edge's probe was answered by the regional");
    const forwardedForEdge = (await forwardedStatus()) - forwardedBeforeEdge;

    await etcd.freeze();
    try {
      await until('the regional to call etcd lost', async () => (await fetch(`${urlOf(regional)}/readyz`).then((r) => r.json() as Promise<{ state?: string }>)).state === 'stale', UPSTREAM_TIMEOUT_MS + 5_000, 100);
      const refused = await status_(true);
      assert.equal(refused.error?.code, status.UNAVAILABLE);
      assert.equal(refused.error?.details, 'etcdserver: no leader');
      assert.equal(refused.error?.metadata.get(STALE_HEADER)[0], 'true', 'the refusal is marked stale');
      assert.ok(refused.ms < 1_000, `refused in ${Math.round(refused.ms)} ms, not after a call to etcd`);
      // An unmarked Status goes to the frozen etcd, as ever, and gets no answer.
      const held = await status_(false, 1_000);
      assert.notEqual(held.error, null, 'a frozen etcd answered');
      // The edge hears the regional answer without a leader: its member is not up, yet the edge goes on serving.
      await until("the edge's probe refused as leaderless", async () => (await gauge(urlOf(edge), 'etcd_cache_proxy_upstream_member_up', { member: `http://${regional.address}` })) === 0, UPSTREAM_TIMEOUT_MS + 5_000, 100);
    } finally {
      etcd.signal('SIGCONT');
    }
    await until('a marked probe answered again', async () => (await status_(true)).error === null, 20_000, 100);
    await until("the edge's probe of the regional answered again", async () => (await gauge(urlOf(edge), 'etcd_cache_proxy_upstream_member_up', { member: `http://${regional.address}` })) === 1, 20_000, 100);
    // What the edge sent the regional's way was never its probes: they cost etcd nothing.
    assert.ok(forwardedForEdge <= 2, `${forwardedForEdge} Status calls of the edge reached etcd through the regional`);
  });
});
