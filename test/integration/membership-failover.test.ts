// Integration (a real 3-member etcd cluster on loopback): the member the
// proxy's mirror watches is SIGKILLed under steady reads and writes: reads see
// no error, writes at most what etcd gives for a leader change, the mirror's
// watch moves and stays exact. Then every member dies: the proxy turns lost
// within its timeout, and comes back by itself when a quorum returns.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { sleep } from '../support/etcd';
import { startEtcdCluster, type ClusterMember, type EtcdCluster } from '../support/etcd-cluster';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { until, untilValue } from '../support/until';

const b = (s: string): Buffer => Buffer.from(s);
const UPSTREAM_LOST = 'etcd-cache-proxy: upstream cluster unreachable, writes rejected';
/** What etcd itself answers a write while its leader changes. */
const LEADER_CHANGE_ERRORS = [
  'etcdserver: leader changed',
  'etcdserver: no leader',
  'etcdserver: request timed out',
  'etcdserver: request timed out, possibly due to previous leader failure',
  'etcdserver: request timed out, possibly due to connection lost',
];

interface KeyValue {
  key: Buffer;
  value: Buffer;
  mod_revision: string;
}

/** The member holding the cluster's only watch stream: the proxy's mirror watch. */
async function watchStreams(member: ClusterMember): Promise<number> {
  const text = await (await fetch(`${member.clientUrl}/metrics`, { signal: AbortSignal.timeout(2_000) })).text();
  const line = text.split('\n').find((l) => l.startsWith('etcd_debugging_mvcc_watch_stream_total '));
  return Number(line?.split(' ')[1] ?? 0);
}

async function rangeAll(clients: RawClients, prefix: string, serializable: boolean): Promise<KeyValue[]> {
  const got = await call<{ kvs?: KeyValue[] }>(clients.kv, 'Range', { key: b(prefix), range_end: b(`${prefix.slice(0, -1)}0`), serializable }, { deadlineMs: 5_000 });
  assert.equal(got.error, null, got.error?.details);
  return got.response?.kvs ?? [];
}

const render = (kvs: readonly KeyValue[]): string[] => kvs.map((kv) => `${kv.key.toString()}=${kv.value.toString()}@${kv.mod_revision}`);

