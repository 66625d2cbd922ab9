// Integration (a real 3-member etcd cluster whose peer traffic passes through forwarders of ours): a member
// cut off from its peers still answers serializable reads, from the revision it had. Found by the robustness
// run's partition-member fault: reads the proxy forwarded (keys outside its prefix mirror) went round the
// members and came back from the cut one below a revision the same client had just been told through the
// proxy. A forwarded read answered below what this proxy already handed out now goes to the next member.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcdCluster, type ClusterMember, type EtcdCluster } from '../support/etcd-cluster';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients } from '../support/raw-client';
import { untilValue } from '../support/until';

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
