// Integration (real 3-member etcd, one proxy given all three): what the proxy's own traffic sets its liveness
// probes off by. Reads it forwards (a MemberList each, spread over the members) set none off: a read needs no
// leader, and a failed one is tried on the next member. Writes that succeed (a Put every 300 ms, spread over
// the members) are themselves the members' signs of a leader, so the members they went to are not probed
// while they keep coming. Before, each of these calls set its member probing each second for half a minute.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcdCluster, type EtcdCluster } from '../support/etcd-cluster';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { until } from '../support/until';

const b = (s: string): Buffer => Buffer.from(s);
/** How long each step's probes are counted: several of the 1 s probe intervals. */
const WINDOW_MS = 4_000;

describe("the proxy's probes of the members it sends work to", () => {
  let cluster: EtcdCluster;
  let proxy: TestProxy;
  let clients: RawClients;

  const probes = async (): Promise<number> =>
    (await proxy.metrics.upstreamCalls.get()).values.filter((v) => v.labels.method === 'Maintenance/Status' && v.labels.reason === 'liveness').reduce((sum, v) => sum + v.value, 0);
  /** Liveness probes made while `work` runs every `everyMs` for the window. */
  const probesDuring = async (work: () => Promise<void>, everyMs: number): Promise<number> => {
    const before = await probes();
    const end = performance.now() + WINDOW_MS;
    while (performance.now() < end) {
      await work();
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
    return (await probes()) - before;
  };

  before(async () => {
    cluster = await startEtcdCluster(3);
    proxy = await startTestProxy([], ['--initial-cluster', cluster.initialCluster(), '--consistency-check-interval', '0']);
    clients = rawClients(proxy.address);
    await proxy.mirrored();
    // Past start: every member probed once, the mirror's watch answering each second.
    await until('every member probed and healthy', async () => ((await proxy.metrics.upstreamMembersHealthy.get()).values[0]?.value ?? 0) === 3);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
  });
  after(async () => {
    clients?.close();
    await proxy?.stop();
    await cluster?.stop();
  });

  it('forwarded reads set no probes off', async () => {
    const probed = await probesDuring(async () => {
      const listed = await call(clients.cluster, 'MemberList', {}, { deadlineMs: 5_000 });
      assert.equal(listed.error, null, listed.error?.details);
    }, 300);
    // The members the reads went to (all three, in turn) but the mirror's own would be asked each second.
    assert.ok(probed <= 1, `${probed} probes while reads were forwarded`);
  });

  it('writes that succeed are their members\' signs of a leader: no probes while they keep coming', async () => {
    let n = 0;
    const probed = await probesDuring(async () => {
      const put = await call(clients.kv, 'Put', { key: b(`probe-budget/${(n += 1)}`), value: b('v') }, { deadlineMs: 5_000 });
      assert.equal(put.error, null, put.error?.details);
    }, 300);
    assert.ok(probed <= 1, `${probed} probes while writes succeeded`);
  });
});
