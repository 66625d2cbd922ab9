// Integration (a real 3-member etcd cluster, differential): two members stop,
// the third answers but has no leader. etcd then still serves what it can
// from its store: a watch without require-leader is created at once and gets
// its history, a lease keep-alive stream without require-leader stays open
// (the renewal waits for a leader), and streams with require-leader end with
// "etcdserver: no leader" after a few election timeouts. Through the proxy the
// same, next to each other; writes through the proxy are still refused at once.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { sleep } from '../support/etcd';
import { startEtcdCluster, type ClusterMember, type EtcdCluster } from '../support/etcd-cluster';
import { KeepAliveStream } from '../support/keepalive-stream';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { until } from '../support/until';
import { WatchClient } from '../support/watch-client';

const b = (s: string): Buffer => Buffer.from(s);
const NO_LEADER = 'etcdserver: no leader';
const REQUIRE_LEADER = { hasleader: 'true' };

describe('leader loss with a member alive', () => {
  let cluster: EtcdCluster;
  let survivor: ClusterMember;
  let direct: RawClients;
  /** Declares the upstream lost after 3 s: the contract's fast refusal of writes. */
  let quick: TestProxy;
  /** Would declare it lost only after 60 s: what ends its streams is etcd's own verdict. */
  let patient: TestProxy;
  let viaQuick: RawClients;
  let viaPatient: RawClients;
  let leaseId = '';
  const revisions: number[] = [];
  /** Require-leader watch and keep-alive streams opened while the cluster was whole, by where they go. */
  const leaderWatches = new Map<string, WatchClient>();
  const leaderKeepAlives = new Map<string, KeepAliveStream>();
  let quorumLostAt = 0;

  before(async () => {
    cluster = await startEtcdCluster(3);
    survivor = cluster.members[0] as ClusterMember;
    direct = rawClients(survivor.clientAddress);
    for (let i = 0; i < 10; i += 1) {
      const put = await call<{ header: { revision: string } }>(direct.kv, 'Put', { key: b('ll/k'), value: b(`v${i}`) });
      assert.equal(put.error, null);
      revisions.push(Number(put.response?.header.revision));
    }
    const grant = await call<{ ID: string }>(direct.lease, 'LeaseGrant', { TTL: '120' });
    assert.equal(grant.error, null);
    leaseId = grant.response?.ID ?? '';
    quick = await startTestProxy([survivor.clientUrl], ['--upstream-timeout', '3s']);
    patient = await startTestProxy([survivor.clientUrl], ['--upstream-timeout', '60s']);
    await quick.mirrored(revisions[9]);
    await patient.mirrored(revisions[9]);
    viaQuick = rawClients(quick.address);
    viaPatient = rawClients(patient.address);
    for (const [name, address] of [['etcd', survivor.clientAddress], ['quick', quick.address], ['patient', patient.address]] as const) {
      const watch = new WatchClient(address, { metadata: REQUIRE_LEADER, ownConnection: true });
      await watch.createAll([{ key: b('ll/k') }]);
      leaderWatches.set(name, watch);
    }
    for (const [name, clients] of [['etcd', direct], ['quick', viaQuick], ['patient', viaPatient]] as const) {
      const keepAlive = new KeepAliveStream(clients.lease, REQUIRE_LEADER);
      assert.equal((await keepAlive.ask(leaseId)).ID, leaseId, name);
      leaderKeepAlives.set(name, keepAlive);
    }
    for (const member of cluster.members.slice(1)) member.signal('SIGKILL');
    quorumLostAt = Date.now();
  });
  after(async () => {
    for (const watch of leaderWatches.values()) watch.close();
    for (const keepAlive of leaderKeepAlives.values()) keepAlive.cancel();
    for (const clients of [direct, viaQuick, viaPatient]) clients?.close();
    await quick?.stop();
    await patient?.stop();
    await cluster?.stop();
  });

  it('ends require-leader watch and keep-alive streams with "no leader" when etcd ends its own, not at the upstream timeout', async () => {
    const ended = new Map<string, { code: number; details: string; afterMs: number }>();
    await Promise.all([
      ...[...leaderWatches].map(async ([name, watch]) => {
        const end = await watch.end(40_000);
        ended.set(name, { code: end.code, details: end.details, afterMs: Date.now() - quorumLostAt });
      }),
      ...[...leaderKeepAlives].map(async ([name, keepAlive]) => {
        const end = await keepAlive.closed(40_000);
        ended.set(`${name} keep-alive`, { code: end.code, details: end.details, afterMs: end.at - quorumLostAt });
      }),
    ]);
    const etcd = ended.get('etcd');
    assert.deepEqual({ code: etcd?.code, details: etcd?.details }, { code: status.UNAVAILABLE, details: NO_LEADER });
    for (const name of ['quick', 'patient', 'etcd keep-alive', 'quick keep-alive', 'patient keep-alive']) {
      const proxied = ended.get(name);
      assert.deepEqual({ code: proxied?.code, details: proxied?.details }, { code: status.UNAVAILABLE, details: NO_LEADER }, name);
      // Within a few seconds of etcd's own verdict, however long the proxy's upstream timeout.
      assert.ok((proxied?.afterMs ?? Infinity) < (etcd?.afterMs ?? 0) + 5_000, `${name}: ${JSON.stringify([...ended])}`);
    }
    // A require-leader stream opened now is refused as etcd refuses it.
    for (const address of [survivor.clientAddress, quick.address, patient.address]) {
      const late = new WatchClient(address, { metadata: REQUIRE_LEADER, ownConnection: true });
      late.create({ key: b('ll/k') });
      const end = await late.end(10_000);
      late.close();
      assert.deepEqual({ code: end.code, details: end.details }, { code: status.UNAVAILABLE, details: NO_LEADER }, address);
    }
  });

  it('creates a watch without require-leader at once and replays its history, as the leaderless member does', async () => {
    await until('the quick proxy to call the upstream lost', async () => (await quick.metrics.upstreamUp.get()).values[0]?.value === 0, 20_000);
    for (const address of [survivor.clientAddress, quick.address, patient.address]) {
      const watch = new WatchClient(address, { ownConnection: true });
      try {
        watch.create({ key: b('ll/k'), start_revision: revisions[1] });
        const created = await watch.next(`${address}: created`, (r) => r.created === true, 0, 3_000);
        assert.notEqual(created.canceled, true, address);
        const replayed = await watch.next(`${address}: the history`, (r) => (r.events ?? []).length > 0, 0, 3_000);
        assert.deepEqual(
          (replayed.events ?? []).map((e) => Number(e.kv?.mod_revision)),
          revisions.slice(1),
          address,
        );
      } finally {
        watch.close();
      }
    }
  });

  it('keeps a keep-alive stream without require-leader open, its renewal held until a leader is back, and refuses writes at once', async () => {
    const streams = new Map([
      ['etcd', new KeepAliveStream(direct.lease)],
      ['quick', new KeepAliveStream(viaQuick.lease)],
      ['patient', new KeepAliveStream(viaPatient.lease)],
    ]);
    try {
      for (const stream of streams.values()) stream.send(leaseId);
      await sleep(2_000);
      for (const [name, stream] of streams) {
        assert.equal(stream.ended, null, `${name}: ${JSON.stringify(stream.ended)}`);
        assert.deepEqual(stream.replies, [], name);
      }
      const started = Date.now();
      const put = await call(viaQuick.kv, 'Put', { key: b('ll/k'), value: b('late') }, { deadlineMs: 10_000 });
      assert.equal(put.error?.code, status.UNAVAILABLE);
      assert.ok(Date.now() - started < 1_000, `a write took ${Date.now() - started} ms to be refused`);

      await Promise.all(cluster.members.slice(1).map((member) => member.restart()));
      // The held renewal is answered once a leader exists, with the lease's TTL; or, if the leader came
      // back too late for it (etcd's request timeout, the proxy's 10 s), the stream ends as etcd ends it.
      await until('every held renewal answered or given up', () => [...streams.values()].every((s) => s.replies.length > 0 || s.ended !== null), 30_000);
      for (const [name, stream] of streams) {
        const outcome =
          stream.replies.length > 0
            ? { answered: stream.replies[0]?.reply.ID === leaseId && Number(stream.replies[0]?.reply.TTL) > 0 }
            : { code: stream.ended?.code, details: stream.ended?.details };
        assert.ok(
          ('answered' in outcome && outcome.answered) || ('code' in outcome && outcome.code === status.UNAVAILABLE && outcome.details === 'etcdserver: no leader'),
          `${name}: ${JSON.stringify(outcome)}`,
        );
      }
    } finally {
      for (const stream of streams.values()) stream.cancel();
    }
  });
});

