// Integration (a real 3-member etcd cluster whose peer traffic passes through forwarders of ours): a member
// cut off from its peers still answers serializable reads, from the revision it had. Found by the robustness
// run's partition-member fault: reads the proxy forwarded (keys outside its prefix mirror) went round the
// members and came back from the cut one below a revision the same client had just been told through the
// proxy. A forwarded read answered below what this proxy already handed out now goes to the next member.
// And the mirror took such a member's Status, behind the mirror's revision, for etcd restored from a backup:
// it wiped itself and cancelled every watch as compacted though nothing was compacted. It now believes that
// only when a linearizable read at the member says so too.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcdCluster, type ClusterMember, type EtcdCluster } from '../support/etcd-cluster';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients } from '../support/raw-client';
import { until, untilValue } from '../support/until';

const b = (s: string): Buffer => Buffer.from(s);

interface Answer {
  readonly header?: { readonly revision?: string; readonly member_id?: string };
  readonly leader?: string;
}

async function serializableRead(address: string, key: string): Promise<number> {
  const clients = rawClients(address);
  try {
    const outcome = await call<Answer>(clients.kv, 'Range', { key: b(key), serializable: true }, { deadlineMs: 5_000 });
    assert.equal(outcome.error, null, `read of ${key} at ${address}: ${outcome.error?.details ?? ''}`);
    return Number(outcome.response?.header?.revision ?? 0);
  } finally {
    clients.close();
  }
}

/** The member every member names as leader. */
async function leaderOf(members: readonly ClusterMember[]): Promise<ClusterMember> {
  return untilValue('the members to agree on a leader', async () => {
    const statuses = await Promise.all(
      members.map(async (member) => {
        const clients = rawClients(member.clientAddress);
        try {
          return { member, ...(await call<Answer>(clients.maintenance, 'Status', {}, { deadlineMs: 2_000 })) };
        } finally {
          clients.close();
        }
      }),
    );
    const leaders = new Set(statuses.map((status) => status.response?.leader));
    const [only] = [...leaders];
    return leaders.size === 1 ? statuses.find((status) => status.response?.header?.member_id === only)?.member : undefined;
  });
}

describe('a member cut off from its peers', () => {
  let cluster: EtcdCluster;
  let proxy: TestProxy;

  before(async () => {
    cluster = await startEtcdCluster(3, { peerNetwork: true });
    // A prefix mirror: reads of /other/ are etcd's to answer, through the members in turn.
    proxy = await startTestProxy(
      cluster.members.map((member) => member.clientUrl),
      ['--mirror-prefix', '/mirrored/'],
    );
    await proxy.mirrored();
  });

  after(async () => {
    await proxy?.stop();
    await cluster?.stop();
  });

  it('does not take a client of the proxy back to its older revision', async () => {
    const leader = await leaderOf(cluster.members);
    const cut = cluster.members.find((member) => member !== leader);
    assert.ok(cut !== undefined && cluster.peerNetwork !== null);
    cluster.peerNetwork.cutOff(cut.name);
    try {
      const writer = rawClients(leader.clientAddress);
      let written = 0;
      try {
        for (let i = 0; i < 5; i += 1) {
          const put = await call<Answer>(writer.kv, 'Put', { key: b('/other/k'), value: b(`v${i}`) }, { deadlineMs: 5_000 });
          assert.equal(put.error, null);
          written = Number(put.response?.header?.revision ?? 0);
        }
      } finally {
        writer.close();
      }
      const lagging = await serializableRead(cut.clientAddress, '/other/k');
      assert.ok(lagging < written, `the cut member answers at ${lagging}, below the write at ${written}`);
      // The proxy takes the members in turn: nine reads meet the cut one about three times.
      const seen: number[] = [];
      for (let i = 0; i < 9; i += 1) seen.push(await serializableRead(proxy.address, '/other/k'));
      const first = seen.findIndex((revision) => revision >= written);
      assert.ok(first >= 0, `no read through the proxy reached ${written}: ${seen.join(', ')}`);
      assert.deepEqual(
        seen.slice(first).filter((revision) => revision < written),
        [],
        `after answering at ${written}, the proxy answered lower (the cut member's ${lagging}): ${seen.join(', ')}`,
      );
    } finally {
      cluster.peerNetwork.heal();
    }
  });
});

/** How many Range calls etcd's member has started, from its own /metrics. */
async function rangesStarted(member: ClusterMember): Promise<number> {
  const text = await (await fetch(`${member.clientUrl}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
  const line = text.split('\n').find((l) => l.startsWith('grpc_server_started_total{') && l.includes('grpc_method="Range"'));
  return Number(line?.split(' ').pop() ?? 0);
}

describe('the mirror moving to a member cut off from its peers', () => {
  let cluster: EtcdCluster;
  let proxy: TestProxy;
  const frozen: ClusterMember[] = [];

  before(async () => {
    cluster = await startEtcdCluster(3, { peerNetwork: true });
    // No rolling comparison: a Range it sends to the cut member would look like the mirror's attempt there.
    proxy = await startTestProxy(
      cluster.members.map((member) => member.clientUrl),
      ['--consistency-check-interval', '0'],
    );
    await proxy.mirrored();
  });

  after(async () => {
    for (const member of frozen) member.signal('SIGCONT');
    cluster?.peerNetwork?.heal();
    await proxy?.stop();
    await cluster?.stop();
  });

  it('keeps its content: the member is behind, etcd was not restored', async () => {
    const leader = await leaderOf(cluster.members);
    const cut = cluster.members.find((member) => member !== leader);
    assert.ok(cut !== undefined && cluster.peerNetwork !== null);
    cluster.peerNetwork.cutOff(cut.name);
    const writer = rawClients(leader.clientAddress);
    let written = 0;
    try {
      for (let i = 0; i < 5; i += 1) {
        const put = await call<Answer>(writer.kv, 'Put', { key: b('/k'), value: b(`v${i}`) }, { deadlineMs: 5_000 });
        assert.equal(put.error, null);
        written = Number(put.response?.header?.revision ?? 0);
      }
    } finally {
      writer.close();
    }
    await proxy.mirrored(written);
    assert.ok((await serializableRead(cut.clientAddress, '/k')) < written, 'the cut member is behind');
    // The two others stop answering: the mirror's watch leaves its member, and the cut one is all there is.
    const baseline = await rangesStarted(cut);
    for (const member of cluster.members.filter((m) => m !== cut)) {
      await member.freeze();
      frozen.push(member);
    }
    await until('the mirror to try the cut member (a Range there)', async () => (await rangesStarted(cut)) > baseline, 60_000, 200);
    const clients = rawClients(proxy.address);
    try {
      const read = await call<Answer & { kvs?: { value?: Buffer }[] }>(clients.kv, 'Range', { key: b('/k'), serializable: true }, { deadlineMs: 5_000 });
      assert.equal(read.error, null, `the mirror answers no more: ${read.error?.details ?? ''}`);
      assert.ok(Number(read.response?.header?.revision ?? 0) >= written, `answered at ${read.response?.header?.revision ?? '?'}, below ${written}`);
      assert.equal(read.response?.kvs?.[0]?.value?.toString(), 'v4');
    } finally {
      clients.close();
    }
  });
});
