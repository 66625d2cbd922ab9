// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// Integration (a real 3-member etcd cluster, raw grpc-js): reads the proxy
// forwards (keys outside --mirror-prefix, so the mirror cannot answer them)
// (Range, and Txns that only read) reach a live member even when the member they were sent to is SIGKILLed
// with the reads in flight: the proxy retries them on another member before
// the client sees an error.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { freePort } from '../support/etcd';
import { startEtcdCluster, type ClusterMember, type EtcdCluster } from '../support/etcd-cluster';
import { gauge, metric } from '../support/metrics';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { until } from '../support/until';

const b = (s: string): Buffer => Buffer.from(s);
/** The only prefix the proxy mirrors: every key these tests read lies outside it. */
const MIRRORED = '/mirrored/';
const KEY = '/outside/k';
const REQUESTS = 'etcd_cache_proxy_grpc_requests_total';

interface RangeReply {
  header?: { member_id?: string };
  kvs?: { value: Buffer }[];
}
interface TxnReply {
  responses?: { response_range?: RangeReply }[];
}

/** A read as a Txn with only a Range in it: a read too, so retried as one. */
const READ_ONLY_TXN = { success: [{ request_range: { key: Buffer.from('/outside/k'), serializable: true } }] };

/** Finished Range calls the proxy counts by where the answer came from. */
const ranges = (proxy: TestProxy, source: string): Promise<number> => metric(proxy.url, REQUESTS, { method: 'Range', source });

/** The member's own count of Range calls it served (etcd's go-grpc-prometheus metrics). */
const rangesServed = (member: ClusterMember): Promise<number> =>
  metric(member.clientUrl, 'grpc_server_handled_total', { grpc_method: 'Range', grpc_code: 'OK' }).catch(() => 0);

describe('forwarded reads across the members of a 3-member cluster', () => {
  let cluster: EtcdCluster;
  let proxy: TestProxy;
  let clients: RawClients;

  before(async () => {
    cluster = await startEtcdCluster(3);
    const nobody = `http://127.0.0.1:${await freePort()}`;
    proxy = await startTestProxy([nobody, ...cluster.members.map((m) => m.clientUrl)], ['--mirror-prefix', MIRRORED]);
    clients = rawClients(proxy.address);
    await proxy.mirrored();
    await until('the three members healthy', async () => (await metric(proxy.url, 'etcd_cache_proxy_upstream_members_healthy')) === 3);
  });
  after(async () => {
    clients?.close();
    await proxy?.stop();
    await cluster?.stop();
  });

  it('skips an endpoint where nothing listens, for reads and writes', async () => {
    const put = await call(clients.kv, 'Put', { key: b(KEY), value: b('v') });
    assert.equal(put.error, null, put.error?.details);
    const forwardedBefore = await ranges(proxy, 'upstream');
    const range = await call<RangeReply>(clients.kv, 'Range', { key: b(KEY), serializable: true });
    assert.equal(range.error, null, range.error?.details);
    assert.equal(range.response?.kvs?.[0]?.value.toString(), 'v');
    assert.equal((await ranges(proxy, 'upstream')) - forwardedBefore, 1, 'the read went to etcd, not to the mirror');
  });

  it('retries on another member the reads in flight on a member that is SIGKILLed: no read error', async () => {
    // The member the proxy sends reads to: the one whose own Range count grows under a few reads.
    const servedBefore = await Promise.all(cluster.members.map(rangesServed));
    for (let i = 0; i < 12; i += 1) assert.equal((await call(clients.kv, 'Range', { key: b(KEY), serializable: true })).error, null);
    const served = await Promise.all(cluster.members.map(async (m, i) => (await rangesServed(m)) - (servedBefore[i] ?? 0)));
    const victim = cluster.members[served.indexOf(Math.max(...served))] as ClusterMember;

    const mirrorBefore = await ranges(proxy, 'mirror');
    const retriesBefore = await metric(proxy.url, 'etcd_cache_proxy_upstream_failovers_total', { kind: 'read_retry' });
    const errors: string[] = [];
    const wrongAnswers: string[] = [];
    let answered = 0;
    let inFlight = 0;
    let running = true;
    // Serializable: a member answers from its own store, so the leader election the kill may
    // start costs no read an error of etcd's own; any error is the proxy's.
    // Four read with Range, two with read-only Txns.
    const readers = Array.from({ length: 6 }, async (_, reader) => {
      while (running) {
        inFlight += 1;
        if (reader < 4) {
          const range = await call<RangeReply>(clients.kv, 'Range', { key: b(KEY), serializable: true }, { deadlineMs: 30_000 });
          inFlight -= 1;
          if (range.error !== null) errors.push(`Range ${status[range.error.code]}: ${range.error.details}`);
          else if (range.response?.kvs?.[0]?.value.toString() !== 'v') wrongAnswers.push(JSON.stringify(range.response));
          else answered += 1;
        } else {
          const txn = await call<TxnReply>(clients.kv, 'Txn', READ_ONLY_TXN, { deadlineMs: 30_000 });
          inFlight -= 1;
          if (txn.error !== null) errors.push(`Txn ${status[txn.error.code]}: ${txn.error.details}`);
          else if (txn.response?.responses?.[0]?.response_range?.kvs?.[0]?.value.toString() !== 'v') wrongAnswers.push(JSON.stringify(txn.response));
          else answered += 1;
        }
      }
    });
    try {
      await until('reads answered under load', () => answered >= 30);
      // Paused, the member holds every read sent to it unanswered; once the proxy's probes mark it
      // unhealthy, new reads go elsewhere and those stay in flight on it.
      await victim.freeze();
      await until(`${victim.name} marked unhealthy by the proxy`, async () => (await gauge(proxy.url, 'etcd_cache_proxy_upstream_member_up', { member: victim.clientUrl })) === 0);
      const stuck = inFlight;
      const answeredAtKill = answered;
      victim.signal('SIGKILL'); // delivered to a stopped process too
      await until(`reads in flight at the kill (${stuck}) answered, and 60 more`, () => answered >= answeredAtKill + stuck + 60, 30_000);
      assert.ok(stuck > 0, 'no read was in flight when the member was killed: nothing was tested');
    } finally {
      running = false;
      await Promise.all(readers);
    }
    assert.deepEqual(errors, [], `${answered} reads answered`);
    assert.deepEqual(wrongAnswers, []);
    const retries = (await metric(proxy.url, 'etcd_cache_proxy_upstream_failovers_total', { kind: 'read_retry' })) - retriesBefore;
    assert.ok(retries > 0, 'no read was retried on another member: the killed member held none');
    assert.equal((await ranges(proxy, 'mirror')) - mirrorBefore, 0, 'every read reached etcd');
  });
});