describe('membership: failover inside a 3-member cluster', () => {
  let cluster: EtcdCluster;
  let proxy: TestProxy;
  let proxied: RawClients;

  before(async () => {
    cluster = await startEtcdCluster(3);
    proxy = await startTestProxy([], ['--initial-cluster', cluster.initialCluster(), '--upstream-timeout', '3s']);
    await proxy.mirrored();
    await until('every member healthy', async () => ((await proxy.metrics.upstreamMembersHealthy.get()).values[0]?.value ?? 0) === 3);
    proxied = rawClients(proxy.address);
  });
  after(async () => {
    proxied?.close();
    await proxy?.stop();
    await cluster?.stop();
  });

  it('moves the mirror watch off a SIGKILLed member under load: no read error, writes fail only as etcd fails them, the mirror stays exact', async () => {
    const watched: ClusterMember[] = [];
    for (const member of cluster.members) if ((await watchStreams(member)) > 0) watched.push(member);
    assert.equal(watched.length, 1, 'the mirror watch lives on exactly one member');
    const victim = watched[0] as ClusterMember;

    let running = true;
    const acknowledged = new Map<string, string>();
    const writeErrors: string[] = [];
    const readErrors: string[] = [];
    let reads = 0;
    let writes = 0;
    const writers = Array.from({ length: 4 }, async (_, w) => {
      for (let i = 0; running; i += 1) {
        const key = `load/${w}/${i % 50}`;
        const value = `${w}-${i}`;
        const put = await call(proxied.kv, 'Put', { key: b(key), value: b(value) }, { deadlineMs: 10_000 });
        if (put.error === null) {
          acknowledged.set(key, value);
          writes += 1;
        } else writeErrors.push(`${status[put.error.code]}: ${put.error.details}`);
        await sleep(10); // pacing, not a wait for anything
      }
    });
    const readers = Array.from({ length: 4 }, async (_, r) => {
      while (running) {
        const got = await call(proxied.kv, 'Range', { key: b('load/'), range_end: b('load0'), serializable: r % 2 === 0, limit: '20' }, { deadlineMs: 10_000 });
        if (got.error === null) reads += 1;
        else readErrors.push(`${status[got.error.code]}: ${got.error.details}`);
      }
    });
    const failoversBefore = (await proxy.metrics.upstreamFailovers.get()).values.find((v) => v.labels.kind === 'mirror_watch')?.value ?? 0;
    const mirrorWatchFailovers = async (): Promise<number> => (await proxy.metrics.upstreamFailovers.get()).values.find((v) => v.labels.kind === 'mirror_watch')?.value ?? 0;
    try {
      await until('reads and writes under way', () => reads >= 50 && writes >= 20);
      victim.signal('SIGKILL');
      const [readsAtKill, writesAtKill] = [reads, writes];
      // Load goes on through the failover: the mirror watch moves, and reads and writes go on after it.
      await until('the mirror watch to leave the killed member', async () => (await mirrorWatchFailovers()) > failoversBefore, 30_000);
      const [readsAtMove, writesAtMove] = [reads, writes];
      await until(
        () => `load after the failover (reads ${reads - readsAtMove}, writes ${writes - writesAtMove} since; ${reads - readsAtKill}, ${writes - writesAtKill} since the kill)`,
        () => reads >= readsAtMove + 100 && writes >= writesAtMove + 20,
        30_000,
      );
    } finally {
      running = false;
      await Promise.all([...writers, ...readers]);
    }

    assert.deepEqual(readErrors, [], `${reads} reads`);
    assert.ok(reads > 100, `${reads} reads`);
    // A write on its way to the killed member when it died has an unknown outcome (a transport
    // error, as a client connected to that member would get); at most one per writer.
    const transport = writeErrors.filter((e) => !LEADER_CHANGE_ERRORS.some((known) => e.endsWith(known)));
    assert.ok(transport.length <= 4, `write errors beyond etcd's own: ${JSON.stringify(writeErrors)}`);
    assert.ok(transport.every((e) => e.startsWith('UNAVAILABLE')), JSON.stringify(transport));
    assert.ok(acknowledged.size > 0);

    // the mirror watch moved: a surviving member holds it now, and the metric says so
    const survivors = cluster.members.filter((m) => m !== victim);
    await until('the mirror watch on a surviving member', async () => (await Promise.all(survivors.map(watchStreams))).some((n) => n > 0));
    assert.ok((await mirrorWatchFailovers()) > failoversBefore, 'the failover is counted');

    // exact: the mirror answers what the cluster holds, every acknowledged write included
    const direct = rawClients((survivors[0] as ClusterMember).clientAddress);
    try {
      const truth = await rangeAll(direct, 'load/', false);
      const revision = Math.max(...truth.map((kv) => Number(kv.mod_revision)));
      await proxy.mirrored(revision);
      const mirrored = await rangeAll(proxied, 'load/', true);
      assert.deepEqual(render(mirrored), render(truth));
      const held = new Map(truth.map((kv) => [kv.key.toString(), kv.value.toString()]));
      for (const [key] of acknowledged) assert.ok(held.has(key), `acknowledged ${key} missing`);
    } finally {
      direct.close();
    }
    await victim.restart();
  });

  it('moves the mirror watch off a SIGSTOPped member, whose stream stays open and silent, and keeps following writes', async () => {
    await until('every member healthy', async () => ((await proxy.metrics.upstreamMembersHealthy.get()).values[0]?.value ?? 0) === 3, 20_000);
    const watched: ClusterMember[] = [];
    for (const member of cluster.members) if ((await watchStreams(member)) > 0) watched.push(member);
    assert.equal(watched.length, 1);
    const paused = watched[0] as ClusterMember;
    const others = cluster.members.filter((m) => m !== paused);
    const direct = rawClients((others[0] as ClusterMember).clientAddress);
    await paused.freeze();
    try {
      // A write straight to a running member: only the mirror's watch can bring it to the proxy.
      let attempt = 0;
      const revision = await untilValue(
        'a write on a running member (the paused one may have been the leader)',
        async () => {
          attempt += 1;
          const put = await call<{ header?: { revision?: string } }>(direct.kv, 'Put', { key: b('paused/k'), value: b(`v${attempt}`) }, { deadlineMs: 5_000 });
          return put.error === null ? Number(put.response?.header?.revision) : undefined;
        },
        15_000,
        100,
      );
      await proxy.mirrored(revision);
      assert.equal((await proxy.metrics.upstreamUp.get()).values[0]?.value, 1, 'one paused member does not make the cluster lost');
      const got = await call<{ kvs?: KeyValue[] }>(proxied.kv, 'Range', { key: b('paused/k'), serializable: true });
      const truth = await call<{ kvs?: KeyValue[] }>(direct.kv, 'Range', { key: b('paused/k') });
      assert.deepEqual(render(got.response?.kvs ?? []), render(truth.response?.kvs ?? []));
    } finally {
      paused.signal('SIGCONT');
      direct.close();
    }
  });

  it('turns lost within the upstream timeout when every member dies, and recovers by itself when a quorum returns', async () => {
    const killedAt = Date.now();
    for (const member of cluster.members) member.signal('SIGKILL');
    await until('upstream lost', async () => (await proxy.metrics.upstreamUp.get()).values[0]?.value === 0, 10_000);
    const lostAfter = Date.now() - killedAt;
    assert.ok(lostAfter <= 3_000 + 2_500, `lost after ${lostAfter} ms (timeout 3 s, probes every second)`);
    assert.equal((await proxy.metrics.upstreamMembersHealthy.get()).values[0]?.value, 0);

    const refusedAt = Date.now();
    const refused = await call(proxied.kv, 'Put', { key: b('outage/1'), value: b('x') }, { deadlineMs: 5_000 });
    assert.equal(refused.error?.details, UPSTREAM_LOST);
    assert.ok(Date.now() - refusedAt < 500);
    const served = await call<{ kvs?: KeyValue[] }>(proxied.kv, 'Range', { key: b('load/'), range_end: b('load0') }, { deadlineMs: 5_000 });
    assert.equal(served.error, null, 'reads are served from the mirror');
    assert.ok((served.response?.kvs?.length ?? 0) > 0);

    // two of three: a quorum
    await Promise.all(cluster.members.slice(0, 2).map((m) => m.restart()));
    await until('upstream back', async () => (await proxy.metrics.upstreamUp.get()).values[0]?.value === 1, 20_000);
    await until('a write through the proxy', async () => (await call(proxied.kv, 'Put', { key: b('outage/2'), value: b('back') }, { deadlineMs: 3_000 })).error === null, 20_000);
    const after = await call<{ kvs?: KeyValue[] }>(proxied.kv, 'Range', { key: b('outage/2'), serializable: true });
    assert.equal(after.response?.kvs?.[0]?.value.toString(), 'back', 'the mirror follows again');
    await (cluster.members[2] as ClusterMember).restart();
  });
});
